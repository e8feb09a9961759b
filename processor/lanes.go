package processor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

// task is one entry in flight and, once handled, its outcome.
type task struct {
	m    *Message
	part *partition
	// kind is the outcome: 'p' processed, 'd' dead letter, 'a' ack only.
	kind   byte
	reason string
	err    error
	// done, if set, is closed when the task is committed.
	done chan struct{}
	// ctx is the session's hard context and results its committer's
	// queue, both as they were when the task was dispatched: a lane may
	// still hold a task after its session has ended.
	ctx     context.Context
	results chan *task
}

func (t *task) deadLetter(reason string, err error) {
	t.kind, t.reason, t.err = 'd', reason, err
}

// lane handles the tasks of its keys one at a time, in order, until in is
// closed. Tasks of a session that has ended (hard stop, lost lease) are
// dropped: their entries stay pending for the partition's next owner.
func (p *Processor) lane(in <-chan *task) {
	for t := range in {
		ok := p.handle(t.ctx, t)
		t.part.handling.Add(-1)
		if !ok {
			continue
		}
		select {
		case t.results <- t:
		case <-t.ctx.Done():
		}
	}
}

// handle runs the handler on t until it succeeds, fails permanently or
// runs out of attempts. It returns false if hard ended it first; the entry
// then stays pending.
func (p *Processor) handle(hard context.Context, t *task) bool {
	m := t.m
	if hard.Err() != nil {
		return false
	}
	for {
		m.ResetEffects()
		start := time.Now()
		err := p.call(hard, m)
		if p.o.Observer != nil {
			p.o.Observer.Handled(p.o.Pipeline, time.Since(start))
		}
		if err == nil {
			err = checkEffects(m.effects)
		}
		if err == nil {
			t.kind = 'p'
			return true
		}
		if reason, ok := permanentReason(err); ok {
			t.deadLetter(reason, err)
			return true
		}
		if hard.Err() != nil {
			return false
		}
		if m.Attempt >= p.o.MaxAttempts {
			t.deadLetter(ReasonMaxAttempts, err)
			return true
		}
		if p.o.Observer != nil {
			p.o.Observer.Retried(p.o.Pipeline, m.Partition, err)
		}
		delay := backoff(p.o.Backoff, p.o.MaxBackoff, m.Attempt)
		if ok, n := t.part.retryLog.allow(time.Now(), 5*time.Second); ok {
			p.log.Warn("retrying_entry", zap.Int("partition", m.Partition), zap.String("entry_id", m.ID),
				zap.String("key", m.Key), zap.Int("attempt", m.Attempt), zap.Duration("backoff", delay),
				zap.Error(err), zap.Int("suppressed", n))
		}
		if !wait(hard, delay) {
			return false
		}
		m.Attempt++
	}
}

// call runs the handler, turning a panic into an ordinary (transient) error.
func (p *Processor) call(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return p.o.Handler.Handle(ctx, m)
}

// checkEffects rejects effects the commit could not write, so that one bad
// handler result can never fail a whole commit.
func checkEffects(effects []Effect) error {
	for _, e := range effects {
		switch {
		case e.Key == "":
			return Permanent("invalid_effect", errors.New("effect with an empty key"))
		case len(e.Fields) == 0 || len(e.Fields)%2 != 0:
			return Permanentf("invalid_effect", "effect on %s: want field/value pairs, got %d strings", e.Key, len(e.Fields))
		case len(e.Fields) > maxEffectStrings:
			return Permanentf("invalid_effect", "effect on %s: %d field/value strings, over the limit of %d", e.Key, len(e.Fields), maxEffectStrings)
		case e.Kind != EffectXAdd && e.Kind != EffectHSet:
			return Permanentf("invalid_effect", "effect on %s: unknown kind %d", e.Key, e.Kind)
		}
	}
	return nil
}

// backoff is base·2^(attempt-1), capped at maxd, with ±50% jitter.
func backoff(base, maxd time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	return d/2 + rand.N(d+1)
}
