package pipelines

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// Every retention section is checked where it is, and max_len on an
// output that a pipeline of the file reads is refused with the safe cap
// to use instead.
func TestRetentionProblems(t *testing.T) {
	head := "pipelines:\n  - name: p\n    key: k\n"
	cases := []struct {
		name, src, want string
	}{
		{"empty", head + "    input: {stream: s, retention: {}}\n",
			"test.yaml:4: pipelines[0].input.retention: caps nothing: set max_age, max_len or both"},
		{"max_len 0", head + "    input: {stream: s, retention: {max_len: 0}}\n",
			"test.yaml:4: pipelines[0].input.retention.max_len: must be at least 1"},
		{"max_len a fraction", head + "    input: {stream: s, retention: {max_len: 2.5}}\n",
			"pipelines[0].input.retention.max_len"},
		{"max_age negative", head + "    input: {stream: s, retention: {max_age: -1s}}\n",
			"test.yaml:4: pipelines[0].input.retention.max_age: must be greater than 0"},
		{"max_age in days", head + "    input: {stream: s, retention: {max_age: 7d}}\n",
			`pipelines[0].input.retention.max_age: invalid duration "7d"`},
		{"abandoned_after 0", head + "    input: {stream: s, retention: {max_len: 5, abandoned_after: 0s}}\n",
			"test.yaml:4: pipelines[0].input.retention.abandoned_after: must be greater than 0"},
		{"unknown field", head + "    input: {stream: s, retention: {max_len: 5, keep: all}}\n",
			"pipelines[0].input.retention.keep"},
		{"dead letters", head + "    input: {stream: s}\n    dead_letter: {retention: {max_len: -3}}\n",
			"test.yaml:5: pipelines[0].dead_letter.retention.max_len: must be at least 1"},
		{"output step", head + "    input: {stream: s}\n    steps:\n      - output: {stream: o, retention: {max_age: 0s}}\n",
			"test.yaml:6: pipelines[0].steps[0].output.retention.max_age: must be greater than 0"},
		{"analytics output", head + "    input: {stream: s}\n    steps:\n      - window: {name: w, time: processing, size: 1m, aggregates: {n: count}, output: {stream: o, retention: {}}}\n",
			"pipelines[0].steps[0].window.output.retention: caps nothing"},
		{"max_len on a stream another pipeline reads", head + "    input: {stream: s}\n    steps:\n      - output: {stream: o, max_len: 100}\n  - name: q\n    key: k\n    input: {stream: o}\n",
			`test.yaml:6: pipelines[0].steps[0].output.max_len: max_len 100 trims "o" as it appends, whatever pipelines[1] (q) has read`},
		{"two retentions of one output", head + "    input: {stream: s}\n    steps:\n      - output: {stream: o, retention: {max_len: 5}}\n      - output: {stream: o, retention: {max_len: 6}}\n",
			`pipelines[0].steps[1].output: retention of "o" differs from the one pipelines[0].steps[0].output gives it`},
		{"max_len on a window output another pipeline reads", head + "    input: {stream: s}\n    steps:\n      - window: {name: w, time: processing, size: 1m, aggregates: {n: count}, output: {stream: o, max_len: 7}}\n  - name: q\n    key: k\n    input: {stream: o}\n",
			`pipelines[0].steps[0].window.output.max_len: max_len 7 trims "o"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(problems(t, tc.src, nil), "\n")
			if !strings.Contains(got, tc.want) {
				t.Errorf("problems:\n%s\nwant one with %q\nsource:\n%s", got, tc.want, tc.src)
			}
		})
	}
}

// A valid file puts each stream under its policy: the input partitions,
// the dead letters, each output once.
func TestRetentionOptions(t *testing.T) {
	f := parse(t, `pipelines:
  - name: p
    key: k
    input: {stream: s, partitions: 3, retention: {max_len: 1000, max_age: 24h, abandoned_after: 10m}}
    dead_letter: {retention: {max_age: 168h}}
    steps:
      - output: {stream: o, retention: {max_len: 50}}
      - output: {stream: o, retention: {max_len: 50}}
      - output: {stream: raw, max_len: 10}
  - name: q
    key: k
    input: {stream: o}
`)
	o := f.Pipelines[0].Options()
	if want := (processor.Retention{MaxLen: 1000, MaxAge: 24 * time.Hour, AbandonedAfter: 10 * time.Minute}); o.InputRetention != want {
		t.Errorf("InputRetention = %+v, want %+v", o.InputRetention, want)
	}
	if want := (processor.Retention{MaxAge: 168 * time.Hour}); o.DeadLetterRetention != want {
		t.Errorf("DeadLetterRetention = %+v, want %+v", o.DeadLetterRetention, want)
	}
	if len(o.Retain) != 1 || o.Retain[0].Stream != "o" || o.Retain[0].Retention.MaxLen != 50 {
		t.Errorf("Retain = %+v, want o once with max_len 50", o.Retain)
	}
	if o := f.Pipelines[1].Options(); !o.InputRetention.IsZero() || len(o.Retain) != 0 {
		t.Errorf("pipeline q: %+v %+v, want no retention", o.InputRetention, o.Retain)
	}
}
