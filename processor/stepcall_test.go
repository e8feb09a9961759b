package processor

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A handler's ctx reports its deadline at once in Err, closes Done when
// the watchdog expires it, and follows its parent's cancellation whether
// Done was asked for before or after.
func TestStepCtx(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &stepCtx{Context: parent, deadline: time.Now().Add(time.Hour)}
	if d, ok := c.Deadline(); !ok || !d.Equal(c.deadline) {
		t.Errorf("Deadline = %v %v, want %v true", d, ok, c.deadline)
	}
	if c.Err() != nil {
		t.Fatalf("Err before anything = %v", c.Err())
	}
	done := c.Done()
	c.expire()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed by expire")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Errorf("Err after expire = %v, want DeadlineExceeded", c.Err())
	}
	c.release()

	past := &stepCtx{Context: context.Background(), deadline: time.Now().Add(-time.Millisecond)}
	if !errors.Is(past.Err(), context.DeadlineExceeded) {
		t.Errorf("Err past the deadline, before any expire = %v, want DeadlineExceeded", past.Err())
	}

	// The parent's cancellation reaches Done, made before it or after.
	p2, cancel2 := context.WithCancel(context.Background())
	before := &stepCtx{Context: p2, deadline: time.Now().Add(time.Hour)}
	d2 := before.Done()
	cancel2()
	select {
	case <-d2:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed when the parent was cancelled")
	}
	if !errors.Is(before.Err(), context.Canceled) {
		t.Errorf("Err = %v, want Canceled", before.Err())
	}
	after := &stepCtx{Context: p2, deadline: time.Now().Add(time.Hour)}
	select {
	case <-after.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done made after the parent was cancelled is not closed")
	}

	// A parent deadline before the step's wins.
	p3, cancel3 := context.WithDeadline(context.Background(), time.Now().Add(time.Minute))
	defer cancel3()
	short := &stepCtx{Context: p3, deadline: time.Now().Add(time.Hour)}
	if d, _ := short.Deadline(); !d.Before(short.deadline) {
		t.Errorf("Deadline = %v, want the parent's, before %v", d, short.deadline)
	}
	// release stops the tie to the parent: cancelling it later is harmless.
	p4, cancel4 := context.WithCancel(context.Background())
	r := &stepCtx{Context: p4, deadline: time.Now().Add(time.Hour)}
	_ = r.Done()
	r.release()
	cancel4()
	time.Sleep(10 * time.Millisecond) // an AfterFunc left registered would run now
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		t.Errorf("after release the parent's cancel still reached the ctx: %v", err)
	}
}

func TestWatchEvery(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, 100 * time.Millisecond},
		{200 * time.Millisecond, 20 * time.Millisecond},
		{time.Millisecond, 5 * time.Millisecond},
	} {
		if got := watchEvery(tt.timeout); got != tt.want {
			t.Errorf("watchEvery(%v) = %v, want %v", tt.timeout, got, tt.want)
		}
	}
}
