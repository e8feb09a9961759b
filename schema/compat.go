package schema

import (
	"fmt"
	"strings"
)

// Direction is one way of compatibility.
type Direction string

const (
	// Backward: the new schema accepts every event the old one accepts,
	// so consumers on the new version read old events.
	Backward Direction = "backward"
	// Forward: the old schema accepts every event the new one accepts, so
	// consumers still on the old version read new events.
	Forward Direction = "forward"
)

// Verdict is the answer for one direction.
type Verdict int

const (
	// Compatible: proven, keyword by keyword.
	Compatible Verdict = iota
	// Unknown: nothing found that breaks, but a construct the checker
	// cannot decide (see the Unknown findings).
	Unknown
	// Incompatible: a change found that rejects events of the other side.
	Incompatible
)

func (v Verdict) String() string {
	switch v {
	case Compatible:
		return "compatible"
	case Unknown:
		return "unknown"
	}
	return "incompatible"
}

// Finding is one reason a direction is not (known to be) compatible.
type Finding struct {
	Direction Direction
	// Pointer is where in the schemas, as a JSON pointer through their
	// keywords ("/properties/reading/items"); "" is the root. A $ref is
	// followed without a step of its own.
	Pointer string
	// Keyword is the JSON Schema keyword that breaks ("type", "required",
	// "maximum", …) or cannot be decided ("oneOf", "$ref", …).
	Keyword string
	// Unknown is set when the checker cannot decide; otherwise the change
	// rejects some events of the other side.
	Unknown bool
	// Message says what changed and which events it rejects.
	Message string
}

func (f Finding) String() string {
	what := "breaks"
	if f.Unknown {
		what = "unknown"
	}
	ptr := f.Pointer
	if ptr == "" {
		ptr = "(root)"
	}
	return fmt.Sprintf("%s %s at %s: %s: %s", f.Direction, what, ptr, f.Keyword, f.Message)
}

// Report is the answer of Check.
type Report struct {
	Backward, Forward Verdict
	// Findings lists the reasons, backward ones first.
	Findings []Finding
}

// Level names the compatibility: "full", "backward", "forward" or "none";
// "unknown (backward compatible, forward unknown)" and the like when a
// direction is Unknown.
func (r *Report) Level() string {
	b, f := r.Backward, r.Forward
	switch {
	case b == Unknown || f == Unknown:
		return fmt.Sprintf("unknown (backward %s, forward %s)", b, f)
	case b == Compatible && f == Compatible:
		return "full"
	case b == Compatible:
		return "backward"
	case f == Compatible:
		return "forward"
	}
	return "none"
}

// Mode is what a change is required to be.
type Mode string

const (
	ModeBackward Mode = "backward"
	ModeForward  Mode = "forward"
	ModeFull     Mode = "full"
)

// ParseMode parses "backward", "forward" or "full".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeBackward, ModeForward, ModeFull:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want backward, forward or full", s)
}

// In returns the verdict for mode: the worse of the two directions for full.
func (r *Report) In(m Mode) Verdict {
	switch m {
	case ModeBackward:
		return r.Backward
	case ModeForward:
		return r.Forward
	}
	return max(r.Backward, r.Forward)
}

// Check tells whether next, a new version of a schema, is backward,
// forward or fully compatible with prev, the registered one, and why not.
// It compares keywords: types (integer within number, type lists),
// enum and const (value by value), required, properties and
// additionalProperties (open or closed content), bounds of numbers,
// strings, arrays and objects, multipleOf, pattern and format (only when
// equal or added), items and prefixItems, allOf and $ref (followed),
// anyOf (as far as alternatives match one to one). What it cannot decide
// (oneOf, not, if/then/else, patternProperties, dependencies,
// propertyNames, contains, unevaluated*, a recursive $ref, a changed
// pattern or format) is an Unknown finding, never a compatible one; a
// subschema left exactly as it was is compatible whatever it holds.
func Check(prev, next *Schema) *Report {
	r := &Report{}
	bw := newWalker(Backward, "old", "new")
	bw.sub(prev.s, next.s, "")
	fw := newWalker(Forward, "new", "old")
	fw.sub(next.s, prev.s, "")
	r.Backward, r.Forward = bw.verdict(), fw.verdict()
	r.Findings = make([]Finding, 0, len(bw.out)+len(fw.out))
	r.Findings = append(append(r.Findings, bw.out...), fw.out...)
	return r
}

// Summary is a one-line account of r for logs and tests: the level, then
// each finding's direction, pointer and keyword.
func (r *Report) Summary() string {
	var b strings.Builder
	b.WriteString(r.Level())
	for _, f := range r.Findings {
		kind := "!"
		if f.Unknown {
			kind = "?"
		}
		fmt.Fprintf(&b, " %s%s%s:%s", kind, f.Direction[:1], f.Pointer, f.Keyword)
	}
	return b.String()
}
