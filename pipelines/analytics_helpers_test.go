package pipelines_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// The helpers the tests of the analytics steps (window, session, funnel,
// threshold, absence, saga) share.

// t0 is where the harness clock starts; event times are offsets from it.
var t0 = pipetest.DefaultStart

// ms is the unix ms of t0 + d.
func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// iso is the RFC 3339 form of t0 + d, as results write it.
func iso(d time.Duration) string { return t0.Add(d).UTC().Format(time.RFC3339Nano) }

// startHarness parses config with the built-in steps and starts a harness
// on it with opts, closed at the end of the test.
func startHarness(t testing.TB, config string, opts pipetest.Options) *pipetest.Harness {
	t.Helper()
	f, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipetest.Start(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// settleTicking waits until h has handled everything. An event-time timer
// that an event's watermark made due fires on the timer loop's next tick,
// which waits on the harness clock: while one is due Settle does not
// settle, so the clock is moved on by tick (the pipeline's timers.tick)
// and Settle tried again, up to ticks times.
func settleTicking(t testing.TB, h *pipetest.Harness, tick time.Duration, ticks int) {
	t.Helper()
	err := h.Settle()
	for i := 0; err != nil && i < ticks; i++ {
		h.Clock().Advance(tick)
		err = h.Settle()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// advance moves the harness clock by d.
func advance(t testing.TB, h *pipetest.Harness, d time.Duration) {
	t.Helper()
	if err := h.Advance(d); err != nil {
		t.Fatal(err)
	}
}

// result is one result entry, its data decoded.
type result struct {
	Key, ID, Kind string
	Data          map[string]any
}

// results reads the result entries of stream.
func results(t testing.TB, h *pipetest.Harness, stream string) []result {
	t.Helper()
	es, err := h.Entries(stream)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]result, len(es))
	for i, e := range es {
		out[i] = result{Key: e.Fields["key"], ID: e.Fields["id"], Kind: e.Fields["kind"]}
		if err := json.Unmarshal([]byte(e.Fields["data"]), &out[i].Data); err != nil {
			t.Fatalf("%s entry %s: data %q: %v", stream, e.ID, e.Fields["data"], err)
		}
	}
	return out
}

// normal is r with its data as JSON decodes it (numbers float64), for
// comparison with what the stream holds.
func normal(t testing.TB, r result) result {
	t.Helper()
	b, err := json.Marshal(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	r.Data = nil
	if err := json.Unmarshal(b, &r.Data); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkResults compares stream's results with want, in order.
func checkResults(t testing.TB, h *pipetest.Harness, stream string, want ...result) {
	t.Helper()
	got := results(t, h, stream)
	for i := range want {
		want[i] = normal(t, want[i])
	}
	if len(got) != len(want) {
		t.Fatalf("%s has %d results, want %d:\n got %s\nwant %s", stream, len(got), len(want), dump(got), dump(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s result %d:\n got %s\nwant %s", stream, i, dump(got[i]), dump(want[i]))
		}
	}
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
