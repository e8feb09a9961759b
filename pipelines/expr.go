package pipelines

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/processor"
)

// Expr is an expression (github.com/expr-lang/expr) over an Event, compiled
// at load time. Its environment is Event.Env: the payload's top-level fields
// by name, plus _key and _id. A field absent from an event is nil. A field
// named like a builtin function (type, count, len, …) is read as the field;
// the function is still called as a function (type(x)).
type Expr struct {
	src  string
	prog *vm.Program
	// lean is set when the expression reads no payload, only state, _key
	// and _id: it runs without the payload being decoded. state names the
	// keyed state only in a pipeline that has some; elsewhere it is a
	// payload field, so usesState sends the expression to the full
	// environment there.
	lean, usesState bool
}

// constant returns the value of an expression that is a literal (1, 2.5,
// "x", true, nil), which Eval returns without building the event's
// environment.
func constant(p *vm.Program) (any, bool) {
	switch n := p.Node().(type) {
	case *ast.IntegerNode:
		return n.Value, true
	case *ast.FloatNode:
		return n.Value, true
	case *ast.StringNode:
		return n.Value, true
	case *ast.BoolNode:
		return n.Value, true
	}
	return nil, false
}

// Cond is an Expr that must yield a bool.
type Cond struct {
	Expr
}

// CompileExpr compiles src as an Expr.
func CompileExpr(src string) (*Expr, error) {
	p, err := compile(src, false)
	if err != nil {
		return nil, err
	}
	return newExpr(src, p), nil
}

// CompileCond compiles src as a Cond: an expression whose result is a bool.
func CompileCond(src string) (*Cond, error) {
	p, err := compile(src, true)
	if err != nil {
		return nil, err
	}
	return &Cond{*newExpr(src, p)}, nil
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// Eval evaluates e on ev. A runtime error (a nil operand, a bad
// conversion) is permanent with reason "invalid": retrying cannot fix it.
func (e *Expr) Eval(ev *Event) (any, error) {
	if v, ok := constant(e.prog); ok {
		return v, nil
	}
	var env map[string]any
	if e.lean && (!e.usesState || len(ev.stateNames) > 0) {
		env = ev.leanEnv()
	} else {
		env = ev.Env()
	}
	out, err := expr.Run(e.prog, env)
	if err != nil {
		return nil, processor.Permanentf(processor.ReasonInvalid, "expression %q: %s", e.src, firstLine(err))
	}
	return out, nil
}

// Test evaluates c on ev. A nil result (a condition that is just an absent
// field) is false; any other result that is not a bool is a permanent
// error, like a runtime error.
func (c *Cond) Test(ev *Event) (bool, error) {
	out, err := c.Eval(ev)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, processor.Permanentf(processor.ReasonInvalid, "expression %q: result is %v, not a bool", c.src, out)
	}
	return b, nil
}

func (e *Expr) decodeNode(c *checker, n *yaml.Node, path string) {
	c.decodeExpr(n, path, false, func(src string, p *vm.Program) {
		*e = *newExpr(src, p)
	})
}

func (e *Cond) decodeNode(c *checker, n *yaml.Node, path string) {
	c.decodeExpr(n, path, true, func(src string, p *vm.Program) {
		*e = Cond{*newExpr(src, p)}
	})
}

func (c *checker) decodeExpr(n *yaml.Node, path string, asBool bool, set func(string, *vm.Program)) {
	if !c.wantScalar(n, path, "an expression") {
		return
	}
	if strings.TrimSpace(n.Value) == "" {
		c.addAt(n.Line, path, "empty expression")
		return
	}
	p, err := compile(n.Value, asBool)
	if err != nil {
		c.addAt(n.Line, path, "%v", err)
		return
	}
	set(n.Value, p)
}

func compile(src string, asBool bool) (*vm.Program, error) {
	opts := []expr.Option{
		expr.Env(map[string]any{}), // a map env: fields are looked up by name at run time
		expr.AllowUndefinedVariables(),
		expr.Patch(&fieldPatch{rewritten: map[ast.Node]string{}}),
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, exprError(src, err)
	}
	return p, nil
}

// exprError keeps the first line of expr's error (message and column) and
// drops its source snippet, so that problems and dead-letter reasons stay
// on one line.
func exprError(src string, err error) error {
	return fmt.Errorf("expression %q: %s", src, firstLine(err))
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// fieldPatch makes an identifier that names a builtin (type, count, …)
// read the field of that name ($env["type"]), except where it is called.
// ast.Walk visits a call's callee before the call, so the call puts back
// the callee it finds rewritten.
type fieldPatch struct {
	rewritten map[ast.Node]string
}

func (p *fieldPatch) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if _, ok := builtin.Index[n.Value]; !ok {
			return
		}
		m := &ast.MemberNode{Node: &ast.IdentifierNode{Value: "$env"}, Property: &ast.StringNode{Value: n.Value}}
		p.rewritten[m] = n.Value
		ast.Patch(node, m)
	case *ast.MemberNode:
		// session.id on an event without session is nil, as an absent
		// top-level field is, not an error that dead-letters the event:
		// every member access is optional (a?.b), inside a chain that the
		// compiler jumps to the end of.
		if !n.Optional && !n.Method {
			n.Optional = true
			ast.Patch(node, &ast.ChainNode{Node: n})
		}
	case *ast.CallNode:
		if name, ok := p.rewritten[n.Callee]; ok {
			ast.Patch(&n.Callee, &ast.IdentifierNode{Value: name})
		}
	}
}

// newExpr is the Expr of program p compiled from src.
func newExpr(src string, p *vm.Program) *Expr {
	reads, state := payloadUse(p)
	return &Expr{src: src, prog: p, lean: !reads, usesState: state}
}

// payloadUse tells whether program p may read the payload (whether it
// names anything but state, _key, _id and functions: a name it binds
// itself, such as a let or a predicate's variable, counts as a field, so
// the answer errs towards decoding), and whether it names state.
func payloadUse(p *vm.Program) (reads, state bool) {
	v := &payloadReads{callees: map[ast.Node]bool{}}
	root := p.Node()
	ast.Walk(&root, &calleeFinder{v.callees})
	ast.Walk(&root, v)
	return v.reads, v.state
}

type calleeFinder struct{ callees map[ast.Node]bool }

func (f *calleeFinder) Visit(node *ast.Node) {
	if n, ok := (*node).(*ast.CallNode); ok {
		f.callees[n.Callee] = true
	}
}

type payloadReads struct {
	callees      map[ast.Node]bool
	reads, state bool
}

func (v *payloadReads) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		switch {
		case v.callees[n]:
		case n.Value == EnvState:
			v.state = true
		case n.Value == EnvKey || n.Value == EnvID:
		default: // a field, or $env itself
			v.reads = true
		}
	case *ast.PointerNode, *ast.VariableDeclaratorNode:
		v.reads = true
	}
}
