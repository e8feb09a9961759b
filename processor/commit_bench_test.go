package processor

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/dedupe"
	"github.com/eddy-streams/eddy/internal/redistest"
)

// BenchmarkCommitScript measures redis-server's CPU time in the commit
// script per entry (INFO cpu just before and after each commit: on a
// shared machine, INFO commandstats counts the time Redis waits for a core
// too), for batches shaped like eddy
// bench's: 512 entries of an owner (one XACK), each with a dedupe id and
// one output of three fields. "fresh" is a young window, where only the
// set being marked exists; "steady" has every bucket set of the window
// (9 with the default buckets of Window / DefaultDedupeBuckets, 3 with
// buckets of Window / 2: "steady-3sets").
// The Redis time is what the commit costs the one core Redis has; the Go
// side's ns/op is not the point.
func BenchmarkCommitScript(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	const batch = 512
	payload := `{"event_id":"t1-1","user_id":"u1","pad":"` + strings.Repeat("x", 160) + `"}`
	prefix := DedupePrefix("in", 0, 1, "g")
	for _, tc := range []struct {
		name    string
		buckets time.Duration
		steady  bool
	}{
		{"fresh", DefaultDedupeBuckets, false},
		{"steady", DefaultDedupeBuckets, true},
		{"steady-3sets", 2, true},
	} {
		w := dedupe.Window{Window: time.Hour, Bucket: time.Hour / tc.buckets}
		steady := tc.steady
		b.Run(tc.name, func(b *testing.B) {
			if err := c.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			lease := leaseKey("in", 0, 1, "g")
			c.Set(ctx, lease, "f1", 0)
			if err := ensureGroup(ctx, c, "in", "g", StartOldest); err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			if steady {
				for i, k := range w.Check(prefix, now) {
					_, exp := w.Mark(prefix, now.Add(-time.Duration(i)*w.Bucket))
					ids := make([]any, 90000/len(w.Check(prefix, now)))
					for j := range ids {
						ids[j] = "pre-" + strconv.Itoa(i) + "-" + strconv.Itoa(j)
					}
					c.SAdd(ctx, k, ids...)
					c.PExpireAt(ctx, k, exp)
				}
			}
			var a commitArgs
			entries, n, cpu := 0, 0, 0.0
			for b.Loop() {
				b.StopTimer()
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for range batch {
						p.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{"data", payload}})
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				es, err := readNew(ctx, c, "in", "g", "w", batch, time.Millisecond)
				if err != nil || len(es) != batch {
					b.Fatalf("read %d entries, %v", len(es), err)
				}
				cpu0 := redisCPU(b, c)
				b.StartTimer()
				mark, at := w.Mark(prefix, now)
				a.reset("in", "in:dlq", lease, "f1", "g", mark, w.Check(prefix, now), at.UnixMilli(), 0)
				for _, e := range es {
					n++
					id := "e-" + strconv.Itoa(n)
					a.processed(e.id, id, []Effect{{Kind: EffectXAdd, Key: "out", MaxLen: 100_000_000,
						Fields: []string{"key", "u" + strconv.Itoa(n%10000), "id", id, "data", payload}}})
				}
				reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
				if err != nil || reply != strings.Repeat("p", batch) {
					b.Fatalf("commit = %.20q…, %v; want every entry processed", reply, err)
				}
				b.StopTimer()
				cpu += redisCPU(b, c) - cpu0
				b.StartTimer()
				entries += batch
			}
			b.ReportMetric(cpu*1e6/float64(entries), "redis_us/entry")
		})
	}
}

// redisCPU is redis-server's CPU seconds so far, user and system.
func redisCPU(tb testing.TB, c *redis.Client) float64 {
	tb.Helper()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	total := 0.0
	for line := range strings.Lines(info) {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				total += x
			}
		}
	}
	return total
}
