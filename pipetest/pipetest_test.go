package pipetest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// remind is a step that sets a processing-time timer a minute after each
// event, and emits "reminded" when it fires.
type remind struct{}

func (remind) Process(_ context.Context, ev *pipelines.Event) (bool, error) {
	m := ev.Message()
	m.SetTimer("remind", m.Now().Add(time.Minute), m.DedupeID)
	return true, nil
}

func (remind) Fire(_ context.Context, ev *pipelines.Event) error {
	m := ev.Message()
	m.Emit("reminded", 0, "key", m.Key, "id", m.Timer.Payload, "at", strconv.FormatInt(m.Now().UnixMilli(), 10))
	return nil
}

const config = `
pipelines:
  - name: p
    input: {stream: in, payload: data, partitions: 2}
    key: user
    dedupe: {id: id, window: 1h}
    steps:
      - state: {name: counts, incr: {n: 1}}
      - remind: {}
      - output: {stream: out}
`

func start(t *testing.T) *pipetest.Harness {
	t.Helper()
	reg := pipelines.NewRegistry()
	if err := reg.Register("remind", func(pipelines.StepConfig) (pipelines.Step, error) { return remind{}, nil }); err != nil {
		t.Fatal(err)
	}
	f, err := pipelines.Parse("test.yaml", []byte(config), reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipetest.Start(f, pipetest.Options{})
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

// Sent events are all handled once Settle returns; a timer fires when
// Advance moves the clock past it, and not before.
func TestHarness(t *testing.T) {
	h := start(t)
	for i, u := range []string{"a", "b", "a", "a"} {
		if err := h.Send("p", `{"user":"`+u+`","id":"e`+strconv.Itoa(i)+`"}`); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Send("p", `{"user":"a","id":"e0"}`); err != nil { // a duplicate
		t.Fatal(err)
	}
	if err := h.Settle(); err != nil {
		t.Fatal(err)
	}
	out, err := h.Entries("out")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 4 {
		t.Fatalf("out has %d entries, want 4", len(out))
	}
	st, err := h.State("p", "counts", "a")
	if err != nil {
		t.Fatal(err)
	}
	if st["n"] != "3" {
		t.Errorf("state counts of a = %v, want n=3", st)
	}
	if err := h.Advance(59 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.Entries("reminded"); len(r) != 0 {
		t.Fatalf("%d timers fired 59s into a minute", len(r))
	}
	if err := h.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := h.Entries("reminded")
	if err != nil {
		t.Fatal(err)
	}
	// One timer per key, moved by each event: a and b.
	if len(r) != 2 {
		t.Fatalf("reminded = %d entries, want 2 (one per key): %v", len(r), r)
	}
	for _, e := range r {
		if e.Fields["at"] != strconv.FormatInt(pipetest.DefaultStart.Add(time.Minute).UnixMilli(), 10) {
			t.Errorf("fired at %s, want a minute after the start", e.Fields["at"])
		}
	}
	if a := r[0].Fields; a["key"] == "a" && a["id"] != "e3" {
		t.Errorf("a's timer carries %q, want e3 (the last event moved it)", a["id"])
	}
}

// A harness started on the Redis of another, after it closed, goes on from
// what was committed: nothing is handled twice.
func TestHarnessRestart(t *testing.T) {
	h := start(t)
	if err := h.Send("p", `{"user":"a","id":"x"}`); err != nil {
		t.Fatal(err)
	}
	if err := h.Settle(); err != nil {
		t.Fatal(err)
	}
	mr := h.Redis()
	f := mustParse(t)
	h2, err := pipetest.Start(f, pipetest.Options{Redis: mr})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if err := h2.Settle(); err != nil {
		t.Fatal(err)
	}
	if out, _ := h2.Entries("out"); len(out) != 1 {
		t.Errorf("out = %d entries after a restart, want 1", len(out))
	}
}

func mustParse(t *testing.T) *pipelines.File {
	t.Helper()
	reg := pipelines.NewRegistry()
	_ = reg.Register("remind", func(pipelines.StepConfig) (pipelines.Step, error) { return remind{}, nil })
	f, err := pipelines.Parse("test.yaml", []byte(config), reg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
