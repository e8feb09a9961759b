package processor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// The engine waits on its Clock: a retry an hour of backoff away, and a
// timer due in an hour, happen as soon as the test moves the clock, and
// not before. Nothing here waits for wall time to pass.
func TestClockDrivesBackoffAndTimers(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	clk := NewManualClock(time.Now())
	var failed, fired atomic.Int32
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if m.Timer != nil {
			fired.Add(1)
			m.Emit("fired", 0, "name", m.Timer.Name)
			return nil
		}
		if m.Attempt == 1 {
			failed.Add(1)
			return errors.New("once")
		}
		m.SetTimer("later", clk.Now().Add(time.Hour), "")
		return emitHandler(context.Background(), m)
	})
	produce(t, c, 1, []Record{{Key: "k", Fields: []string{"data", event("k", 0)}}})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Clock: clk,
		Backoff: time.Hour, MaxBackoff: time.Hour, Block: 20 * time.Millisecond,
		Heartbeat: time.Hour, SessionTimeout: 24 * time.Hour, TimerTick: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 10*time.Second, "the first attempt to fail", func() bool { return failed.Load() == 1 })
	if xlen(t, c, "out") != 0 {
		t.Fatal("committed before its backoff passed")
	}
	// Backoff is an hour ± 50%: 90 minutes is past it.
	waitFor(t, 10*time.Second, "the retry, once the clock passes the backoff", func() bool {
		clk.Advance(time.Minute)
		return xlen(t, c, "out") == 1
	})
	if n := fired.Load(); n != 0 {
		t.Fatalf("the timer fired %d times before it was due", n)
	}
	waitFor(t, 10*time.Second, "the timer, once the clock passes an hour", func() bool {
		clk.Advance(time.Minute)
		return xlen(t, c, "fired") == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fired.Load() != 1 {
		t.Errorf("the timer fired %d times, want once", fired.Load())
	}
}
