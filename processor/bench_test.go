package processor

import (
	"context"
	"hash/fnv"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
)

var benchKeys = func() []string {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	return keys
}()

// BenchmarkRouting measures routing an entry (partition, then lane) and
// reports its speed against a baseline in the same run: both hashes through
// hash/fnv, as a first version had it.
func BenchmarkRouting(b *testing.B) {
	// The baseline, timed in the same run (a nested testing.Benchmark would
	// wait on the running benchmark's lock).
	const n = 1 << 20
	sink := 0
	start := time.Now()
	for i := 0; i < n; i++ { // partition and lane, each hashing the key through hash/fnv
		k := []byte(benchKeys[i%len(benchKeys)])
		h := fnv.New32a()
		_, _ = h.Write(k)
		l := fnv.New32a()
		_, _ = l.Write(k)
		sink += int(h.Sum32()%8) + int(l.Sum32()*0x85ebca6b%32)
	}
	baseline := float64(time.Since(start).Nanoseconds()) / n
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := benchKeys[i%len(benchKeys)]
		sink += PartitionOf(k, 8) + laneOf(k, 32)
	}
	_ = sink
	if ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N); ns > 0 {
		b.ReportMetric(baseline/ns, "x_faster_than_hash/fnv")
	}
}

// BenchmarkCommitArgs measures building the commit script's arguments for
// a 256-entry batch with one output each (reported per entry).
func BenchmarkCommitArgs(b *testing.B) {
	effects := make([][]Effect, 256)
	for i := range effects {
		effects[i] = []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"key", benchKeys[i], "id", "e" + strconv.Itoa(i), "data", `{"k":1}`}}}
	}
	var a commitArgs
	b.ReportAllocs()
	for b.Loop() {
		a.reset("in", "in:dlq", "{in}:eddy:lease:g", "", "g", "{in}:eddy:dedupe:g:1", []string{"{in}:eddy:dedupe:g:1", "{in}:eddy:dedupe:g:0"}, 0, 0)
		for i, e := range effects {
			a.processed("1-"+strconv.Itoa(i), benchKeys[i], e)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/entry")
}

// BenchmarkHandlerCall: one handler call bounded by StepTimeout (watched
// on the lane's goroutine) against the bare call (StepTimeout -1) measured
// in the same run; the difference is what the bound costs per event.
func BenchmarkHandlerCall(b *testing.B) {
	for _, timeout := range []time.Duration{-1, 30 * time.Second} {
		name := "bounded"
		if timeout < 0 {
			name = "bare"
		}
		b.Run(name, func(b *testing.B) {
			p := &Processor{o: Options{StepTimeout: timeout, Lanes: 1, Handler: HandlerFunc(func(context.Context, *Message) error { return nil })}}
			p.log = zap.NewNop()
			l := newLane(p)
			t := &task{m: &Message{}, ctx: context.Background()}
			b.ReportAllocs()
			for b.Loop() {
				if err, left := p.callWatched(l, t.ctx, t, time.Now()); err != nil || left {
					b.Fatal(err, left)
				}
			}
		})
	}
}
