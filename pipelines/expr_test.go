package pipelines

import (
	"testing"

	"github.com/expr-lang/expr"

	"github.com/eddy-streams/eddy/processor"
)

func TestExpr(t *testing.T) {
	payload := map[string]any{"type": "click", "count": int64(3), "ts": int64(10), "user": map[string]any{"id": "u"}, "_key": "shadowed"}
	tests := []struct {
		src  string
		want any
	}{
		{`type`, "click"},
		{`type(ts)`, "int"},
		{`count + len("ab")`, 5},
		{`max(count, 7)`, int64(7)},
		{`user.id + ":" + _key + ":" + _id`, "u:k1:1-0"},
		{`let n = count; n + 1`, int64(4)},
		{`missing ?? "none"`, "none"},
		{`filter([1, 2, 3, 4], # > count)`, []any{4}},
	}
	for _, tt := range tests {
		e, err := CompileExpr(tt.src)
		if err != nil {
			t.Errorf("CompileExpr(%q) = %v", tt.src, err)
			continue
		}
		ev := NewEvent(&processor.Message{ID: "1-0", Key: "k1", Data: payload})
		got, err := e.Eval(ev)
		if err != nil || !equalJSON(got, tt.want) {
			t.Errorf("Eval(%q) = %#v, %v; want %#v", tt.src, got, err, tt.want)
		}
	}
}

func equalJSON(a, b any) bool {
	return formatValue(a) == formatValue(b)
}

func TestCompileCond(t *testing.T) {
	for _, tt := range []struct {
		src string
		ok  bool
	}{{`ts > 0`, true}, {`type in ["a"]`, true}, {`lower(page)`, false}, {`1 +`, false}, {`ts`, true}} {
		_, err := CompileCond(tt.src)
		if (err == nil) != tt.ok {
			t.Errorf("CompileCond(%q) = %v, want ok %v", tt.src, err, tt.ok)
		}
	}
}

func TestEventSetKeepsMessageData(t *testing.T) {
	data := map[string]any{"a": int64(1)}
	ev := NewEvent(&processor.Message{Data: data})
	ev.Env()
	ev.Set("a", 2)
	ev.Set(EnvKey, "x")
	ev.Delete("b")
	if data["a"] != int64(1) {
		t.Errorf("Set changed the message's payload: %v", data)
	}
	if ev.Payload()["a"] != 2 || ev.Env()["a"] != 2 || ev.Env()[EnvKey] != "" {
		t.Errorf("after Set: payload %v, env %v; want a=2 in both and _key unchanged", ev.Payload(), ev.Env())
	}
}

// A literal (or what expr folds into one: 1 + 1) is answered without
// building the event's environment, with
// the value expr itself gives.
func TestExprConstant(t *testing.T) {
	for _, src := range []string{"1", "-3", "2.5", `"x"`, "true", "false", "1 + 1", "nope"} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		want, err := expr.Run(e.prog, map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		ev := NewEvent(&processor.Message{})
		got, err := e.Eval(ev)
		if err != nil || got != want {
			t.Errorf("%s: Eval = %v (%T), %v; want %v (%T)", src, got, got, err, want, want)
		}
		_, isConst := constant(e.prog)
		if lit := src != "nope"; isConst != lit || (isConst && ev.env != nil) {
			t.Errorf("%s: constant = %v, env built %v", src, isConst, ev.env != nil)
		}
	}
}
