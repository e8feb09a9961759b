package schema

import (
	"encoding/json"
	"math/big"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// kinds is a set of JSON value kinds, with numbers split into integers
// and numbers with a fraction, so that "integer" is a subset of "number".
type kinds uint8

const (
	kNull kinds = 1 << iota
	kBool
	kInt
	kFrac
	kString
	kArray
	kObject

	kAll = kNull | kBool | kInt | kFrac | kString | kArray | kObject
)

func (k kinds) String() string {
	var names []string
	for _, n := range []struct {
		k    kinds
		name string
	}{{kNull, "null"}, {kBool, "booleans"}, {kInt, "integers"}, {kFrac, "numbers with a fraction"}, {kString, "strings"}, {kArray, "arrays"}, {kObject, "objects"}} {
		if k&n.k != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ", ")
}

// kindsOf returns the kinds s's "type" allows (all without one). A
// multipleOf that is an integer leaves out fractions.
func kindsOf(s *jsonschema.Schema) kinds {
	k := kAll
	if s.Types != nil {
		k = 0
		for _, t := range s.Types.ToStrings() {
			switch t {
			case "null":
				k |= kNull
			case "boolean":
				k |= kBool
			case "integer":
				k |= kInt
			case "number":
				k |= kInt | kFrac
			case "string":
				k |= kString
			case "array":
				k |= kArray
			case "object":
				k |= kObject
			}
		}
	}
	if s.MultipleOf != nil && s.MultipleOf.IsInt() {
		k &^= kFrac
	}
	return k
}

// bound is a lower or upper bound of numbers.
type bound struct {
	v    *big.Rat
	excl bool
	kw   string // the keyword it came from
}

func (b *bound) text(lower bool) string {
	op := map[[2]bool]string{{true, false}: ">=", {true, true}: ">", {false, false}: "<=", {false, true}: "<"}[[2]bool{lower, b.excl}]
	return op + " " + ratText(b.v)
}

func ratText(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	// A bound from JSON is a finite decimal: print its digits, no more.
	if f := r.FloatString(20); strings.Contains(f, ".") {
		return strings.TrimRight(strings.TrimRight(f, "0"), ".")
	}
	return r.RatString()
}

// lowerOf returns the tighter of minimum and exclusiveMinimum, nil for none.
func lowerOf(s *jsonschema.Schema) *bound {
	var b *bound
	if s.Minimum != nil {
		b = &bound{v: s.Minimum, kw: "minimum"}
	}
	if e := s.ExclusiveMinimum; e != nil && (b == nil || e.Cmp(b.v) >= 0) {
		b = &bound{v: e, excl: true, kw: "exclusiveMinimum"}
	}
	return b
}

// upperOf returns the tighter of maximum and exclusiveMaximum, nil for none.
func upperOf(s *jsonschema.Schema) *bound {
	var b *bound
	if s.Maximum != nil {
		b = &bound{v: s.Maximum, kw: "maximum"}
	}
	if e := s.ExclusiveMaximum; e != nil && (b == nil || e.Cmp(b.v) <= 0) {
		b = &bound{v: e, excl: true, kw: "exclusiveMaximum"}
	}
	return b
}

// intLower is the smallest integer a lower bound admits; intUpper the
// largest an upper bound admits.
func intLower(b *bound) *big.Int {
	f := floor(b.v)
	if b.excl || !b.v.IsInt() {
		f.Add(f, big.NewInt(1))
	}
	return f
}

func intUpper(b *bound) *big.Int {
	f := floor(b.v)
	if b.excl && b.v.IsInt() {
		f.Sub(f, big.NewInt(1))
	}
	return f
}

func floor(r *big.Rat) *big.Int {
	return new(big.Int).Div(r.Num(), r.Denom()) // Euclidean: the floor, as Denom > 0
}

// lowerLooser reports whether the reader's lower bound rb admits
// everything the writer's ra admits. intOnly: only integers are compared.
func lowerLooser(ra, rb *bound, intOnly bool) bool {
	if intOnly {
		return intLower(rb).Cmp(intLower(ra)) <= 0
	}
	switch c := rb.v.Cmp(ra.v); {
	case c < 0:
		return true
	case c > 0:
		return false
	}
	return !rb.excl || ra.excl
}

func upperLooser(ra, rb *bound, intOnly bool) bool {
	if intOnly {
		return intUpper(rb).Cmp(intUpper(ra)) >= 0
	}
	switch c := rb.v.Cmp(ra.v); {
	case c > 0:
		return true
	case c < 0:
		return false
	}
	return !rb.excl || ra.excl
}

// numbers compares the keywords on numbers; intOnly when the writer's
// numbers that the reader's type admits are integers only.
func (w *walker) numbers(a, b *jsonschema.Schema, ptr string, intOnly bool) {
	if lb := lowerOf(b); lb != nil {
		switch la := lowerOf(a); {
		case la == nil:
			w.breaks(ptr+"/"+lb.kw, lb.kw, "the %s schema wants numbers %s; the %s schema has no lower bound", w.b, lb.text(true), w.a)
		case !lowerLooser(la, lb, intOnly):
			w.breaks(ptr+"/"+lb.kw, lb.kw, "raised from %s to %s: %s events in between fail", la.text(true), lb.text(true), w.a)
		}
	}
	if ub := upperOf(b); ub != nil {
		switch ua := upperOf(a); {
		case ua == nil:
			w.breaks(ptr+"/"+ub.kw, ub.kw, "the %s schema wants numbers %s; the %s schema has no upper bound", w.b, ub.text(false), w.a)
		case !upperLooser(ua, ub, intOnly):
			w.breaks(ptr+"/"+ub.kw, ub.kw, "lowered from %s to %s: %s events in between fail", ua.text(false), ub.text(false), w.a)
		}
	}
	if mb := b.MultipleOf; mb != nil {
		ma := a.MultipleOf
		switch {
		case ma != nil && new(big.Rat).Quo(ma, mb).IsInt():
		case ma == nil && intOnly && new(big.Rat).Quo(big.NewRat(1, 1), mb).IsInt():
		case ma == nil:
			w.breaks(ptr+"/multipleOf", "multipleOf", "the %s schema wants multiples of %s; the %s schema does not", w.b, ratText(mb), w.a)
		default:
			w.breaks(ptr+"/multipleOf", "multipleOf", "changed from multiples of %s to multiples of %s: some %s values are not", ratText(ma), ratText(mb), w.a)
		}
	}
}

// display formats a JSON value for messages, shortened.
func display(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "a value"
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
