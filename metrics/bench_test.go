package metrics

import (
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// A commit of a full default batch: the engine's common case.
func fullCommit() processor.Commit {
	lat := make([]time.Duration, 256)
	for i := range lat {
		lat[i] = time.Duration(i) * 50 * time.Microsecond
	}
	return processor.Commit{Pipeline: "orders", Partition: 3, Processed: 256, Duration: time.Millisecond, Latencies: lat}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	m, _ := newTest(t)
	c := fullCommit()
	c.DeadLetters = map[string]int{processor.ReasonNotJSON: 1}
	m.Committed(c) // create the series
	m.Retried("orders", 3, nil)
	m.Handled("orders", time.Millisecond)

	tests := []struct {
		name string
		f    func()
	}{
		{"Committed", func() { m.Committed(c) }},
		{"Retried", func() { m.Retried("orders", 3, nil) }},
		{"Handled", func() { m.Handled("orders", time.Millisecond) }},
		{"SetPartitionStats", func() { m.SetPartitionStats("orders", 3, 1, 2, time.Second) }},
		{"Produced", func() { m.Produced("orders", 10) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s allocates %v times per call, want 0", tt.name, got)
		}
	}
}

func BenchmarkCommitted(b *testing.B) {
	m := New(nil)
	c := fullCommit()
	b.ReportAllocs()
	for b.Loop() {
		m.Committed(c)
	}
}

// BenchmarkHandled compares the cached children with looking the child up
// by label values on every call; the ratio is the point, not the numbers.
func BenchmarkHandled(b *testing.B) {
	m := New(nil)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Handled("orders", time.Millisecond)
		}
	})
	b.Run("with_label_values", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.handleDuration.WithLabelValues("orders").Observe(0.001)
		}
	})
}
