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

	// st is the lane's loop state, owned by the goroutine that runs the
	// lane: one at a time, since the watchdog hands it to a new goroutine
	// only when the running one is left behind in a handler call.
	st laneState
	// call is the handler call under way, for the watchdog (stepcall.go).
	call atomic.Pointer[laneCall]
}

// laneState is what lane.run keeps from one task to the next.
type laneState struct {
	queues map[queueID]*keyQueue
	ready  []*keyQueue // keys whose head task may run now, in turn
	parked parkedHeap  // keys in backoff, soonest first
	in     []*task
	alarm  ClockTimer
	cur    *keyQueue // the key whose head task is being attempted
}

func newLane(p *Processor) *lane {
	return &lane{p: p, signal: make(chan struct{}, 1), st: laneState{queues: map[queueID]*keyQueue{}}}
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

// run handles the lane's tasks until it is closed and empty, and reports
// whether it did: false means this goroutine was left behind in a handler
// call past StepTimeout, and another one runs the lane now (resume). Tasks
// of a session that has ended (hard stop, lost lease) are dropped: their
// entries stay pending for the partition's next owner.
func (l *lane) run() bool {
	clock := l.p.o.Clock
	st := &l.st
	for {
		l.mu.Lock()
		st.in, l.in = l.in, st.in[:0]
		closed := l.closed
		l.mu.Unlock()
		for _, t := range st.in {
			id := queueID{t.part.n, t.m.Key}
			q, ok := st.queues[id]
			if !ok {
				q = &keyQueue{id: id, index: -1}
				st.queues[id] = q
				st.ready = append(st.ready, q)
			}
			q.tasks = append(q.tasks, t)
		}
		clear(st.in)
		if l.purging.Swap(false) {
			st.ready = unpark(&st.parked, st.ready)
		}
		now := clock.Now()
		for st.parked.Len() > 0 && !st.parked[0].tasks[0].wake.After(now) {
			st.ready = append(st.ready, heap.Pop(&st.parked).(*keyQueue))
		}
		if len(st.ready) > 0 {
			q := st.ready[0]
			st.ready = st.ready[1:]
			st.cur = q
			res := l.p.attempt(l, q.tasks[0])
			if res == attemptLeft {
				return false
			}
			l.settle(q, res)
			continue
		}
		if closed && len(st.queues) == 0 {
			if st.alarm != nil {
				st.alarm.Stop()
			}
			return true
		}
		var wakeC <-chan time.Time
		if st.parked.Len() > 0 {
			if st.alarm != nil {
				st.alarm.Stop()
			}
			st.alarm = clock.NewTimer(st.parked[0].tasks[0].wake.Sub(now))
			wakeC = st.alarm.C()
		}
		select {
		case <-l.signal:
		case <-wakeC:
		}
	}
}

// settle applies what the attempt at q's head task came to.
func (l *lane) settle(q *keyQueue, res attemptResult) {
	st := &l.st
	st.cur = nil
	t := q.tasks[0]
	switch res {
	case attemptRetry:
		heap.Push(&st.parked, q)
		return
	case attemptDone:
		l.p.finish(t)
	case attemptDropped:
		t.part.handling.Add(-1)
	}
	q.tasks[0] = nil
	q.tasks = q.tasks[1:]
	if len(q.tasks) > 0 {
		st.ready = append(st.ready, q)
	} else {
		delete(st.queues, q.id)
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
	attemptLeft                         // left behind past StepTimeout: the lane goes on elsewhere
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
	err, left := p.callWatched(l, hard, t, start)
	if left {
		return attemptLeft
	}
	return p.afterCall(t, start, err)
}

// afterCall decides what a call of the handler on t, which began at start
// and returned err, comes to.
func (p *Processor) afterCall(t *task, start time.Time, err error) attemptResult {
	hard, m := t.ctx, t.m
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
			zap.String("key", m.Key), zap.String("correlation_id", m.CorrelationID()), zap.Int("attempt", m.Attempt), zap.Duration("backoff", delay),
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
