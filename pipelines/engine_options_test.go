package pipelines

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// The engine's options in YAML reach processor.Options, and each bad value
// is a problem at its path.
func TestEngineOptions(t *testing.T) {
	f, err := Parse("t.yaml", []byte(`
pipelines:
  - name: p
    input: {stream: s, payload: data, event_time: ts}
    key: k
    step_timeout: 2s
    state_cache_size: 500
    wrong_partition: dead_letter
    timers: {tick: 20ms, allowed_lateness: 3s, idle_watermark: 1s}
    steps:
      - state: {name: counts, incr: {n: 1}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := f.Pipelines[0].Options()
	if o.StepTimeout != 2*time.Second || o.StateCacheSize != 500 || o.WrongPartition != processor.WrongPartitionDeadLetter ||
		o.TimerTick != 20*time.Millisecond || o.AllowedLateness != 3*time.Second || o.IdleWatermark != time.Second ||
		len(o.StateNames) != 1 || o.StateNames[0] != "counts" {
		t.Errorf("Options() = %+v", o)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"wrong_partition: drop", "pipelines[0].wrong_partition: want"},
		{"state_cache_size: 0", "pipelines[0].state_cache_size: must be between 1"},
		{"step_timeout: 0s", "pipelines[0].step_timeout: must be greater than 0"},
		{"timers: {tick: -1s}", "pipelines[0].timers.tick: must be greater than 0"},
		{"timers: {allowed_lateness: -1s}", "pipelines[0].timers.allowed_lateness: must be at least 0"},
		{"ordering: none\n    steps: [{state: {name: c, incr: {n: 1}}}]", `steps[0].state.name: keyed state needs ordering "key"`},
		{"steps: [{state: {hash: 'u:{key}', fields: {a: k}}}]", "state.hash: \"u:{key}\": write $key"},
		{"steps: [{state: {name: c, hash: h, fields: {a: k}}}]", "state.hash: set name or hash, not both"},
		{"steps: [{state: {hash: h, distinct: {a: k}}}]", "state.distinct: needs name"},
		{"wrong_partition: process\n    steps: [{state: {name: c, incr: {n: 1}}}]", `state.name: keyed state needs wrong_partition "dead_letter"`},
	} {
		_, err := Parse("t.yaml", []byte("pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n    "+tc.yaml+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

// input.event_time sets Message.EventTime; an event without a usable time
// is dead-lettered.
func TestEventTime(t *testing.T) {
	f, err := Parse("t.yaml", []byte("pipelines:\n  - name: p\n    input: {stream: s, payload: data, event_time: at.ms}\n    key: k\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := f.Pipelines[0].Decoder()
	for _, tc := range []struct {
		data string
		want time.Time
		bad  string
	}{
		{data: `{"k":"a","at":{"ms":1700000000123}}`, want: time.UnixMilli(1700000000123)},
		{data: `{"k":"a","at":{"ms":"1700000000123"}}`, want: time.UnixMilli(1700000000123)},
		{data: `{"k":"a","at":{"ms":"2026-11-27T10:00:00Z"}}`, want: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)},
		{data: `{"k":"a"}`, bad: "is missing"},
		{data: `{"k":"a","at":{"ms":"yesterday"}}`, bad: "neither unix milliseconds"},
		{data: `{"k":"a","at":{"ms":true}}`, bad: "want unix milliseconds"},
	} {
		m := &processor.Message{ID: "1-1", Fields: []string{"data", tc.data}}
		err := dec.Decode(m)
		switch {
		case tc.bad != "":
			var pe *processor.PermanentError
			if err == nil || !strings.Contains(err.Error(), tc.bad) || !errors.As(err, &pe) {
				t.Errorf("%s: error %v, want a permanent one containing %q", tc.data, err, tc.bad)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.data, err)
		case !m.EventTime.Equal(tc.want):
			t.Errorf("%s: EventTime = %v, want %v", tc.data, m.EventTime, tc.want)
		}
	}
}
