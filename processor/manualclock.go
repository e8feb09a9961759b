package processor

import (
	"sync"
	"time"
)

// ManualClock is a Clock that moves only when Advance moves it: for tests
// of code that runs the engine (package pipetest, eddy test), which drive
// time instead of waiting for it.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

var _ Clock = (*ManualClock)(nil)

type manualTimer struct {
	c       chan time.Time
	at      time.Time
	clk     *ManualClock
	stopped bool
}

// NewManualClock returns a clock standing at now.
func NewManualClock(now time.Time) *ManualClock { return &ManualClock{now: now} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once the clock has moved d forward.
func (c *ManualClock) NewTimer(d time.Duration) ClockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: make(chan time.Time, 1), at: c.now.Add(d), clk: c}
	if d <= 0 {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock by d and fires every timer due by then.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.c <- c.now
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

func (t *manualTimer) C() <-chan time.Time { return t.c }

func (t *manualTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.stopped && len(t.c) == 0
	t.stopped = true
	return was
}
