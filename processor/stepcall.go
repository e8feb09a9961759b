package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// A handler call runs on its lane's goroutine, bounded by StepTimeout in
// two ways. Its ctx has the deadline: Err reports it at once, and Done is
// closed by the watchdog (one goroutine per Processor, which looks at every
// lane's call ten times per StepTimeout), which ends a handler that heeds
// its ctx. A call still running a tick later, or one whose session has
// ended (hard stop, lost lease), is left behind with its goroutine and its
// message, and a new goroutine
// takes the lane on from there (resume): the task gets a fresh copy of
// its message and the attempt fails with errStepTimeout, a transient
// error. The call's own goroutine ends when the call returns, and what the
// call did is never committed. At most Lanes calls are left behind at a
// time; past that the watchdog waits for the call instead (logged
// step_timeout_waiting), unless its session has ended.
//
// The call costs the lane no goroutine switch and no timer: what a call
// past its timeout needs is paid for when one happens.

// laneCall is a handler call under way on a lane.
type laneCall struct {
	t        *task
	m        *Message
	ctx      stepCtx // the handler's, in the same allocation
	start    time.Time
	deadline int64 // unix ns
	// state is callRunning, then callFinished (the lane's goroutine goes
	// on) or callLeft (the watchdog has handed the lane to another).
	state atomic.Int32
}

// States of a watched handler call.
const (
	callRunning int32 = iota
	callFinished
	callLeft
)

// callWatched runs the handler on t within StepTimeout. left reports that
// the call ran so long that the watchdog handed the lane to another
// goroutine: the caller must then return at once and touch nothing of the
// lane.
func (p *Processor) callWatched(l *lane, hard context.Context, t *task, start time.Time) (err error, left bool) {
	if p.o.StepTimeout < 0 {
		return p.call(hard, t.m), false
	}
	deadline := start.Add(p.o.StepTimeout)
	c := &laneCall{t: t, m: t.m, ctx: stepCtx{Context: hard, deadline: deadline}, start: start, deadline: deadline.UnixNano()}
	ctx := &c.ctx
	l.call.Store(c)
	err = p.call(ctx, c.m)       // t.m belongs to the lane's next goroutine once the call is left
	ctx.cancel(context.Canceled) // as a WithDeadline's cancel: a ctx kept by the handler is done
	ctx.release()
	if !c.state.CompareAndSwap(callRunning, callFinished) {
		p.leftBehind.Add(-1)
		return nil, true
	}
	if err != nil && ctx.Err() != nil && hard.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%s): %w", errStepTimeout, p.o.StepTimeout, err), false
	}
	return err, false
}

// watchEvery is how often the watchdog looks at the lanes' calls: a tenth
// of StepTimeout, at least every 100ms (so that a hard stop does not wait
// on a stuck call) and at most every 5ms.
func watchEvery(stepTimeout time.Duration) time.Duration {
	return min(max(stepTimeout/10, 5*time.Millisecond), 100*time.Millisecond)
}

// watch is the watchdog of lanes until stop is closed. Each lane that it
// hands to a new goroutine keeps its place in workers: the goroutine left
// behind does not call Done.
func (p *Processor) watch(lanes []*lane, workers *sync.WaitGroup, stop <-chan struct{}) {
	if p.o.StepTimeout < 0 {
		return
	}
	every := watchEvery(p.o.StepTimeout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		for _, l := range lanes {
			c := l.call.Load()
			if c == nil || c.state.Load() != callRunning {
				continue
			}
			ended := c.t.ctx.Err() != nil
			if !ended && now < c.deadline {
				continue
			}
			c.ctx.expire()
			if !ended && now < c.deadline+int64(every) {
				continue // a tick for a handler that heeds its ctx to return
			}
			if !ended && p.leftBehind.Load() >= int64(p.o.Lanes) {
				// As many calls as lanes are left running already: wait for
				// this one rather than leave goroutines behind without bound.
				if ok, n := c.t.part.waitLog.allow(time.Now(), 5*time.Second); ok {
					p.log.Error("step_timeout_waiting", zap.String("entry_id", c.m.ID), zap.String("key", c.m.Key),
						zap.Int64("left_behind", p.leftBehind.Load()), zap.Int("suppressed", n))
				}
				continue
			}
			if !c.state.CompareAndSwap(callRunning, callLeft) {
				continue // it returned just now
			}
			p.leftBehind.Add(1)
			if !ended {
				p.log.Warn("step_timeout", zap.Int("partition", c.m.Partition), zap.String("entry_id", c.m.ID),
					zap.String("key", c.m.Key), zap.Duration("step_timeout", p.o.StepTimeout))
			}
			go func() {
				if l.resume(c) {
					workers.Done()
				}
			}()
		}
	}
}

// resume runs the lane on from call c, which was left behind: its attempt
// failed with errStepTimeout (or ended with its session).
func (l *lane) resume(c *laneCall) bool {
	t := c.t
	t.m = c.m.retryCopy() // the call left behind keeps the one it has
	err := t.ctx.Err()
	if err == nil {
		err = fmt.Errorf("%w (%s)", errStepTimeout, l.p.o.StepTimeout)
	}
	l.settle(l.st.cur, l.p.afterCall(t, c.start, err))
	return l.run()
}

// stepCtx is a handler call's ctx: its parent's values and cancellation,
// and the StepTimeout deadline. Unlike context.WithDeadline it starts no
// timer: Err compares the time, and Done, made only when asked for, is
// closed by the watchdog (expire) or when the parent is done.
type stepCtx struct {
	context.Context // the session's hard context
	deadline        time.Time

	mu      sync.Mutex
	done    chan struct{}
	err     error
	stopped func() bool // the parent's AfterFunc, once Done is made
}

var _ context.Context = (*stepCtx)(nil)

func (c *stepCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *stepCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		c.expire() // Done agrees with Err
		return context.DeadlineExceeded
	}
	return nil
}

func (c *stepCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else {
			parent := c.Context
			c.stopped = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
		}
	}
	return c.done
}

// expire ends c at its deadline.
func (c *stepCtx) expire() { c.cancel(context.DeadlineExceeded) }

func (c *stepCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}

// release undoes Done's tie to the parent once the call has returned.
func (c *stepCtx) release() {
	c.mu.Lock()
	stop := c.stopped
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}
