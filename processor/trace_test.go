package processor

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestTraceID(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		tp, want string
	}{
		{"00-" + id + "-00f067aa0ba902b7-01", id},
		{"00-" + id + "-00f067aa0ba902b7-00", id},
		{"01-" + id + "-00f067aa0ba902b7-01-extra", id}, // a later version may add parts
		{"01-" + id + "-00f067aa0ba902b7-01", id},
		{"00-" + id + "-00f067aa0ba902b7-01-extra", ""}, // version 00 has four parts
		{"01-" + id + "-00f067aa0ba902b7-01x", ""},
		{"ff-" + id + "-00f067aa0ba902b7-01", ""},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"00-" + id + "-0000000000000000-01", ""},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""}, // uppercase
		{"00-" + id + "-00f067aa0ba902b7", ""},
		{"00_" + id + "-00f067aa0ba902b7-01", ""},
		{"", ""},
		{"garbage", ""},
	} {
		if got := TraceID(tc.tp); got != tc.want {
			t.Errorf("TraceID(%q) = %q, want %q", tc.tp, got, tc.want)
		}
	}
}

func TestCorrelationID(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name string
		m    Message
		want string
	}{
		{"trace id", Message{ID: "1-0", DedupeID: "e1", Fields: []string{"data", "{}", TraceField, tp}}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"invalid traceparent: dedupe id", Message{ID: "1-0", DedupeID: "e1", Fields: []string{TraceField, "x"}}, "e1"},
		{"stream id", Message{ID: "1-0", Fields: []string{"data", "{}"}}, "1-0"},
		{"timer firing", Message{Timer: &TimerSpec{Name: "t"}}, ""},
	} {
		if got := tc.m.CorrelationID(); got != tc.want {
			t.Errorf("%s: CorrelationID() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// traceRecorder is a BatchTracer that keeps what it is told.
type traceRecorder struct {
	mu      sync.Mutex
	commits []TracedCommit
}

func (r *traceRecorder) TraceCommit(c TracedCommit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = append(r.commits, c)
}

func (r *traceRecorder) parents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.commits {
		out = append(out, c.Parents...)
	}
	return out
}

// A producer's trace context goes on: the outputs of its event carry its
// traceparent (unless the handler set its own), a dead letter keeps it and
// names the trace in eddy.correlation_id, and each commit's span is told
// every trace of its batch. An event without one (or with a broken one)
// gets none, and its dead letter's correlation id is its event id.
func TestTraceCarriedToOutputsAndDeadLetters(t *testing.T) {
	_, c := newMiniClient(t)
	const (
		tp1  = "00-11111111111111111111111111111111-1111111111111111-01"
		tp2  = "00-22222222222222222222222222222222-2222222222222222-01"
		tp3  = "00-33333333333333333333333333333333-3333333333333333-01"
		tp4  = "00-44444444444444444444444444444444-4444444444444444-00"
		mine = "00-99999999999999999999999999999999-9999999999999999-01"
	)
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		switch m.Key {
		case "c":
			m.Emit("out", 0, "key", m.Key, TraceField, mine)
		case "e", "f":
			return Permanent(ReasonInvalid, errors.New("refused"))
		default:
			fields := []string{"key", m.Key}
			m.Emit("out", 0, fields...)
			m.Emit("copy", 0, fields...) // the same slice to two streams
		}
		return nil
	})
	rec := &traceRecorder{}
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Tracer: rec,
		Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range [][]string{
		{"data", `{"k":"a","id":"1"}`, TraceField, tp1},
		{"data", `{"k":"b","id":"2"}`},
		{TraceField, tp2, "data", `{"k":"c","id":"3"}`},
		{"data", `not json`, TraceField, tp3},
		{"data", `{"k":"d","id":"5"}`, TraceField, "garbage"},
		{"data", `{"k":"e","id":"6"}`},
		{"data", `{"k":"f","id":"7"}`, TraceField, tp4},
	} {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: e}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	runUntil(t, p, func() bool { return c.XLen(ctx, "out").Val() == 4 && c.XLen(ctx, "in:dlq").Val() == 3 }, 10*time.Second)

	for _, stream := range []string{"out", "copy"} {
		for _, e := range c.XRange(ctx, stream, "-", "+").Val() {
			want := map[string]string{"a": tp1, "b": "", "c": mine, "d": ""}[e.Values["key"].(string)]
			if got, _ := e.Values[TraceField].(string); got != want {
				t.Errorf("%s entry of key %v: traceparent %q, want %q (fields %v)", stream, e.Values["key"], got, want, e.Values)
			}
		}
	}
	dls := c.XRange(ctx, "in:dlq", "-", "+").Val()
	wantDL := map[string][2]string{ // data → traceparent, correlation id
		`not json`:           {tp3, "33333333333333333333333333333333"},
		`{"k":"e","id":"6"}`: {"", "6"},
		`{"k":"f","id":"7"}`: {tp4, "44444444444444444444444444444444"},
	}
	for _, e := range dls {
		want, ok := wantDL[e.Values["data"].(string)]
		if !ok {
			t.Errorf("unexpected dead letter %v", e.Values)
			continue
		}
		if got, _ := e.Values[TraceField].(string); got != want[0] {
			t.Errorf("dead letter %v: traceparent %q, want %q", e.Values["data"], got, want[0])
		}
		if got, _ := e.Values["eddy.correlation_id"].(string); got != want[1] {
			t.Errorf("dead letter %v: eddy.correlation_id %q, want %q", e.Values["data"], got, want[1])
		}
		var fields []string
		for k, v := range e.Values {
			fields = append(fields, k, v.(string))
		}
		d, err := parseDeadLetter(e.ID, fields)
		if err != nil || d.CorrelationID != want[1] || slices.Contains(d.Fields, "eddy.correlation_id") {
			t.Errorf("parseDeadLetter(%v) = correlation %q, fields %v, %v; want %q and the id not among the original fields",
				e.Values["data"], d.CorrelationID, d.Fields, err, want[1])
		}
	}

	got := rec.parents()
	slices.Sort(got)
	if want := []string{tp1, tp2, tp3, tp4}; !slices.Equal(got, want) {
		t.Errorf("parents told to the tracer = %v, want %v (each valid one once)", got, want)
	}
	entries := 0
	for _, tc := range rec.commits {
		entries += tc.Entries
		if tc.Pipeline != "t" || tc.Stream != "in" || tc.Err != nil || tc.End.Before(tc.Start) {
			t.Errorf("traced commit = %+v, want pipeline t, stream in, no error, End >= Start", tc)
		}
	}
	if entries != 7 {
		t.Errorf("traced commits hold %d entries, want 7", entries)
	}
}

// Carrying traces allocates nothing for entries without a traceparent.
func TestCarryTracesWithoutTraceAllocatesNothing(t *testing.T) {
	batch := traceBatch(64, false)
	if n := testing.AllocsPerRun(100, func() { carryTraces(batch) }); n != 0 {
		t.Errorf("carryTraces on a batch without traceparents: %v allocations, want 0", n)
	}
}

// traceBatch is n processed tasks with one output each, with a
// traceparent field or not.
func traceBatch(n int, traced bool) []*task {
	batch := make([]*task, n)
	for i := range batch {
		id := strconv.Itoa(i)
		f := []string{"data", `{"k":"` + id + `"}`}
		if traced {
			f = append(f, TraceField, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		}
		batch[i] = &task{kind: 'p', m: &Message{ID: "1-" + id, Fields: f,
			effects: []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"key", id, "id", id, "data", "{}"}}}}}
	}
	return batch
}

// BenchmarkCommitTrace: what carrying trace contexts costs a commit, per
// entry, for entries without a traceparent (every entry when nobody
// traces) and with one (an output copied with the field added).
func BenchmarkCommitTrace(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "untraced"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) {
			batch := traceBatch(256, traced)
			orig := make([][]string, len(batch))
			for i, t := range batch {
				orig[i] = t.m.effects[0].Fields
			}
			b.ReportAllocs()
			for b.Loop() {
				for i, t := range batch {
					t.m.effects[0].Fields = orig[i]
				}
				carryTraces(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/entry")
		})
	}
}
