package dedupe

import (
	"testing"
	"time"
)

// BenchmarkCheck measures naming the sets an id is looked up in, once per
// batch on the engine's path, for a 24h window in 3h buckets.
func BenchmarkCheck(b *testing.B) {
	w := Window{Window: 24 * time.Hour, Bucket: 3 * time.Hour}
	now := time.Now()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(w.Check("{clicks:3}:eddy:dedupe:clickstream", now))
	}
	_ = n
}
