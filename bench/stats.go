package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0 < q <= 1) of sorted, an ascending
// slice, by nearest rank: the smallest sample that at least q of the
// samples are at or below. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// Median returns the median of xs (the mean of the two middle values when
// there is an even number of them), or 0 for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Latency is the distribution of one latency measurement, in milliseconds.
type Latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
}

// summarize sorts samples in place and returns their percentiles.
func summarize(samples []time.Duration) Latency {
	slices.Sort(samples)
	return Latency{
		Samples: len(samples),
		P50:     ms(Percentile(samples, 0.50)),
		P99:     ms(Percentile(samples, 0.99)),
		P999:    ms(Percentile(samples, 0.999)),
		Max:     ms(Percentile(samples, 1)),
	}
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
