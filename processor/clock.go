package processor

import "time"

// Clock is the engine's time source: every wait (backoff, lease renewal,
// membership, reclaim, the janitor, timers, the idle watermark) goes
// through it, so a test can drive time instead of sleeping. Three bounds
// stay on the wall clock, because they bound real calls to Redis: the
// shutdown and drain timeouts (they set the deadline of Redis calls) and
// the committer's linger of a few microseconds.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) ClockTimer
}

// ClockTimer is a Clock's one-shot timer, like *time.Timer.
type ClockTimer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop stops the timer; it reports whether it was still running.
	Stop() bool
}

// redisNow is what to measure ages of entry ids from: the zero time, which
// asks a script for Redis's own clock (the one entry ids are made by), but
// for a Clock a test drives.
func redisNow(c Clock) time.Time {
	if _, sys := c.(systemClock); sys {
		return time.Time{}
	}
	return c.Now()
}

// SystemClock returns the Clock of package time.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) ClockTimer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }
