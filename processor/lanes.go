package processor

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// task is one entry (or timer firing) in flight and, once handled, its
// outcome.
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
	// wake is when a task in backoff may be tried again.
	wake time.Time
	// wrongPartition is set for an entry whose key routes elsewhere.
	wrongPartition bool
	// dupOf is the task in flight with the same dedupe id, dispatched
	// before this one; processed is set once a task is handled as
	// processed (read by the lanes of other tasks).
	dupOf     *task
	processed atomic.Bool
	// remoteDone is set once the task's writes outside the partition's
	// slot (Redis Cluster) have all been made by a try of its commit.
	remoteDone bool
}

// inflightID names the task in its partition's in-flight set: the entry
// id, or for a timer firing its member behind a prefix no id has.
func (t *task) inflightID() string {
	if t.m.Timer != nil {
		return "timer:" + timerMember(t.m.Timer.Key, t.m.Timer.Name)
	}
	return t.m.ID
}

func (t *task) deadLetter(reason string, err error) {
	t.kind, t.reason, t.err = 'd', reason, err
}

// lane handles the tasks of its keys. Each key has a queue of its own:
// the key's tasks are handled one at a time, in order, and a key whose head
// task failed and waits for its backoff parks only its own queue; the lane
// goes on with its other keys meanwhile. Tasks are pushed by the readers of
// every partition of the Processor; memory is bounded by MaxInflight per
// partition the worker reads (each task holds one unit of its partition's
// semaphore until it is committed).
type lane struct {
	p *Processor

	mu      sync.Mutex
	in      []*task
	closed  bool
	signal  chan struct{}
	purging atomic.Bool

	// caller runs the lane's handler calls (lane.run's goroutine only).
	caller *caller
}

func newLane(p *Processor) *lane {
	return &lane{p: p, signal: make(chan struct{}, 1)}
}

// push hands t to the lane.
func (l *lane) push(t *task) {
	l.mu.Lock()
	l.in = append(l.in, t)
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// close tells the lane that nothing more comes; it returns once every task
// it holds is handled or dropped.
func (l *lane) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// queueID names a key's queue in a lane: lanes serve every partition.
type queueID struct {
	partition int
	key       string
}

// keyQueue is one key's tasks in a lane, oldest first.
type keyQueue struct {
	id    queueID
	tasks []*task
	index int // in the parked heap, -1 when not parked
}

// run handles the lane's tasks until it is closed and empty. Tasks of a
// session that has ended (hard stop, lost lease) are dropped: their entries
// stay pending for the partition's next owner.
func (l *lane) run() {
	clock := l.p.o.Clock
	queues := map[queueID]*keyQueue{}
	var ready []*keyQueue // keys whose head task may run now, in turn
	var parked parkedHeap // keys in backoff, soonest first
	var in []*task
	var alarm ClockTimer
	defer func() {
		if alarm != nil {
			alarm.Stop()
		}
		l.caller.close()
	}()
	for {
		l.mu.Lock()
		in, l.in = l.in, in[:0]
		closed := l.closed
		l.mu.Unlock()
		for _, t := range in {
			id := queueID{t.part.n, t.m.Key}
			q, ok := queues[id]
			if !ok {
				q = &keyQueue{id: id, index: -1}
				queues[id] = q
				ready = append(ready, q)
			}
			q.tasks = append(q.tasks, t)
		}
		clear(in)
		if l.purging.Swap(false) {
			ready = unpark(&parked, ready)
		}
		now := clock.Now()
		for parked.Len() > 0 && !parked[0].tasks[0].wake.After(now) {
			ready = append(ready, heap.Pop(&parked).(*keyQueue))
		}
		if len(ready) > 0 {
			q := ready[0]
			ready = ready[1:]
			t := q.tasks[0]
			switch l.p.attempt(l, t) {
			case attemptRetry:
				heap.Push(&parked, q)
				continue
			case attemptDone:
				l.p.finish(t)
			case attemptDropped:
				t.part.handling.Add(-1)
			}
			q.tasks[0] = nil
			q.tasks = q.tasks[1:]
			if len(q.tasks) > 0 {
				ready = append(ready, q)
			} else {
				delete(queues, q.id)
			}
			continue
		}
		if closed && len(queues) == 0 {
			return
		}
		var wakeC <-chan time.Time
		if parked.Len() > 0 {
			if alarm != nil {
				alarm.Stop()
			}
			alarm = clock.NewTimer(parked[0].tasks[0].wake.Sub(now))
			wakeC = alarm.C()
		}
		select {
		case <-l.signal:
		case <-wakeC:
		}
	}
}

// purge wakes the lane to drop the parked tasks of sessions that have
// ended, rather than wait out their backoff.
func (l *lane) purge() {
	l.purging.Store(true)
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// unpark moves keys whose parked head task belongs to an ended session to
// ready, where attempt drops it.
func unpark(parked *parkedHeap, ready []*keyQueue) []*keyQueue {
	kept := (*parked)[:0]
	for _, q := range *parked {
		if q.tasks[0].ctx.Err() != nil {
			ready = append(ready, q)
			continue
		}
		kept = append(kept, q)
	}
	clear((*parked)[len(kept):])
	*parked = kept
	for i, q := range *parked {
		q.index = i
	}
	heap.Init(parked)
	return ready
}

// parkedHeap orders parked keys by their head task's wake time.
type parkedHeap []*keyQueue

func (h parkedHeap) Len() int           { return len(h) }
func (h parkedHeap) Less(i, j int) bool { return h[i].tasks[0].wake.Before(h[j].tasks[0].wake) }
func (h parkedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *parkedHeap) Push(x any) {
	q := x.(*keyQueue)
	q.index = len(*h)
	*h = append(*h, q)
}
func (h *parkedHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	q.index = -1
	return q
}

// What one attempt at a task came to.
type attemptResult int

const (
	attemptDone    attemptResult = iota // an outcome: processed or dead letter
	attemptRetry                        // a transient failure: wait until t.wake
	attemptDropped                      // the session ended: the entry stays pending
)

// errStepTimeout is the transient error of a handler call that ran past
// StepTimeout.
var errStepTimeout = errors.New("handler did not return within step_timeout")

// attempt runs the handler once on t.
func (p *Processor) attempt(l *lane, t *task) attemptResult {
	hard := t.ctx
	if hard.Err() != nil {
		return attemptDropped
	}
	if d := t.dupOf; d != nil && d.processed.Load() {
		t.kind = 'a' // a duplicate of an entry handled before it: the commit acks it
		return attemptDone
	}
	m := t.m
	m.ResetEffects()
	start := time.Now()
	err := p.callBounded(l, hard, t)
	m = t.m // a call past its timeout leaves a fresh copy
	if p.o.Observer != nil {
		p.o.Observer.Handled(p.o.Pipeline, time.Since(start))
	}
	if err == nil {
		err = checkEffects(m.effects)
	}
	if err == nil {
		err = p.checkTimers(m)
	}
	if err == nil {
		t.kind = 'p'
		return attemptDone
	}
	if reason, ok := permanentReason(err); ok {
		t.deadLetter(reason, err)
		return attemptDone
	}
	if hard.Err() != nil {
		return attemptDropped
	}
	if m.Attempt >= p.o.MaxAttempts {
		t.deadLetter(ReasonMaxAttempts, err)
		return attemptDone
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
	m.Attempt++
	t.wake = p.o.Clock.Now().Add(delay)
	return attemptRetry
}

// finish passes a handled task to its committer, after applying a
// processed entry's effects to its key's state.
func (p *Processor) finish(t *task) {
	t.part.handling.Add(-1)
	if t.kind == 'p' {
		t.processed.Store(true)
	}
	if t.kind == 'p' && t.m.states != nil {
		t.m.states.apply(t.m.Key, t.m, t.m.effects)
	}
	select {
	case t.results <- t:
	case <-t.ctx.Done():
	}
}

// callBounded runs the handler within StepTimeout, on the lane's caller
// goroutine (reused from call to call). A handler that ignores its ctx and
// runs on is left behind with its goroutine and the message it has; t gets
// a fresh copy for the next attempt, the lane a new caller, and the attempt
// fails with errStepTimeout.
func (p *Processor) callBounded(l *lane, hard context.Context, t *task) error {
	if p.o.StepTimeout < 0 {
		return p.call(hard, t.m)
	}
	ctx, cancel := context.WithTimeout(hard, p.o.StepTimeout)
	defer cancel()
	m := t.m
	if l.caller == nil {
		l.caller = p.newCaller()
	}
	c := l.caller
	c.state.Store(callRunning)
	c.in <- callReq{ctx: ctx, m: m}
	select {
	case err := <-c.out:
		if err != nil && ctx.Err() != nil && hard.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (%s): %w", errStepTimeout, p.o.StepTimeout, err)
		}
		return err
	case <-ctx.Done():
	}
	if hard.Err() == nil && p.leftBehind.Load() >= int64(p.o.Lanes) {
		// As many calls as lanes are left running already: wait for this
		// one rather than leave goroutines behind without bound.
		if ok, n := t.part.retryLog.allow(time.Now(), 5*time.Second); ok {
			p.log.Error("step_timeout_waiting", zap.String("entry_id", m.ID), zap.String("key", m.Key),
				zap.Int64("left_behind", p.leftBehind.Load()), zap.Int("suppressed", n))
		}
		select {
		case err := <-c.out:
			if err == nil {
				return nil
			}
			return fmt.Errorf("%w (%s): %w", errStepTimeout, p.o.StepTimeout, err)
		case <-hard.Done():
		}
	}
	if !c.state.CompareAndSwap(callRunning, callLeft) {
		err := <-c.out // it finished just now
		if hard.Err() != nil {
			return hard.Err()
		}
		return err
	}
	// The caller goroutine is the call's now: it ends when the call does.
	p.leftBehind.Add(1)
	l.caller = nil
	t.m = m.retryCopy()
	if hard.Err() != nil {
		return hard.Err()
	}
	p.log.Warn("step_timeout", zap.Int("partition", m.Partition), zap.String("entry_id", m.ID),
		zap.String("key", m.Key), zap.Duration("step_timeout", p.o.StepTimeout))
	return fmt.Errorf("%w (%s)", errStepTimeout, p.o.StepTimeout)
}

// caller is a goroutine that makes a lane's handler calls, one at a time.
type caller struct {
	in  chan callReq
	out chan error
	// state is the current call's: callRunning, then callFinished (its
	// result is sent on out) or callLeft (the lane has gone on without
	// it, and the goroutine ends when it returns).
	state atomic.Int32
}

type callReq struct {
	ctx context.Context
	m   *Message
}

// States of a bounded handler call.
const (
	callRunning int32 = iota
	callFinished
	callLeft
)

func (p *Processor) newCaller() *caller {
	c := &caller{in: make(chan callReq), out: make(chan error, 1)}
	go func() {
		for req := range c.in {
			err := p.call(req.ctx, req.m)
			if !c.state.CompareAndSwap(callRunning, callFinished) {
				p.leftBehind.Add(-1) // left behind: the lane has a new caller
				return
			}
			c.out <- err
		}
	}()
	return c
}

// close ends the caller goroutine once it is idle.
func (c *caller) close() {
	if c != nil {
		close(c.in)
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

// backoff is base·2^(attempt-1), capped at maxd, with ±50% jitter.
func backoff(base, maxd time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	return d/2 + rand.N(d+1)
}

// checkTimers refuses timers with ordering none, where no single owner
// would fire them, and timers of another key than the message's.
func (p *Processor) checkTimers(m *Message) error {
	for _, e := range m.effects {
		if !e.isTimer() || e.Timer == nil {
			continue
		}
		if p.o.Ordering == OrderingNone {
			return Permanentf(ReasonInvalidEffect, "timer %q: timers need ordering %q", e.Timer.Name, OrderingKey)
		}
		if e.Timer.Key != m.Key {
			return Permanentf(ReasonInvalidEffect, "timer %q of key %q set by an entry of key %q: a timer belongs to its entry's key", e.Timer.Name, e.Timer.Key, m.Key)
		}
	}
	return nil
}
