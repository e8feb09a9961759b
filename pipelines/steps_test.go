package pipelines

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

func TestHandler(t *testing.T) {
	const click = `{"event_id":"e1","user":{"id":"u1"},"type":"click","page":"/Home","ts":1700000000000,"amount":19.99}`
	tests := []struct {
		name    string
		dedupe  bool
		steps   string
		data    string
		outcome string // "" processed, a permanent reason, or "retry"
		msg     string // part of the error message
		effects []processor.Effect
	}{
		{
			name:  "filter drops",
			steps: "      - filter: 'type != \"click\"'\n      - output: {stream: out}\n",
			data:  click,
		},
		{
			name:    "filter passes",
			steps:   "      - filter: 'type == \"click\"'\n      - output: {stream: out}\n",
			data:    `{"user":{"id":"u1"},"type":"click"}`,
			effects: []processor.Effect{{Kind: processor.EffectXAdd, Key: "out", Fields: []string{"key", "u1", "id", "1700000000000-0", "data", `{"user":{"id":"u1"},"type":"click"}`}}}, // as it arrived
		},
		{
			name:   "map sets then output",
			dedupe: true,
			steps: "      - map: {page: 'lower(page)', cents: 'int(round(amount * 100))', double: 'cents * 2', who: '_key + \"@\" + _id'}\n" +
				"      - output: {stream: 'out', max_len: 1000}\n",
			data: click,
			effects: []processor.Effect{{Kind: processor.EffectXAdd, Key: "out", MaxLen: 1000, Fields: []string{"key", "u1", "id", "e1", "data",
				`{"amount":19.99,"cents":1999,"double":3998,"event_id":"e1","page":"/home","ts":1700000000000,"type":"click","user":{"id":"u1"},"who":"u1@1700000000000-0"}`}}},
		},
		{
			name:    "validate false",
			steps:   "      - validate: 'ts > 0 && type in [\"view\", \"purchase\"]'\n      - output: {stream: out}\n",
			data:    click,
			outcome: processor.ReasonInvalid,
			msg:     `steps[0] validate: ts > 0 && type in ["view", "purchase"] is false`,
		},
		{
			name:  "validate true",
			steps: "      - validate: 'ts > 0 && type in [\"click\"]'\n",
			data:  click,
		},
		{
			name:    "require missing",
			steps:   "      - require: [user.id, session.id]\n",
			data:    click,
			outcome: processor.ReasonInvalid,
			msg:     "steps[0] require: session.id is missing",
		},
		{
			name:    "require null",
			steps:   "      - require: [page]\n",
			data:    `{"user":{"id":"u1"},"page":null}`,
			outcome: processor.ReasonInvalid,
			msg:     "steps[0] require: page is missing",
		},
		{
			name:    "runtime error in map",
			steps:   "      - map: {cents: 'int(amount * 100)'}\n",
			data:    `{"user":{"id":"u1"}}`,
			outcome: processor.ReasonInvalid,
			msg:     `steps[0] map: cents: expression "int(amount * 100)": invalid operation`,
		},
		{
			name:    "runtime error in filter",
			steps:   "      - filter: 'ts > 0'\n",
			data:    `{"user":{"id":"u1"}}`,
			outcome: processor.ReasonInvalid,
		},
		{
			name:  "absent field as condition is false",
			steps: "      - filter: 'flag'\n      - output: {stream: out}\n",
			data:  `{"user":{"id":"u1"}}`,
		},
		{
			name:    "condition not bool at run time",
			steps:   "      - filter: 'flag'\n",
			data:    `{"user":{"id":"u1"},"flag":"yes"}`,
			outcome: processor.ReasonInvalid,
			msg:     "bool(string)",
		},
		{
			name:  "state",
			steps: "      - state: {hash: 'user:$key:$key', fields: {last_page: page, last_ts: ts, amount: amount, missing: nope, tags: tags, ok: 'ts > 0'}}\n",
			data:  `{"user":{"id":"u1"},"page":"/a","ts":1700000000000,"amount":2.5,"tags":["x"]}`,
			effects: []processor.Effect{{Kind: processor.EffectHSet, Key: "user:u1:u1",
				Fields: []string{"last_page", "/a", "last_ts", "1700000000000", "amount", "2.5", "tags", `["x"]`, "ok", "true"}}},
		},
		{
			name:  "state with only nil results",
			steps: "      - state: {hash: 'h', fields: {a: nope}}\n",
			data:  `{"user":{"id":"u1"}}`,
		},
		{
			name:    "fault permanent",
			steps:   "      - fault: {permanent: 1}\n",
			data:    click,
			outcome: ReasonFaultInjected,
		},
		{
			name:    "fault transient",
			steps:   "      - fault: {transient: 1}\n",
			data:    click,
			outcome: "retry",
			msg:     "injected transient failure",
		},
		{
			name:  "builtin names are fields",
			steps: "      - filter: 'type == \"click\" && type(ts) == \"int\" && len(page) == 5'\n      - output: {stream: out}\n",
			data:  `{"user":{"id":"u1"},"type":"click","ts":1,"page":"/Home"}`,
			effects: []processor.Effect{{Kind: processor.EffectXAdd, Key: "out", Fields: []string{"key", "u1", "id", "1700000000000-0", "data",
				`{"user":{"id":"u1"},"type":"click","ts":1,"page":"/Home"}`}}},
		},
		{
			name:  "unchanged payload passes through as written",
			steps: "      - output: {stream: out}\n",
			data:  `{ "user": {"id": "u1"}, "n": 1.50, "big": 18446744073709551616 }`,
			effects: []processor.Effect{{Kind: processor.EffectXAdd, Key: "out", Fields: []string{"key", "u1", "id", "1700000000000-0", "data",
				`{ "user": {"id": "u1"}, "n": 1.50, "big": 18446744073709551616 }`}}},
		},
		{
			name:  "effects before a filter are kept",
			steps: "      - output: {stream: raw}\n      - filter: 'false'\n      - output: {stream: clean}\n",
			data:  `{"user":{"id":"u1"}}`,
			effects: []processor.Effect{{Kind: processor.EffectXAdd, Key: "raw", Fields: []string{"key", "u1", "id", "1700000000000-0", "data",
				`{"user":{"id":"u1"}}`}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := jsonPipeline(t, tt.dedupe, tt.steps)
			m, err := handle(t, p, tt.data)
			if got := outcome(err); got != tt.outcome {
				t.Fatalf("Handle = %v (outcome %q), want outcome %q", err, got, tt.outcome)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Handle = %q, want it to contain %q", err, tt.msg)
			}
			if got := m.Effects(); !reflect.DeepEqual(got, tt.effects) && len(got)+len(tt.effects) > 0 {
				t.Errorf("Effects() =\n%+v\nwant\n%+v", got, tt.effects)
			}
		})
	}
}

// A retry must see the payload as decoded, not as an earlier attempt left it.
func TestHandlerRetryIsClean(t *testing.T) {
	p := jsonPipeline(t, false, "      - map: {n: 'n + 1'}\n      - output: {stream: out}\n      - fault: {transient: 1}\n")
	m, err := handle(t, p, `{"user":{"id":"u"},"n":1}`)
	for attempt := 1; attempt <= 3; attempt++ {
		if outcome(err) != "retry" {
			t.Fatalf("attempt %d: Handle = %v, want a transient error", attempt, err)
		}
		want := `{"n":2,"user":{"id":"u"}}`
		if e := m.Effects(); len(e) != 1 || e[0].Fields[5] != want {
			t.Fatalf("attempt %d: Effects() = %+v, want one output of %s", attempt, e, want)
		}
		m.ResetEffects()
		err = p.Handler().Handle(context.Background(), m)
	}
}

func TestFaultRates(t *testing.T) {
	s := &faultStep{transient: 0.25, permanent: 0.5}
	tests := []struct {
		r    float64
		want string
	}{{0, ReasonFaultInjected}, {0.49, ReasonFaultInjected}, {0.5, "retry"}, {0.74, "retry"}, {0.75, ""}, {0.99, ""}}
	for _, tt := range tests {
		s.random = func() float64 { return tt.r }
		keep, err := s.Process(context.Background(), nil)
		if got := outcome(err); got != tt.want || keep != (tt.want == "") {
			t.Errorf("fault with random %v: Process = %v, %v (outcome %q), want outcome %q", tt.r, keep, err, got, tt.want)
		}
	}
	if _, err := s.Process(context.Background(), nil); err != nil && !errors.Is(err, ErrInjectedTransient) && !errors.Is(err, ErrInjectedPermanent) {
		t.Errorf("Process error %v is neither injected error", err)
	}
}

func TestMapOrder(t *testing.T) {
	p := jsonPipeline(t, false, "      - map: {b: '1', a: 'b + 1', c: 'a * 10'}\n      - output: {stream: out}\n")
	m, err := handle(t, p, `{"user":{"id":"u"}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":2,"b":1,"c":20,"user":{"id":"u"}}`
	if got := m.Effects()[0].Fields[5]; got != want {
		t.Errorf("map in YAML order: data = %s, want %s", got, want)
	}
}
