package suite

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/pipelines"
)

func want(t *testing.T, src string) *value {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	d := &decoder{file: "t"}
	v := d.readValue(n.Content[0], "", time.Unix(0, 0))
	if err := d.err(); err != nil {
		t.Fatal(err)
	}
	return v
}

// How a flat field (a string) matches an expected value.
func TestMatchFlat(t *testing.T) {
	for _, tc := range []struct {
		got     string
		present bool
		want    string
		ok      bool
	}{
		{"40", true, "40", true},
		{"40.0", true, "40", true},
		{"40", true, "41", false},
		{"40", true, `"40"`, true},
		{"abc", true, "abc", true},
		{"true", true, "true", true},
		{"false", true, "true", false},
		{"", false, "null", true},
		{"x", true, "null", false},
		{"", false, "x", false},
		{`{"a":1,"b":[1,"x"]}`, true, "{a: 1.0}", true},
		{`{"a":1,"b":[1,"x"]}`, true, "{b: [1, x]}", true},
		{`{"a":1,"b":[1,"x"]}`, true, "{b: [1]}", false},
		{`{"a":"1"}`, true, "{a: 1}", false},
		{`{"a":null}`, true, "{a: null, c: null}", true},
		{"not json", true, "{a: 1}", false},
		{"0", true, `"@0s"`, true},
	} {
		mm := matchFlat("f", tc.got, tc.present, want(t, tc.want))
		if ok := len(mm) == 0; ok != tc.ok {
			t.Errorf("matchFlat(%q, present %v, %s) = %v, want ok %v", tc.got, tc.present, tc.want, mm, tc.ok)
		}
	}
}

// An event for a pipeline with input.payload may be any YAML value, sent
// as JSON (a string as it is).
func TestEventPayload(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`[1, "@1s"]`, `[1,1000]`},
		{`{b: 1, a: x}`, `{"b":1,"a":"x"}`},
		{`"raw @0s"`, `raw @0s`},
		{`7`, `7`},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("{events: [{event: "+tc.yaml+"}]}"), &n); err != nil {
			t.Fatal(err)
		}
		d := &decoder{file: "t"}
		var s step
		var clock time.Duration
		d.send(&s, n.Content[0], time.Unix(0, 0), &clock, &configInfo{pipelines: []string{"p"}, payload: map[string]bool{"p": true}})
		if err := d.err(); err != nil {
			t.Fatal(err)
		}
		if got := s.events[0].payload; got != tc.want {
			t.Errorf("event %s sent as %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

// The streams a test may expect: dead-letter streams and every stream a
// step's config names, nested or as late: stream:<name>; the states: each
// step's name.
func TestConfigInfo(t *testing.T) {
	f := &pipelines.File{Pipelines: []*pipelines.Pipeline{{Name: "p", DeadLetter: pipelines.DeadLetter{Stream: "in:dlq"}}}}
	ci := newConfigInfo(f, []byte(`
pipelines:
  - name: p
    steps:
      - output: {stream: out}
      - window: {name: w, output: {stream: "w:results"}, late: "stream: w:late"}
      - custom: {targets: [{stream: deep}]}
`))
	for _, s := range []string{"in:dlq", "out", "w:results", "w:late", "deep"} {
		if !ci.streams[s] {
			t.Errorf("stream %s not known: %v", s, ci.streams)
		}
	}
	if !ci.states["p"]["w"] || len(ci.states["p"]) != 1 {
		t.Errorf("states = %v, want w", ci.states["p"])
	}
}
