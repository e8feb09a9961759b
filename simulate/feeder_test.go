package simulate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingSink keeps what it is sent and tells got about the first batch.
type recordingSink struct {
	mu      sync.Mutex
	events  []Event
	batches int
	err     error // returned from every Send after the first
	got     chan struct{}
	once    sync.Once
}

func newRecordingSink() *recordingSink { return &recordingSink{got: make(chan struct{})} }

func (s *recordingSink) Send(_ context.Context, batch []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.once.Do(func() { close(s.got) })
	if s.err != nil && s.batches > 0 {
		return s.err
	}
	s.batches++
	s.events = append(s.events, batch...)
	return nil
}

func (s *recordingSink) sent() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// runFeeder runs f in a goroutine and returns a channel with Run's result.
func runFeeder(ctx context.Context, f *Feeder) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	return done
}

// wait returns Run's result, failing the test if Run has not returned long
// after it should have (a hang guard, not a timing assertion).
func wait(tb testing.TB, done <-chan error) error {
	tb.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		tb.Fatal("Feeder.Run did not return")
		return nil
	}
}

func TestFeederStopsOnCancel(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{Seed: 5, Keys: 10, Duplicates: 0.1, Bad: 0.1, Now: fixedClock(epoch)}
	f := &Feeder{Generator: NewClickstream(opts), Sink: sink, Rate: 5000, Interval: time.Millisecond}
	start := time.Now()
	done := runFeeder(ctx, f)
	<-sink.got
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	elapsed := time.Since(start)

	got := sink.sent()
	if len(got) == 0 {
		t.Fatal("Run sent no events")
	}
	// The rate bounds what can be sent: rate × time, plus one burst.
	if limit := int(5000*elapsed.Seconds()) + 4*5; len(got) > limit {
		t.Errorf("sent %d events in %v at 5000/s, want at most %d", len(got), elapsed, limit)
	}
	// Events arrive in generation order, with their keys.
	want := take(t, NewClickstream(opts), len(got))
	for i := range got {
		if !bytes.Equal(got[i].Data, want[i].event) || got[i].Key != want[i].key {
			t.Fatalf("event %d = %q %q, want %q %q", i, got[i].Data, got[i].Key, want[i].event, want[i].key)
		}
	}
	n := len(sink.sent())
	if n != len(got) {
		t.Errorf("sink got %d more events after Run returned", n-len(got))
	}
}

func TestFeederRunsUntilDeadline(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	f := &Feeder{Generator: NewIoT(Options{}), Sink: sink, Rate: 2000}
	if err := wait(t, runFeeder(ctx, f)); err != nil {
		t.Fatalf("Run until deadline = %v, want nil", err)
	}
	if len(sink.sent()) == 0 {
		t.Error("Run sent no events in 200ms at 2000/s")
	}
}

func TestFeederDuration(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	f := &Feeder{Generator: NewIoT(Options{}), Sink: sink, Rate: 2000, Duration: 100 * time.Millisecond}
	if err := wait(t, runFeeder(context.Background(), f)); err != nil {
		t.Fatalf("Run with Duration = %v, want nil", err)
	}
	if len(sink.sent()) == 0 {
		t.Error("Run with Duration 100ms at 2000/s sent no events")
	}
}

func TestFeederLimit(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	f := &Feeder{Generator: NewIoT(Options{}), Sink: sink, Rate: 1e6, Limit: 1234}
	if err := wait(t, runFeeder(context.Background(), f)); err != nil {
		t.Fatalf("Run with Limit = %v, want nil", err)
	}
	if got := len(sink.sent()); got != 1234 {
		t.Errorf("Run with Limit 1234 sent %d events", got)
	}
}

func TestFeederSinkError(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	errDown := errors.New("redis down")
	sink.err = errDown
	f := &Feeder{Generator: NewClickstream(Options{}), Sink: sink, Rate: 1e5}
	err := wait(t, runFeeder(context.Background(), f))
	if !errors.Is(err, errDown) {
		t.Errorf("Run with a failing sink = %v, want it to wrap %v", err, errDown)
	}
}

func TestFeederInvalid(t *testing.T) {
	t.Parallel()
	g, s := NewIoT(Options{}), newRecordingSink()
	tests := []struct {
		name string
		f    Feeder
		want []string
	}{
		{"empty", Feeder{}, []string{"Generator is required", "Sink is required", "Rate 0"}},
		{"negative rate", Feeder{Generator: g, Sink: s, Rate: -1}, []string{"Rate -1"}},
		{"negative limit", Feeder{Generator: g, Sink: s, Rate: 1, Limit: -1}, []string{"Limit -1"}},
		{"negative duration", Feeder{Generator: g, Sink: s, Rate: 1, Duration: -time.Second}, []string{"Duration -1s"}},
	}
	for _, tt := range tests {
		err := tt.f.Run(context.Background())
		if err == nil {
			t.Errorf("%s: Run = nil, want an error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Run = %q, want it to mention %q", tt.name, err, w)
			}
		}
	}
}
