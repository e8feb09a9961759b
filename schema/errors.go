package schema

import (
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// printer prints the library's messages in English. It groups digits
// (1,000), so leaf writes its own messages for the kinds with numbers.
var printer = message.NewPrinter(language.English)

// Rules of a ValidationError besides JSON Schema's keywords.
const (
	// RuleJSON: the event is not one JSON value.
	RuleJSON = "json"
	// RuleVersion: the event's version field is not an integer >= 1, or
	// names a version with no registered schema.
	RuleVersion = "version"
)

// Failure is one reason an event does not conform.
type Failure struct {
	// Pointer is the JSON pointer (RFC 6901) of the offending value: ""
	// for the whole event, "/readings/3/value" for a nested one. For a
	// missing required property, and for a property that is not allowed,
	// it points at the property itself: "/sensor".
	Pointer string
	// Rule is the JSON Schema keyword that failed ("type", "required",
	// "enum", "maximum", "additionalProperties", …), or RuleJSON or
	// RuleVersion.
	Rule string
	// Message says what is wrong, for humans.
	Message string
}

// ValidationError says why an event does not conform to a schema. Pointer,
// Rule and Message are those of the most specific failure: the one deepest
// in the event (ties in pointer order). Failures holds every failure, that
// one first.
type ValidationError struct {
	Pointer string
	Rule    string
	Message string
	// Schema names the schema, "reading v2", when a Registry validated.
	Schema string
	// Failures lists every failure found, most specific first.
	Failures []Failure
}

// maxListed is how many failures Error prints before "and N more".
const maxListed = 3

// Error prints the schema, then the failures: `schema reading v2: at
// "/value": type: got string, want number`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Schema != "" {
		fmt.Fprintf(&b, "schema %s: ", e.Schema)
	}
	fs := e.Failures
	if len(fs) == 0 {
		fs = []Failure{{Pointer: e.Pointer, Rule: e.Rule, Message: e.Message}}
	}
	for i, f := range fs {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(fs)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "at %q: %s: %s", f.Pointer, f.Rule, f.Message)
	}
	return b.String()
}

func newValidationError(fs []Failure) *ValidationError {
	if len(fs) == 0 { // the library failed without saying where
		fs = []Failure{{Rule: "schema", Message: "does not conform"}}
	}
	return &ValidationError{Pointer: fs[0].Pointer, Rule: fs[0].Rule, Message: fs[0].Message, Failures: fs}
}

// NotJSON returns the *ValidationError of an event that is not JSON.
func NotJSON(err error) *ValidationError {
	return newValidationError([]Failure{{Rule: RuleJSON, Message: "not JSON: " + err.Error()}})
}

// VersionError returns the *ValidationError of an event whose version
// field (at pointer) is unusable: msg says why.
func VersionError(pointer, msg string) *ValidationError {
	return newValidationError([]Failure{{Pointer: pointer, Rule: RuleVersion, Message: msg}})
}

// failures flattens the library's tree of errors into its leaves, most
// specific first. anyOf, oneOf and not are leaves of their own: which of
// their branches was "meant" is not known, so the keyword itself is the
// rule and the branches' reasons go into its message.
func failures(e *jsonschema.ValidationError) []Failure {
	var out []Failure
	collect(e, &out)
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := depth(out[i].Pointer), depth(out[j].Pointer)
		if di != dj {
			return di > dj
		}
		if out[i].Pointer != out[j].Pointer {
			return out[i].Pointer < out[j].Pointer
		}
		return out[i].Rule < out[j].Rule
	})
	return out
}

func depth(ptr string) int { return strings.Count(ptr, "/") }

func collect(e *jsonschema.ValidationError, out *[]Failure) {
	switch e.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf, *kind.Not:
		*out = append(*out, leaf(e))
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collect(c, out)
		}
		return
	}
	switch e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf:
		return // a container without causes says nothing
	}
	*out = append(*out, leaf(e))
}

// leaf makes a Failure of one library error.
func leaf(e *jsonschema.ValidationError) Failure {
	ptr := pointer(e.InstanceLocation)
	rule := "schema"
	if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
		rule = kp[0]
	}
	msg := e.ErrorKind.LocalizedString(printer)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		ptr = member(e.InstanceLocation, k.Missing)
	case *kind.DependentRequired:
		ptr = member(e.InstanceLocation, k.Missing)
	case *kind.Dependency:
		ptr = member(e.InstanceLocation, k.Missing)
	case *kind.AdditionalProperties:
		ptr = member(e.InstanceLocation, k.Properties)
	case *kind.Minimum:
		msg = "got " + ratText(k.Got) + ", want >= " + ratText(k.Want)
	case *kind.Maximum:
		msg = "got " + ratText(k.Got) + ", want <= " + ratText(k.Want)
	case *kind.ExclusiveMinimum:
		msg = "got " + ratText(k.Got) + ", want > " + ratText(k.Want)
	case *kind.ExclusiveMaximum:
		msg = "got " + ratText(k.Got) + ", want < " + ratText(k.Want)
	case *kind.MultipleOf:
		msg = "got " + ratText(k.Got) + ", want a multiple of " + ratText(k.Want)
	case *kind.MinLength:
		msg = fmt.Sprintf("got %d characters, want at least %d", k.Got, k.Want)
	case *kind.MaxLength:
		msg = fmt.Sprintf("got %d characters, want at most %d", k.Got, k.Want)
	case *kind.MinItems:
		msg = fmt.Sprintf("got %d items, want at least %d", k.Got, k.Want)
	case *kind.MaxItems:
		msg = fmt.Sprintf("got %d items, want at most %d", k.Got, k.Want)
	case *kind.MinProperties:
		msg = fmt.Sprintf("got %d properties, want at least %d", k.Got, k.Want)
	case *kind.MaxProperties:
		msg = fmt.Sprintf("got %d properties, want at most %d", k.Got, k.Want)
	case *kind.FalseSchema:
		rule, msg = "false", "not allowed here (the schema is false)"
	case *kind.AnyOf, *kind.OneOf:
		var sub []Failure
		for _, c := range e.Causes {
			collect(c, &sub)
		}
		if len(sub) > 0 {
			reasons := make([]string, 0, len(sub))
			for i, f := range sub {
				if i == maxListed {
					reasons = append(reasons, fmt.Sprintf("and %d more", len(sub)-i))
					break
				}
				reasons = append(reasons, fmt.Sprintf("at %q: %s", f.Pointer, f.Message))
			}
			msg += " (" + strings.Join(reasons, "; ") + ")"
		}
	}
	return Failure{Pointer: ptr, Rule: rule, Message: msg}
}

// member is the pointer of the first of names in the object at loc.
func member(loc, names []string) string {
	if len(names) == 0 {
		return pointer(loc)
	}
	return pointer(append(append([]string(nil), loc...), names[0]))
}

// pointer formats tokens as a JSON pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

// JSONPointer returns Pointer: the offending value's JSON pointer, for
// callers that only know the method.
func (e *ValidationError) JSONPointer() string { return e.Pointer }
