package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

type countObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *countObserver) Committed(c Commit) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, n := range c.Counts {
		o.counts[k] += n
	}
}
func (o *countObserver) Retried(string, int, error)    {}
func (o *countObserver) Handled(string, time.Duration) {}

func (o *countObserver) get(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[name]
}

// Message.Count reaches the Observer once per committed message, never for
// a failed attempt or a duplicate; Message.GaugeAdd keeps a level in
// Redis that Inspector.Stats reads back; Message.Watermark is the
// partition's watermark as the handler runs, and Message.Now the engine
// clock.
func TestCountsGaugesWatermark(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	dec := DecoderFunc(func(m *Message) error {
		if err := jsonDecoder.Decode(m); err != nil {
			return err
		}
		at, _ := m.Data.(map[string]any)["at"].(float64)
		m.EventTime = time.UnixMilli(int64(at))
		return nil
	})
	var failed atomic.Bool
	var mu sync.Mutex
	watermarks := map[string]time.Time{}
	var nowSkew time.Duration
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		m.Count("seen", 1)
		m.GaugeAdd("open", 1)
		if m.Key == "flaky" && failed.CompareAndSwap(false, true) {
			return errors.New("once")
		}
		mu.Lock()
		watermarks[m.DedupeID] = m.Watermark()
		nowSkew = max(nowSkew, time.Since(m.Now()).Abs())
		mu.Unlock()
		return nil
	})
	obs := &countObserver{counts: map[string]int{}}
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: dec, Handler: h, Observer: obs,
		Block: 20 * time.Millisecond, Backoff: time.Millisecond, DedupeWindow: time.Hour,
		AllowedLateness: 5 * time.Second, IdleWatermark: -1})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	ev := func(key, id string, at time.Time) Record {
		return Record{Key: key, Fields: []string{"data", fmt.Sprintf(`{"k":%q,"id":%q,"at":%d}`, key, id, at.UnixMilli())}}
	}
	produce(t, c, 1, []Record{ev("a", "e1", base.Add(10*time.Second))})
	waitFor(t, 10*time.Second, "the first event", func() bool { return acked(t, c, 1) == 1 })
	// A duplicate of e1, a flaky key that fails once, and a later event.
	produce(t, c, 1, []Record{ev("a", "e1", base.Add(10*time.Second)), ev("flaky", "e2", base.Add(20*time.Second))})
	waitFor(t, 10*time.Second, "the rest", func() bool { return acked(t, c, 1) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := obs.get("seen"); got != 2 {
		t.Errorf("Counts[seen] = %d, want 2 (a failed attempt and a duplicate count nothing)", got)
	}
	in, err := NewInspector(c, Options{Pipeline: "t", Stream: "in"})
	if err != nil {
		t.Fatal(err)
	}
	gauges, err := in.Gauges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := gauges[0]["open"]; got != 2 {
		t.Errorf("Gauges[open] = %d, want 2", got)
	}
	// An entry's watermark is as of its place in the stream: the highest
	// event time of the entries before it, less the lateness. e1 came
	// first (no watermark yet); e2 came after e1 and its duplicate.
	for id, want := range map[string]time.Time{"e1": {}, "e2": base.Add(5 * time.Second)} {
		if w := watermarks[id]; !w.Equal(want) {
			t.Errorf("Watermark at %s = %v, want %v", id, w, want)
		}
	}
	if nowSkew > time.Minute {
		t.Errorf("Message.Now is %v off the clock", nowSkew)
	}
}
