package pipelines

import (
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// An expression that reads only state, _key and _id runs without the
// payload: the handler need not decode it. Anything else (a field, $env, a
// predicate's # or a let) counts as reading it.
func TestReadsPayload(t *testing.T) {
	for _, tt := range []struct {
		src   string
		reads bool
	}{
		{"1", false},
		{"(state.counts.n ?? 0) + 1", false},
		{"state.counts.n > 3 && _key != ''", false},
		{"len(_key) + len(_id)", false},
		{"upper(_key)", false},
		{"views + 1", true},
		{"type", true},
		{"len(type)", true},
		{"user.id", true},
		{"state.counts[field]", true},
		{"all(items, {# > 1})", true},
		{"let x = 1; x + 1", true},
		{"$env.views", true},
	} {
		e, err := CompileExpr(tt.src)
		if err != nil {
			t.Fatalf("%q: %v", tt.src, err)
		}
		if e.lean == tt.reads {
			t.Errorf("%q: reads the payload = %v, want %v", tt.src, !e.lean, tt.reads)
		}
	}
}

// A lean expression is evaluated without decoding the payload, and sees
// the same _key and _id as a full one; a pipeline whose steps all read no
// payload does not decode it up front.
func TestLeanExpressionSkipsDecoding(t *testing.T) {
	ev := NewEvent(&processor.Message{ID: "1-0", Key: "u1", Data: jsonPayload(`{"x":1}`)})
	lean, _ := CompileExpr("_key + ':' + _id")
	full, _ := CompileExpr("x + 1")
	if v, err := lean.Eval(ev); err != nil || v != "u1:1-0" {
		t.Fatalf("lean Eval = %v, %v; want u1:1-0", v, err)
	}
	if ev.payload != nil {
		t.Error("a lean expression decoded the payload")
	}
	if v, err := full.Eval(ev); err != nil || v != 2 {
		t.Fatalf("full Eval = %v (%T), %v; want 2", v, v, err)
	}
	if v, err := lean.Eval(ev); err != nil || v != "u1:1-0" {
		t.Fatalf("lean Eval after a full one = %v, %v; want u1:1-0", v, err)
	}

	for _, tt := range []struct {
		steps  string
		decode bool
	}{
		{"[{state: {hash: 'h:$key', fields: {k: '_key', n: '1'}}}, {output: {stream: o}}]", false},
		{"[{state: {hash: 'h:$key', fields: {k: 'x'}}}]", true},
		{"[{output: {stream: o}}]", false},
		{"[{state: {hash: 'h:$key', fields: {s: state}}}]", true}, // no keyed state: a field
		{"[{filter: '_key != \"\"'}]", true},                      // a step that cannot tell decodes
	} {
		f := parse(t, "pipelines: [{name: p, input: {stream: s, payload: data}, key: user, steps: "+tt.steps+"}]\n")
		if got := f.Pipelines[0].Handler().(*handler).decode; got != tt.decode {
			t.Errorf("%s: decodes up front = %v, want %v", tt.steps, got, tt.decode)
		}
	}
}

// Without keyed state, state is a payload field like any other: a lean
// expression must not read it as the (absent) keyed state.
func TestStateIsAFieldWithoutKeyedState(t *testing.T) {
	ev := NewEvent(&processor.Message{ID: "1-0", Key: "d1", Data: jsonPayload(`{"device":"d1","state":"on"}`)})
	c, err := CompileCond(`state == "on"`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Test(ev); err != nil || !ok {
		t.Errorf(`state == "on" on {"state":"on"} without keyed state = %v, %v; want true`, ok, err)
	}
}
