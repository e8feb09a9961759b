package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1ms … 100ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample, p50", []time.Duration{7}, 0.5, 7},
		{"one sample, max", []time.Duration{7}, 1, 7},
		{"two samples, p50 is the lower", []time.Duration{1, 2}, 0.5, 1},
		{"two samples, p99 is the upper", []time.Duration{1, 2}, 0.99, 2},
		{"100, p50", hundred, 0.50, 50 * time.Millisecond},
		{"100, p99", hundred, 0.99, 99 * time.Millisecond},
		{"100, p999 is the max", hundred, 0.999, 100 * time.Millisecond},
		{"100, max", hundred, 1, 100 * time.Millisecond},
		{"100, q near 0 is the min", hundred, 0.0001, time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.q); got != tt.want {
			t.Errorf("%s: Percentile(%d samples, %v) = %v, want %v", tt.name, len(tt.sorted), tt.q, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.xs...)
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.xs[i] {
				t.Errorf("Median(%v) reordered its argument", in)
			}
		}
	}
}

func TestSummarizeIsOrdered(t *testing.T) {
	samples := []time.Duration{9, 3, 7, 1, 5, 2, 8, 4, 6, 10}
	for i := range samples {
		samples[i] *= time.Millisecond
	}
	l := summarize(samples)
	if l.Samples != 10 || l.P50 != 5 || l.P99 != 10 || l.P999 != 10 || l.Max != 10 {
		t.Errorf("summarize(1..10ms) = %+v, want 10 samples, p50 5, p99 p999 max 10", l)
	}
	if !(l.P50 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("summarize: percentiles out of order: %+v", l)
	}
}

func TestCount(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {500000, "500,000"}, {1234567, "1,234,567"}, {-1500, "-1,500"}}
	for _, tt := range tests {
		if got := count(tt.n); got != tt.want {
			t.Errorf("count(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
