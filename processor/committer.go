package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// commitLoop commits handled tasks in the order they arrive, as many as are
// ready at once (up to BatchSize): one commit under light load, large ones
// under heavy load. Entries of one key arrive in stream order from their
// lane, so their outputs are written in stream order. It returns once the
// reader is done and every entry it dispatched is committed, or at the
// session's hard stop.
func (pt *partition) commitLoop(hard context.Context, readerDone <-chan struct{}, fail func(error)) {
	batch := make([]*task, 0, pt.p.o.BatchSize)
	finishing := false
	for {
		if finishing && pt.inflightCount() == 0 {
			return
		}
		select {
		case t := <-pt.results:
			batch = append(batch, t)
		case <-readerDone:
			finishing, readerDone = true, nil
			continue
		case <-hard.Done():
			return
		}
	drain:
		for len(batch) < pt.p.o.BatchSize {
			select {
			case t := <-pt.results:
				batch = append(batch, t)
			default:
				break drain
			}
		}
		err := pt.commit(hard, batch)
		switch {
		case errors.Is(err, ErrFenced):
			pt.log.Warn("commit_fenced", zap.Int("entries", len(batch)), zap.String("fence", pt.fence))
			pt.lose("commit")
			return
		case err != nil:
			if hard.Err() == nil {
				fail(err)
				pt.discard(hard)
			}
			return
		}
		pt.settled(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// discard drops handled tasks after a fatal commit error, so that lanes
// (shared by all partitions) never block on this partition; the dropped
// entries stay pending for the next worker.
func (pt *partition) discard(hard context.Context) {
	for {
		select {
		case <-pt.results:
		case <-hard.Done():
			return
		}
	}
}

// testHookBeforeCommit, when set by a test, runs before each commit: crash
// tests use it to stop the process between handling and committing.
var testHookBeforeCommit func(batch []*task)

// commit writes batch with commitScript, retrying connection errors until
// hard is done. A key of the wrong type dead-letters the entries that
// write to it and the rest is committed again.
func (pt *partition) commit(hard context.Context, batch []*task) error {
	o := pt.p.o
	for attempt := 1; ; attempt++ {
		now := o.Now()
		start := time.Now()
		a := &pt.args
		var mark string
		var check []string
		var exp int64
		if pt.p.dd.Enabled() {
			var at time.Time
			mark, at = pt.p.dd.Mark(pt.dedupe, now)
			check, exp = pt.p.dd.Check(pt.dedupe, now), at.UnixMilli()
		}
		a.reset(pt.stream, o.DeadLetterStream, pt.lease, pt.fence, o.Group, mark, check, exp, o.DeadLetterMaxLen)
		for _, t := range batch {
			switch t.kind {
			case 'p':
				a.processed(t.m.ID, t.m.DedupeID, t.m.effects)
			case 'd':
				a.deadLetter(t.m.ID, pt.deadLetterFields(t, now))
			default:
				a.ackOnly(t.m.ID)
			}
		}
		if testHookBeforeCommit != nil {
			testHookBeforeCommit(batch)
		}
		ctx, cancel := pt.p.bounded(hard)
		reply, err := commitScript.Run(ctx, pt.p.rdb, a.keys, a.argv...).Text()
		cancel()
		if err == nil && reply == "!fenced" {
			return ErrFenced
		}
		if err == nil && strings.HasPrefix(reply, "!") {
			if err := pt.wrongType(batch, reply[1:]); err != nil {
				return err
			}
			continue
		}
		if err == nil && len(reply) != len(batch) {
			err = fmt.Errorf("commit reply has %d outcomes for %d entries", len(reply), len(batch))
		}
		if err == nil {
			pt.observe(batch, reply, now, time.Since(start))
			return nil
		}
		if hard.Err() != nil {
			return err
		}
		if !pt.retryable(err) {
			return fmt.Errorf("commit to %s: %w", pt.stream, err)
		}
		if ok, n := pt.commitLog.allow(time.Now(), 5*time.Second); ok {
			pt.log.Error("commit_failed_retrying", zap.Int("entries", len(batch)), zap.Int("attempt", attempt),
				zap.Error(err), zap.Int("suppressed", n))
		}
		if !wait(hard, backoff(50*time.Millisecond, 5*time.Second, attempt)) {
			return err
		}
	}
}

// wrongType handles the reply "<type> <key>": key holds a value of another
// type than some effects of the commit write to it, or (type "conflict")
// effects of the commit write it both as a stream and as a hash, the first
// of them winning. Entries whose effects do not fit are dead-lettered; the
// caller commits again. If the key is the dead-letter stream or a dedupe
// set, nothing can be written and an operator has to look.
func (pt *partition) wrongType(batch []*task, reply string) error {
	typ, key, _ := strings.Cut(reply, " ")
	err := fmt.Errorf("WRONGTYPE key %q holds a %s", key, typ)
	var fits func(EffectKind) bool
	switch typ {
	case "stream":
		fits = func(k EffectKind) bool { return k == EffectXAdd }
	case "hash":
		fits = func(k EffectKind) bool { return k == EffectHSet }
	case "conflict":
		err = fmt.Errorf("effects in one commit write key %q both as a stream and as a hash", key)
		first := EffectKind(0)
		fits = func(k EffectKind) bool {
			if first == 0 {
				first = k
			}
			return k == first
		}
	default:
		fits = func(EffectKind) bool { return false }
	}
	n := 0
	for _, t := range batch {
		if t.kind != 'p' {
			continue
		}
		for _, e := range t.m.effects {
			if e.Key == key && !fits(e.Kind) {
				t.deadLetter("output_failed", err)
				n++
				break
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("commit to %s: %w", pt.stream, err)
	}
	pt.log.Error("output_key_wrong_type", zap.String("output", key), zap.String("type", typ), zap.Int("dead_lettered", n))
	return nil
}

// deadLetterFields are the entry's own fields, unchanged, then the reason
// and where the entry came from.
func (pt *partition) deadLetterFields(t *task, now time.Time) []string {
	o := pt.p.o
	m := t.m
	errText := ""
	if t.err != nil {
		errText = t.err.Error()
		if len(errText) > 2048 {
			errText = errText[:2048] + "…"
		}
	}
	out := make([]string, 0, len(m.Fields)+20)
	if len(m.Fields)+20 <= maxEffectStrings {
		out = append(out, m.Fields...)
	} else {
		// Too many fields for one XADD from the script: keep them all, in
		// order, as one JSON array.
		b, _ := json.Marshal(m.Fields)
		out = append(out, "eddy.fields", string(b))
	}
	return append(out,
		"eddy.reason", t.reason,
		"eddy.error", errText,
		"eddy.attempts", strconv.Itoa(m.Attempt),
		"eddy.stream", m.Stream,
		"eddy.id", m.ID,
		"eddy.key", m.Key,
		"eddy.pipeline", o.Pipeline,
		"eddy.group", o.Group,
		"eddy.consumer", o.Consumer,
		"eddy.failed_at", strconv.FormatInt(now.UnixMilli(), 10),
	)
}

func (pt *partition) observe(batch []*task, reply string, now time.Time, d time.Duration) {
	o := pt.p.o
	c := Commit{Pipeline: o.Pipeline, Partition: pt.n, Duration: d}
	for i, t := range batch {
		switch reply[i] {
		case 'p':
			c.Processed++
			if at := idTime(t.m.ID); !at.IsZero() {
				c.Latencies = append(c.Latencies, now.Sub(at))
			}
		case 'u':
			c.Duplicates++
		case 's':
			c.Stale++
		case 'd':
			if c.DeadLetters == nil {
				c.DeadLetters = make(map[string]int)
			}
			c.DeadLetters[t.reason]++
			if ok, n := pt.commitLog.allow(time.Now(), time.Second); ok {
				pt.log.Warn("dead_lettered", zap.String("entry_id", t.m.ID), zap.String("key", t.m.Key),
					zap.String("reason", t.reason), zap.Int("attempt", t.m.Attempt), zap.Error(t.err),
					zap.String("dead_letter_stream", o.DeadLetterStream), zap.Int("suppressed", n))
			}
		}
	}
	if o.Observer != nil {
		o.Observer.Committed(c)
	}
}
