package schema

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// walker decides whether every instance the writer schema accepts is
// accepted by the reader schema (backward: writer old, reader new;
// forward: the other way round). It is sound: it reports Compatible only
// where it has a reason for every keyword of the reader. It may be
// pessimistic: where it cannot tell, it reports Unknown.
//
// The writer's set of instances may be widened (a keyword of it left
// out) without harm to soundness; the reader's never. When the writer is
// widened, what looks like a break may be no break after all, so it is
// reported as Unknown (approx).
type walker struct {
	dir  Direction
	a, b string // the writer's and the reader's name: "old" or "new"
	out  []Finding
	seen map[string]bool // findings already reported
	// onPath holds the pairs being compared on the way down, to stop
	// at a recursive $ref.
	onPath map[[2]*jsonschema.Schema]bool
	// approx > 0: the writer was widened above.
	approx int
	// budget bounds the work on a pathological schema.
	budget *int
}

// walkBudget is how many pairs of subschemas one Check compares at most.
const walkBudget = 50000

func newWalker(dir Direction, a, b string) *walker {
	budget := walkBudget
	return &walker{dir: dir, a: a, b: b, seen: map[string]bool{}, onPath: map[[2]*jsonschema.Schema]bool{}, budget: &budget}
}

func (w *walker) verdict() Verdict {
	v := Compatible
	for _, f := range w.out {
		if !f.Unknown {
			return Incompatible
		}
		v = Unknown
	}
	return v
}

func (w *walker) report(ptr, kw string, unknown bool, msg string) {
	if !unknown && w.approx > 0 {
		unknown = true
		msg += fmt.Sprintf(" (perhaps: the %s schema has keywords here or above that the checker does not read, which may exclude those events)", w.a)
	}
	key := ptr + "\x00" + kw + "\x00" + msg
	if w.seen[key] {
		return
	}
	w.seen[key] = true
	w.out = append(w.out, Finding{Direction: w.dir, Pointer: ptr, Keyword: kw, Unknown: unknown, Message: msg})
}

func (w *walker) breaks(ptr, kw, format string, args ...any) {
	w.report(ptr, kw, false, fmt.Sprintf(format, args...))
}

func (w *walker) unknown(ptr, kw, format string, args ...any) {
	w.report(ptr, kw, true, fmt.Sprintf(format, args...))
}

// try compares a and b on a scratch walker and reports whether it found
// nothing at all: a proof that a fits b.
func (w *walker) try(a, b *jsonschema.Schema, ptr string) bool {
	s := &walker{dir: w.dir, a: w.a, b: w.b, seen: map[string]bool{}, onPath: w.onPath, budget: w.budget}
	s.sub(a, b, ptr)
	return len(s.out) == 0
}

// Boolean schemas, and the schema of what a keyword left out allows.
var (
	trueSchema  = &jsonschema.Schema{}
	falseSchema = func() *jsonschema.Schema { f := false; return &jsonschema.Schema{Bool: &f} }()
)

func isFalse(s *jsonschema.Schema) bool { return s != nil && s.Bool != nil && !*s.Bool }

// hasConstraints reports whether s restricts anything: a keyword other
// than an annotation (or the boolean schema false).
func hasConstraints(s *jsonschema.Schema) bool {
	if s == nil {
		return false
	}
	if s.Bool != nil {
		return !*s.Bool
	}
	v := reflect.ValueOf(s).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && f.Name != "Bool" && !annotations[f.Name] && !v.Field(i).IsZero() {
			return true
		}
	}
	return false
}

// additional turns additionalProperties or additionalItems (nil, a bool or
// a schema) into a schema.
func additional(v any) *jsonschema.Schema {
	switch t := v.(type) {
	case bool:
		if t {
			return trueSchema
		}
		return falseSchema
	case *jsonschema.Schema:
		if t != nil {
			return t
		}
	}
	return trueSchema
}

// sub checks that every instance a accepts, b accepts, at ptr.
func (w *walker) sub(a, b *jsonschema.Schema, ptr string) {
	if a == nil {
		a = trueSchema
	}
	if b == nil {
		b = trueSchema
	}
	if *w.budget <= 0 {
		w.unknown(ptr, "", "the schemas are too large to compare completely")
		return
	}
	*w.budget--
	switch {
	case a == b || isFalse(a) || !hasConstraints(b):
		return
	case isFalse(b):
		w.breaks(ptr, "false", "the %s schema allows no value here; %s events may have one", w.b, w.a)
		return
	case sameSchema(a, b):
		return
	}
	key := [2]*jsonschema.Schema{a, b}
	if w.onPath[key] {
		w.unknown(ptr, "$ref", "recursive schema: compared down to here, not at every depth")
		return
	}
	w.onPath[key] = true
	defer delete(w.onPath, key)

	// A writer with finitely many values is checked value by value,
	// exactly, whatever the reader holds.
	if vals, kw, ok := finiteValues(a); ok {
		for _, v := range vals {
			if _, huge := hugeNumber(v, nil); huge {
				w.unknown(ptr+"/"+kw, kw, "the value %s is beyond what validation compares", display(v))
				continue
			}
			if validate(a, v) != nil {
				continue // excluded by another keyword of a
			}
			if err := validate(b, v); err != nil {
				w.breaks(ptr, kw, "the %s schema allows %s, which the %s schema rejects (%s)", w.a, display(v), w.b, firstMessage(err))
			}
		}
		return
	}

	// The reader's conjunctions: the writer must fit each.
	if b.Ref != nil || len(b.AllOf) > 0 {
		rest := *b
		rest.Ref, rest.AllOf = nil, nil
		if b.Ref != nil {
			w.sub(a, b.Ref, ptr)
		}
		for i, s := range b.AllOf {
			w.sub(a, s, fmt.Sprintf("%s/allOf/%d", ptr, i))
		}
		w.sub(a, &rest, ptr)
		return
	}
	// The writer's conjunctions: it fits if one of them fits.
	if a.Ref != nil || len(a.AllOf) > 0 {
		rest := *a
		rest.Ref, rest.AllOf = nil, nil
		var parts []*jsonschema.Schema
		if hasConstraints(&rest) {
			parts = append(parts, &rest)
		}
		if a.Ref != nil {
			parts = append(parts, a.Ref)
		}
		parts = append(parts, a.AllOf...)
		if len(parts) == 1 {
			w.sub(parts[0], b, ptr)
			return
		}
		for _, p := range parts {
			if w.try(p, b, ptr) {
				return
			}
		}
		w.approx++ // the others narrow it further
		w.sub(parts[0], b, ptr)
		w.approx--
		return
	}
	// The reader's alternatives: the writer fits one, or each of the
	// writer's alternatives fits one.
	if len(b.AnyOf) > 0 {
		rest := *b
		rest.AnyOf = nil
		w.sub(a, &rest, ptr)
		if w.fitsOneOf(a, b.AnyOf, ptr) {
			return
		}
		if own := a.AnyOf; len(own) > 0 && !hasConstraints(withoutAnyOf(a)) {
			// a is exactly the union of its alternatives: look at the
			// ones that fit no alternative of b one by one.
			for _, x := range own {
				if !w.try(x, b, ptr) {
					w.sub(x, b, ptr)
				}
			}
			return
		}
		w.unknown(ptr+"/anyOf", "anyOf", "no alternative of the %s schema is known to accept every %s event here", w.b, w.a)
		return
	}
	// The writer's alternatives: it fits if each of them fits.
	if len(a.AnyOf) > 0 || len(a.OneOf) > 0 {
		rest := *a
		rest.AnyOf, rest.OneOf = nil, nil
		if hasConstraints(&rest) && w.try(&rest, b, ptr) {
			return
		}
		for _, alts := range [][]*jsonschema.Schema{a.AnyOf, a.OneOf} {
			if len(alts) > 0 && w.allFit(alts, b, ptr) {
				return
			}
		}
		if hasConstraints(&rest) || len(a.OneOf) > 0 {
			kw := "anyOf"
			if len(a.OneOf) > 0 {
				kw = "oneOf"
			}
			w.unknown(ptr+"/"+kw, kw, "not every alternative of the %s schema is known to fit the %s schema", w.a, w.b)
			return
		}
		for _, alt := range a.AnyOf { // a is exactly the union: each break is real
			w.sub(alt, b, ptr)
		}
		return
	}
	w.keywords(a, b, ptr)
}

func withoutAnyOf(a *jsonschema.Schema) *jsonschema.Schema {
	rest := *a
	rest.AnyOf = nil
	return &rest
}

// fitsOneOf reports whether a fits one of alts, or each alternative of a
// (anyOf or oneOf) fits one of alts.
func (w *walker) fitsOneOf(a *jsonschema.Schema, alts []*jsonschema.Schema, ptr string) bool {
	for _, alt := range alts {
		if w.try(a, alt, ptr) {
			return true
		}
	}
	own := a.AnyOf
	if len(own) == 0 {
		own = a.OneOf // one of them at least matches, as with anyOf
	}
	if len(own) == 0 {
		return false
	}
	for _, x := range own {
		found := false
		for _, alt := range alts {
			if w.try(x, alt, ptr) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (w *walker) allFit(alts []*jsonschema.Schema, b *jsonschema.Schema, ptr string) bool {
	for _, x := range alts {
		if !w.try(x, b, ptr) {
			return false
		}
	}
	return true
}

// finiteValues returns the values of a writer with enum, const, or only
// null and boolean types: few enough to check one by one.
func finiteValues(a *jsonschema.Schema) ([]any, string, bool) {
	switch {
	case a.Const != nil:
		return []any{*a.Const}, "const", true
	case a.Enum != nil:
		return a.Enum.Values, "enum", true
	case a.Types != nil && kindsOf(a)&^(kNull|kBool) == 0:
		return []any{nil, false, true}, "type", true
	}
	return nil, "", false
}

// writerIgnored lists the keywords of a that keywords() does not read.
// Leaving them out widens the writer, which keeps the answer sound but
// makes a break only a possibility.
func writerIgnored(a *jsonschema.Schema) []string {
	var out []string
	add := func(ok bool, kw string) {
		if ok {
			out = append(out, kw)
		}
	}
	add(a.Not != nil, "not")
	add(a.If != nil, "if")
	add(len(a.DependentRequired) > 0, "dependentRequired")
	add(len(a.DependentSchemas) > 0, "dependentSchemas")
	add(len(a.Dependencies) > 0, "dependencies")
	add(a.PropertyNames != nil, "propertyNames")
	add(a.UnevaluatedProperties != nil, "unevaluatedProperties")
	add(a.UnevaluatedItems != nil, "unevaluatedItems")
	add(a.Contains != nil, "contains")
	add(a.ContentEncoding != nil || a.ContentMediaType != nil || a.ContentSchema != nil, "contentMediaType")
	add(a.DynamicRef != nil, "$dynamicRef")
	add(a.RecursiveRef != nil, "$recursiveRef")
	add(len(a.Extensions) > 0, "extension")
	return out
}

// keywords compares a's and b's own keywords (no $ref, allOf, anyOf).
func (w *walker) keywords(a, b *jsonschema.Schema, ptr string) {
	if len(writerIgnored(a)) > 0 {
		w.approx++
		defer func() { w.approx-- }()
	}
	ka, kb := kindsOf(a), kindsOf(b)
	if missing := ka &^ kb; missing != 0 {
		w.typeBreak(a, b, ptr, missing)
	}
	k := ka & kb
	if k == 0 {
		return
	}
	// The reader's keywords that no comparison decides.
	for _, u := range []struct {
		ok bool
		kw string
	}{
		{b.Not != nil, "not"}, {b.If != nil, "if"}, {len(b.OneOf) > 0, "oneOf"},
		{b.DynamicRef != nil, "$dynamicRef"}, {b.RecursiveRef != nil, "$recursiveRef"},
		{len(b.Extensions) > 0, "extension"},
		{k&kObject != 0 && len(b.DependentRequired) > 0, "dependentRequired"},
		{k&kObject != 0 && len(b.DependentSchemas) > 0, "dependentSchemas"},
		{k&kObject != 0 && len(b.Dependencies) > 0, "dependencies"},
		{k&kObject != 0 && b.PropertyNames != nil, "propertyNames"},
		{k&kObject != 0 && b.UnevaluatedProperties != nil, "unevaluatedProperties"},
		{k&kArray != 0 && b.UnevaluatedItems != nil, "unevaluatedItems"},
		{k&kArray != 0 && b.Contains != nil, "contains"},
		{k&kString != 0 && (b.ContentEncoding != nil || b.ContentMediaType != nil || b.ContentSchema != nil), "contentMediaType"},
	} {
		if u.ok {
			w.unknown(ptr+"/"+u.kw, u.kw, "%s in the %s schema: whether every %s event passes it cannot be decided", u.kw, w.b, w.a)
		}
	}
	if b.Enum != nil || b.Const != nil {
		kw, what := "enum", "the values listed"
		if b.Const != nil {
			kw, what = "const", "one value"
		}
		w.breaks(ptr+"/"+kw, kw, "the %s schema allows only %s here; the %s schema allows others", w.b, what, w.a)
	}
	if k&(kInt|kFrac) != 0 {
		w.numbers(a, b, ptr, k&kFrac == 0)
	}
	if k&kString != 0 {
		w.strings(a, b, ptr)
	}
	if k&kArray != 0 {
		w.arrays(a, b, ptr)
	}
	if k&kObject != 0 {
		w.objects(a, b, ptr)
	}
}

func (w *walker) typeBreak(a, b *jsonschema.Schema, ptr string, missing kinds) {
	want := strings.Join(b.Types.ToStrings(), " or ")
	switch {
	case a.Types == nil:
		w.breaks(ptr+"/type", "type", "the %s schema sets no type here, so %s events may hold %s; the %s schema wants %s", w.a, w.a, missing, w.b, want)
	case missing == kFrac:
		w.breaks(ptr+"/type", "type", "narrowed from number to integer: %s events with a fraction (1.5) fail", w.a)
	default:
		w.breaks(ptr+"/type", "type", "the %s schema allows %s here (type %s), the %s schema does not (type %s)", w.a, missing, strings.Join(a.Types.ToStrings(), " or "), w.b, want)
	}
}

func (w *walker) strings(a, b *jsonschema.Schema, ptr string) {
	w.minInt(ptr, "minLength", a.MinLength, b.MinLength, "characters")
	w.maxInt(ptr, "maxLength", a.MaxLength, b.MaxLength, "characters")
	if b.Pattern != nil {
		switch {
		case a.Pattern == nil:
			w.breaks(ptr+"/pattern", "pattern", "the %s schema wants strings to match %q; the %s schema does not", w.b, b.Pattern.String(), w.a)
		case a.Pattern.String() != b.Pattern.String():
			w.unknown(ptr+"/pattern", "pattern", "changed from %q to %q: whether one language contains the other is not decided", a.Pattern.String(), b.Pattern.String())
		}
	}
	if b.Format != nil {
		switch {
		case a.Format == nil:
			w.breaks(ptr+"/format", "format", "the %s schema wants format %q; the %s schema does not", w.b, b.Format.Name, w.a)
		case a.Format.Name != b.Format.Name:
			w.unknown(ptr+"/format", "format", "changed from %q to %q", a.Format.Name, b.Format.Name)
		}
	}
}

func (w *walker) arrays(a, b *jsonschema.Schema, ptr string) {
	w.minInt(ptr, "minItems", a.MinItems, b.MinItems, "items")
	w.maxInt(ptr, "maxItems", a.MaxItems, b.MaxItems, "items")
	if b.UniqueItems && !a.UniqueItems {
		w.breaks(ptr+"/uniqueItems", "uniqueItems", "the %s schema wants unique items; %s events may repeat one", w.b, w.a)
	}
	pa, ra := itemsOf(a)
	pb, rb := itemsOf(b)
	for i := range max(len(pa), len(pb)) {
		ea, eb := ra, rb
		if i < len(pa) {
			ea = pa[i]
		}
		if i < len(pb) {
			eb = pb[i]
		}
		p := fmt.Sprintf("%s/prefixItems/%d", ptr, i)
		if b.DraftVersion < 2020 {
			p = fmt.Sprintf("%s/items/%d", ptr, i)
		}
		w.sub(ea, eb, p)
	}
	p := ptr + "/items"
	if b.DraftVersion < 2020 && len(pb) > 0 {
		p = ptr + "/additionalItems"
	}
	w.sub(ra, rb, p)
}

// itemsOf returns the schemas of an array's leading items and of the rest,
// across drafts (items as a list and additionalItems before 2020-12,
// prefixItems and items since).
func itemsOf(s *jsonschema.Schema) (prefix []*jsonschema.Schema, rest *jsonschema.Schema) {
	rest = trueSchema
	switch t := s.Items.(type) {
	case *jsonschema.Schema:
		if t != nil {
			rest = t
		}
	case []*jsonschema.Schema:
		prefix, rest = t, additional(s.AdditionalItems)
	}
	if s.PrefixItems != nil {
		prefix = s.PrefixItems
	}
	if s.Items2020 != nil {
		rest = s.Items2020
	}
	return prefix, rest
}

func (w *walker) objects(a, b *jsonschema.Schema, ptr string) {
	for _, r := range b.Required {
		if !slices.Contains(a.Required, r) {
			w.breaks(ptr+"/required", "required", "the %s schema requires %q; %s events without it fail", w.b, r, w.a)
		}
	}
	w.minInt(ptr, "minProperties", a.MinProperties, b.MinProperties, "properties")
	w.maxInt(ptr, "maxProperties", a.MaxProperties, b.MaxProperties, "properties")
	if len(a.PatternProperties) > 0 || len(b.PatternProperties) > 0 {
		w.unknown(ptr+"/patternProperties", "patternProperties", "properties are not compared where patternProperties decide which schema a name gets")
		return
	}
	names := map[string]bool{}
	for n := range a.Properties {
		names[n] = true
	}
	for n := range b.Properties {
		names[n] = true
	}
	addA, addB := additional(a.AdditionalProperties), additional(b.AdditionalProperties)
	for _, n := range sortedNames(names) {
		pa, declaredA := a.Properties[n]
		pb, declaredB := b.Properties[n]
		if !declaredA {
			pa = addA
		}
		if !declaredB {
			pb = addB
		}
		p := ptr + "/properties/" + escapeToken(n)
		switch {
		case isFalse(pa):
			// the writer never has it
		case !declaredB && isFalse(pb):
			w.breaks(p, "additionalProperties", "%q is not allowed by the %s schema (additionalProperties: false); %s events may have it", n, w.b, w.a)
		case !declaredA && pa == trueSchema && hasConstraints(pb) && !sameSchema(pa, pb):
			w.breaks(p, "properties", "the %s schema lets %q hold anything (not declared, additionalProperties not false); the %s schema constrains it, so %s events with another value fail", w.a, n, w.b, w.a)
		default:
			w.sub(pa, pb, p)
		}
	}
	switch {
	case isFalse(addA):
	case isFalse(addB):
		w.breaks(ptr+"/additionalProperties", "additionalProperties", "the %s schema allows no properties besides those it declares; %s events may have others", w.b, w.a)
	default:
		w.sub(addA, addB, ptr+"/additionalProperties")
	}
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func escapeToken(t string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(t)
}

// minInt and maxInt compare an integer bound of a keyword (minLength, …).
func (w *walker) minInt(ptr, kw string, a, b *int, unit string) {
	if b == nil || *b <= 0 {
		return
	}
	switch {
	case a == nil:
		w.breaks(ptr+"/"+kw, kw, "the %s schema wants at least %d %s; the %s schema has no lower bound", w.b, *b, unit, w.a)
	case *b > *a:
		w.breaks(ptr+"/"+kw, kw, "raised from %d to %d %s: %s events with fewer fail", *a, *b, unit, w.a)
	}
}

func (w *walker) maxInt(ptr, kw string, a, b *int, unit string) {
	if b == nil {
		return
	}
	switch {
	case a == nil:
		w.breaks(ptr+"/"+kw, kw, "the %s schema allows at most %d %s; the %s schema has no upper bound", w.b, *b, unit, w.a)
	case *b < *a:
		w.breaks(ptr+"/"+kw, kw, "lowered from %d to %d %s: %s events with more fail", *a, *b, unit, w.a)
	}
}

// firstMessage is the first failure of a validation error, for messages.
func firstMessage(err error) string {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return fmt.Sprintf("at %q: %s: %s", ve.Pointer, ve.Rule, ve.Message)
	}
	return err.Error()
}
