package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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
		batch = pt.linger(hard, batch, commitLinger)
		start := time.Now()
		err := pt.commit(hard, batch)
		pt.traceCommit(batch, start, err)
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

// commitLinger is how long the committer waits, with results in hand, for
// tasks that lanes are handling right now. A burst of entries read together
// is handled by many lanes at once; committing the first results alone
// would make the rest wait for that commit's round trip and then take
// another. Handlers slower than this are not waited for.
const commitLinger = 100 * time.Microsecond

// linger adds to batch the results of tasks being handled that come within
// wait.
func (pt *partition) linger(hard context.Context, batch []*task, wait time.Duration) []*task {
	if len(batch) >= pt.p.o.BatchSize || pt.handling.Load() == 0 {
		return batch
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(batch) < pt.p.o.BatchSize && pt.handling.Load() > 0 {
		select {
		case t := <-pt.results:
			batch = append(batch, t)
		case <-timer.C:
			return batch
		case <-hard.Done():
			return batch
		}
	}
	return batch
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
	carryTraces(batch)
	// With a fence, every try of this commit carries one token: a try
	// whose script ran but whose reply was lost (the connection dropped,
	// and go-redis or this loop tried again) gets the first try's reply
	// back instead of finding its entries acked and taking them for stale.
	var token string
	if pt.fence != "" {
		pt.commits++
		token = pt.fence + "/" + strconv.FormatUint(pt.commits, 10)
	}
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
		// On Redis Cluster, writes outside the partition's slot cannot be in
		// the script: they are made first, for the entries a dry run of the
		// script says will commit (see writeElsewhere).
		dlq, remoteDLQ := o.DeadLetterStream, pt.p.cluster && keySlot(o.DeadLetterStream) != pt.slot
		if remoteDLQ {
			dlq = pt.stream // a key of the slot; the script writes no dead letter here
		}
		a.reset(pt.stream, dlq, pt.lease, pt.fence, o.Group, mark, check, exp, o.DeadLetterMaxLen)
		if token != "" {
			// A try comes within the lease (a longer pause is fenced),
			// so a session timeout covers it; ten minutes at least.
			a.once(pt.lastCommit, token, max(10*time.Minute, 2*o.SessionTimeout))
		}
		a.setTimers(pt.timers)
		if w := pt.watermark.Load(); w > pt.storedWatermark.Load() {
			a.setWatermark(pt.meta, w)
		}
		elsewhere := remoteDLQ
		for _, t := range batch {
			var dl []string
			if t.kind == 'd' && !remoteDLQ {
				dl = deadLetterFields(&pt.p.o, t.m, t.reason, t.err, now)
			}
			switch {
			case t.kind == 'p' && t.m.Timer != nil:
				local, remote := pt.splitEffects(t.m.effects)
				elsewhere = elsewhere || len(remote) > 0
				a.timerFired(t.m.Timer, local)
			case t.kind == 'p':
				local, remote := pt.splitEffects(t.m.effects)
				elsewhere = elsewhere || len(remote) > 0
				a.processed(t.m.ID, t.m.DedupeID, local)
			case t.kind == 'd' && t.m.Timer != nil:
				a.timerDeadLetter(t.m.Timer, dl)
			case t.kind == 'd':
				a.deadLetter(t.m.ID, t.m.DedupeID, dl)
			default:
				a.ackOnly(t.m.ID)
			}
		}
		if testHookBeforeCommit != nil {
			testHookBeforeCommit(batch)
		}
		if a.conflict != "" {
			if err := pt.wrongType(batch, "conflict "+a.conflict); err != nil {
				return err
			}
			continue
		}
		ctx, cancel := pt.p.bounded(hard)
		var reply string
		var err error
		if elsewhere {
			a.dryRun(true)
			argv := a.args() // before a.keys: args may add the meta hash to KEYS
			reply, err = commitScript.Run(ctx, pt.p.rdb, a.keys, argv...).Text()
			a.dryRun(false)
			if err == nil && !strings.HasPrefix(reply, "!") {
				var key string
				if key, err = pt.writeElsewhere(ctx, batch, reply, remoteDLQ, now); key != "" {
					reply, err = "!other "+key, nil // handled like a wrong type in the slot
				}
			}
		}
		if err == nil && !strings.HasPrefix(reply, "!") {
			argv := a.args() // before a.keys: args may add the meta hash to KEYS
			reply, err = commitScript.Run(ctx, pt.p.rdb, a.keys, argv...).Text()
		}
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
			if a.watermark != "" {
				w, _ := strconv.ParseInt(a.watermark, 10, 64)
				pt.storedWatermark.Store(w)
			}
			pt.observe(batch, reply, now, time.Since(start))
			return nil
		}
		if hard.Err() != nil {
			return err
		}
		if refusedWrite(err) && !isNoGroup(err) && !redis.HasErrorPrefix(err, "NOSCRIPT") && !isNoPerm(err) {
			// The script stopped on an error of its own: it may have acked
			// entries and written part of their effects (Redis keeps what a
			// script wrote before it failed). Run again, it would find them
			// acked and write nothing more: the rest of their effects would
			// be lost without a word. Record every entry of the batch as a
			// dead letter instead, for an operator to look at and replay,
			// and stop the pipeline.
			pt.deadLetterBatch(hard, batch, err, now)
			return fmt.Errorf("commit to %s failed inside its script; its %d entries are dead-lettered (reason %s): %w",
				pt.stream, len(batch), ReasonCommitFailed, err)
		}
		if !pt.retryable(err) {
			return fmt.Errorf("commit to %s: %w", pt.stream, err)
		}
		if ok, n := pt.commitLog.allow(time.Now(), 5*time.Second); ok {
			pt.log.Error("commit_failed_retrying", zap.Int("entries", len(batch)), zap.Int("attempt", attempt),
				zap.Error(err), zap.Int("suppressed", n))
		}
		if !pt.p.wait(hard, backoff(50*time.Millisecond, 5*time.Second, attempt)) {
			return err
		}
	}
}

// splitEffects parts effects into those in the partition's slot and those
// elsewhere (on Redis Cluster only; on one Redis every key is local).
func (pt *partition) splitEffects(effects []Effect) (local, remote []Effect) {
	if !pt.p.cluster {
		return effects, nil
	}
	for _, e := range effects {
		if e.isTimer() || keySlot(e.Key) == pt.slot || effectKinds[e.Kind].remote == nil {
			local = append(local, e)
		} else {
			remote = append(remote, e)
		}
	}
	return local, remote
}

// writeElsewhere makes, before the commit, the writes outside the
// partition's slot: the effects of entries the dry run reply says will be
// processed, and dead letters when the dead-letter stream is elsewhere. It
// is at least once: if the commit then fails (the lease lost, a crash), the
// entry is handled again and these writes are made again. Outputs carry the
// event's id for consumers to deduplicate on.
// A key that refused a write with WRONGTYPE is returned, for the caller to
// dead-letter the entries writing to it.
func (pt *partition) writeElsewhere(ctx context.Context, batch []*task, reply string, remoteDLQ bool, now time.Time) (string, error) {
	o := pt.p.o
	var owner []*task // the task of each command sent
	cmds, err := pt.p.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range batch {
			if t.remoteDone {
				continue // written by an earlier try of this commit
			}
			switch {
			case reply[i] == 'p':
				_, remote := pt.splitEffects(t.m.effects)
				for i := range remote {
					effectKinds[remote[i].Kind].remote(ctx, p, &remote[i])
					owner = append(owner, t)
				}
			case reply[i] == 'd' && remoteDLQ:
				p.XAdd(ctx, &redis.XAddArgs{Stream: o.DeadLetterStream, MaxLen: o.DeadLetterMaxLen, Approx: o.DeadLetterMaxLen > 0,
					Values: deadLetterFields(&o, t.m, t.reason, t.err, now)})
				owner = append(owner, t)
			}
		}
		return nil
	})
	// A task whose every write went through is not written again if the
	// commit has to be tried again (a refused write dead-letters another
	// entry of the batch, say).
	failed := map[*task]bool{}
	for i, c := range cmds {
		if c.Err() != nil && i < len(owner) {
			failed[owner[i]] = true
		}
	}
	if len(cmds) == len(owner) {
		for _, t := range owner {
			if !failed[t] {
				t.remoteDone = true
			}
		}
	}
	for _, c := range cmds {
		if refusedWrite(c.Err()) && len(c.Args()) > 1 {
			return fmt.Sprint(c.Args()[1]), nil
		}
	}
	return "", err
}

// deadLetterBatch writes a dead letter for every entry of a batch whose
// commit script failed half-way, outside the script, at least once.
func (pt *partition) deadLetterBatch(hard context.Context, batch []*task, cause error, now time.Time) {
	o := pt.p.o
	ctx, cancel := context.WithTimeout(hard, 5*time.Second)
	defer cancel()
	_, err := pt.p.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: o.DeadLetterStream, MaxLen: o.DeadLetterMaxLen, Approx: o.DeadLetterMaxLen > 0,
				Values: deadLetterFields(&o, t.m, ReasonCommitFailed, cause, now)})
		}
		return nil
	})
	ids := make([]string, 0, len(batch))
	for _, t := range batch {
		ids = append(ids, t.m.ID)
	}
	pt.log.Error("commit_failed_in_script", zap.Strings("entry_ids", ids), zap.Error(cause),
		zap.String("dead_letter_stream", o.DeadLetterStream), zap.NamedError("dead_letter_error", err))
}

// refusedWrite reports whether Redis refused a write for what its key
// holds (a wrong type, an increment of a non-number or past its range),
// which writing again cannot fix, as opposed to a passing state of the
// server or the connection.
func refusedWrite(err error) bool {
	var re redis.Error
	if err == nil || !errors.As(err, &re) {
		return false
	}
	for _, passing := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "MOVED", "ASK", "READONLY", "NOREPLICAS", "OOM"} {
		if redis.HasErrorPrefix(err, passing) {
			return false
		}
	}
	return true
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
	fits := func(k EffectKind) bool { return k.fits(typ) }
	if typ == "other" {
		// A write outside the partition's slot (Redis Cluster) was refused.
		err = fmt.Errorf("key %q refused a write of this entry (before the commit, outside its slot)", key)
		fits = func(EffectKind) bool { return false }
	}
	if typ == "value" {
		// A value an increment or PFADD cannot take: the entries with such
		// an effect on the key go to the dead-letter stream.
		var why string
		key, why, _ = strings.Cut(key, "\n")
		err = fmt.Errorf("key %q: %s", key, why)
		fits = func(k EffectKind) bool { return k != EffectHIncrBy && k != EffectHIncrByFloat && k != EffectPFAdd }
	}
	if typ == "conflict" {
		err = fmt.Errorf("effects in one commit write key %q as two types", key)
		first := EffectKind(0)
		fits = func(k EffectKind) bool {
			if effectKinds[k].keyType == '-' {
				return true
			}
			if first == 0 {
				first = k
			}
			return effectKinds[k].keyType == effectKinds[first].keyType
		}
	}
	n := 0
	for _, t := range batch {
		if t.kind != 'p' {
			continue
		}
		for _, e := range t.m.effects {
			if e.Key == key && !fits(e.Kind) {
				t.deadLetter(ReasonOutputFailed, err)
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

func (pt *partition) observe(batch []*task, reply string, now time.Time, d time.Duration) {
	o := pt.p.o
	c := Commit{Pipeline: o.Pipeline, Partition: pt.n, Duration: d}
	for i, t := range batch {
		if t.wrongPartition {
			c.WrongPartition++
		}
		if t.m.states != nil {
			// Effects applied to the key's state stand only if written.
			t.m.states.release(t.m.Key, t.m, reply[i] == 'p')
		}
		switch reply[i] {
		case 'p':
			for name, n := range t.m.counts {
				if c.Counts == nil {
					c.Counts = make(map[string]int)
				}
				c.Counts[name] += n
			}
			if t.m.Timer != nil {
				c.TimersFired++
				if lateness := now.Sub(t.m.Timer.At); !t.m.Timer.EventTime {
					c.TimerLateness = append(c.TimerLateness, max(lateness, 0))
				}
				break
			}
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
					zap.String("correlation_id", t.m.CorrelationID()), zap.String("reason", t.reason), zap.Int("attempt", t.m.Attempt), zap.Error(t.err),
					zap.String("dead_letter_stream", o.DeadLetterStream), zap.Int("suppressed", n))
			}
		}
	}
	if o.Observer != nil {
		o.Observer.Committed(c)
	}
}
