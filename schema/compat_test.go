package schema

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, name, src string) *Schema {
	t.Helper()
	s, err := Compile(name, []byte(src))
	if err != nil {
		t.Fatalf("Compile(%s): %v", name, err)
	}
	return s
}

// obj builds an object schema from its properties (JSON text of each),
// required names, and extra keywords (JSON members, e.g.
// `"additionalProperties": false`).
func obj(props map[string]string, required []string, extra ...string) string {
	var members []string
	var ps []string
	for _, n := range sortedKeys(props) {
		ps = append(ps, fmt.Sprintf("%q: %s", n, props[n]))
	}
	members = append(members, `"type": "object"`, `"properties": {`+strings.Join(ps, ", ")+`}`)
	if len(required) > 0 {
		members = append(members, `"required": ["`+strings.Join(required, `", "`)+`"]`)
	}
	members = append(members, extra...)
	return "{" + strings.Join(members, ", ") + "}"
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

const closed = `"additionalProperties": false`

// reading is the base of most pairs: an id and a value, id required.
func reading(extra map[string]string, required []string, more ...string) string {
	props := map[string]string{"id": `{"type": "string"}`, "value": `{"type": "number"}`}
	for k, v := range extra {
		if v == "" {
			delete(props, k)
		} else {
			props[k] = v
		}
	}
	if required == nil {
		required = []string{"id"}
	}
	return obj(props, required, more...)
}

// The answers below are written by hand from JSON Schema's semantics:
// backward = every instance valid under old is valid under new; forward =
// every instance valid under new is valid under old. want lists the
// findings as "b!" or "f!" (breaks) and "b?" or "f?" (unknown), then the
// pointer and the keyword.
type checkCase struct {
	name     string
	old, new string
	level    string
	want     []string
}

func checkCases() []checkCase {
	base := reading(nil, nil)
	baseClosed := reading(nil, nil, closed)
	tree := func(vType string) string {
		return `{"$defs": {"node": {"type": "object", "properties": {"v": {"type": "` + vType + `"},
			"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}`
	}
	return []checkCase{
		{"unchanged", base, base, "full", nil},
		{"title and description only", base, reading(map[string]string{"id": `{"type": "string", "title": "Id", "description": "the id"}`}, nil), "full", nil},

		// Properties added and removed, open and closed content.
		{"optional property added, open: old events may carry it with any value",
			base, reading(map[string]string{"unit": `{"type": "string"}`}, nil),
			"forward", []string{"b! /properties/unit properties"}},
		{"optional property added, closed: old events never have it",
			baseClosed, reading(map[string]string{"unit": `{"type": "string"}`}, nil, closed),
			"backward", []string{"f! /properties/unit additionalProperties"}},
		{"optional property added without constraints, open",
			base, reading(map[string]string{"unit": `{}`}, nil), "full", nil},
		{"required property added, closed",
			baseClosed, reading(map[string]string{"unit": `{"type": "string"}`}, []string{"id", "unit"}, closed),
			"none", []string{"b! /required required", "f! /properties/unit additionalProperties"}},
		{"property removed, open: new events may hold anything there",
			base, reading(map[string]string{"value": ""}, nil),
			"backward", []string{"f! /properties/value properties"}},
		{"property removed, closed: old events with it are refused",
			baseClosed, reading(map[string]string{"value": ""}, nil, closed),
			"forward", []string{"b! /properties/value additionalProperties"}},
		{"required property removed, closed",
			reading(nil, []string{"id", "value"}, closed), reading(map[string]string{"value": ""}, nil, closed),
			"none", []string{"b! /properties/value additionalProperties", "f! /required required"}},
		{"content closed", base, reading(nil, nil, closed),
			"forward", []string{"b! /additionalProperties additionalProperties"}},
		{"type set on an untyped schema", `{}`, `{"type": "object"}`,
			"forward", []string{"b! /type type"}},

		// Types.
		{"type narrowed number to integer",
			base, reading(map[string]string{"value": `{"type": "integer"}`}, nil),
			"forward", []string{"b! /properties/value/type type"}},
		{"type widened integer to number",
			reading(map[string]string{"value": `{"type": "integer"}`}, nil), base,
			"backward", []string{"f! /properties/value/type type"}},
		{"type list widened with null",
			base, reading(map[string]string{"id": `{"type": ["string", "null"]}`}, nil),
			"backward", []string{"f! /properties/id/type type"}},
		{"type changed", base, reading(map[string]string{"id": `{"type": "integer"}`}, nil),
			"none", []string{"b! /properties/id/type type", "f! /properties/id/type type"}},
		{"integer written as a number with an integer multipleOf",
			reading(map[string]string{"value": `{"type": "number", "multipleOf": 1}`}, nil),
			reading(map[string]string{"value": `{"type": "integer"}`}, nil),
			"full", nil},

		// Required.
		{"required added", base, reading(nil, []string{"id", "value"}),
			"forward", []string{"b! /required required"}},
		{"required removed", reading(nil, []string{"id", "value"}), base,
			"backward", []string{"f! /required required"}},

		// Enums and consts.
		{"enum widened",
			reading(map[string]string{"unit": `{"enum": ["celsius", "percent"]}`}, nil),
			reading(map[string]string{"unit": `{"enum": ["celsius", "percent", "hPa"]}`}, nil),
			"backward", []string{"f! /properties/unit enum"}},
		{"enum narrowed",
			reading(map[string]string{"unit": `{"enum": ["celsius", "percent", "hPa"]}`}, nil),
			reading(map[string]string{"unit": `{"enum": ["celsius", "percent"]}`}, nil),
			"forward", []string{"b! /properties/unit enum"}},
		{"enum reordered", reading(map[string]string{"unit": `{"enum": ["a", "b"]}`}, nil),
			reading(map[string]string{"unit": `{"enum": ["b", "a"]}`}, nil), "full", nil},
		{"enum on a string", reading(map[string]string{"unit": `{"type": "string"}`}, nil),
			reading(map[string]string{"unit": `{"enum": ["a", "b"]}`}, nil),
			"forward", []string{"b! /properties/unit/enum enum"}},
		{"const widened to an enum", `{"const": 1}`, `{"enum": [1, 2]}`,
			"backward", []string{"f! (root) enum"}},
		{"boolean narrowed to true", `{"type": "boolean"}`, `{"const": true}`,
			"forward", []string{"b! (root) type"}},

		// Bounds.
		{"minimum raised", `{"type": "number", "minimum": 0}`, `{"type": "number", "minimum": 10}`,
			"forward", []string{"b! /minimum minimum"}},
		{"maximum loosened", `{"type": "number", "maximum": 100}`, `{"type": "number", "maximum": 200}`,
			"backward", []string{"f! /maximum maximum"}},
		{"maximum added", `{"type": "number"}`, `{"type": "number", "maximum": 100}`,
			"forward", []string{"b! /maximum maximum"}},
		{"integers: minimum 1 is exclusiveMinimum 0", `{"type": "integer", "minimum": 1}`, `{"type": "integer", "exclusiveMinimum": 0}`, "full", nil},
		{"numbers: minimum 1 is within exclusiveMinimum 0", `{"type": "number", "minimum": 1}`, `{"type": "number", "exclusiveMinimum": 0}`,
			"backward", []string{"f! /minimum minimum"}},
		{"exclusive made inclusive", `{"type": "number", "exclusiveMaximum": 5}`, `{"type": "number", "maximum": 5}`,
			"backward", []string{"f! /exclusiveMaximum exclusiveMaximum"}},
		{"maxLength tightened", `{"type": "string", "maxLength": 64}`, `{"type": "string", "maxLength": 32}`,
			"forward", []string{"b! /maxLength maxLength"}},
		{"minLength loosened", `{"type": "string", "minLength": 3}`, `{"type": "string", "minLength": 1}`,
			"backward", []string{"f! /minLength minLength"}},
		{"minItems and maxItems", `{"type": "array", "minItems": 1, "maxItems": 10}`, `{"type": "array", "minItems": 2, "maxItems": 20}`,
			"none", []string{"b! /minItems minItems", "f! /maxItems maxItems"}},
		{"maxProperties added", `{"type": "object"}`, `{"type": "object", "maxProperties": 5}`,
			"forward", []string{"b! /maxProperties maxProperties"}},
		{"multipleOf refined", `{"type": "number", "multipleOf": 0.5}`, `{"type": "number", "multipleOf": 0.25}`,
			"backward", []string{"f! /multipleOf multipleOf"}},
		{"uniqueItems added", `{"type": "array"}`, `{"type": "array", "uniqueItems": true}`,
			"forward", []string{"b! /uniqueItems uniqueItems"}},
		{"format added", `{"type": "string"}`, `{"type": "string", "format": "date-time"}`,
			"forward", []string{"b! /format format"}},

		// Nested objects and arrays.
		{"nested property narrowed",
			reading(map[string]string{"location": obj(map[string]string{"lat": `{"type": "number"}`}, nil)}, nil),
			reading(map[string]string{"location": obj(map[string]string{"lat": `{"type": "integer"}`}, nil)}, nil),
			"forward", []string{"b! /properties/location/properties/lat/type type"}},
		{"nested required added",
			reading(map[string]string{"location": obj(map[string]string{"lat": `{"type": "number"}`}, nil)}, nil),
			reading(map[string]string{"location": obj(map[string]string{"lat": `{"type": "number"}`}, []string{"lat"})}, nil),
			"forward", []string{"b! /properties/location/required required"}},
		{"array items narrowed to an enum",
			reading(map[string]string{"tags": `{"type": "array", "items": {"type": "string"}}`}, nil),
			reading(map[string]string{"tags": `{"type": "array", "items": {"enum": ["a", "b"]}}`}, nil),
			"forward", []string{"b! /properties/tags/items/enum enum"}},
		{"array of objects, property widened",
			`{"type": "array", "items": ` + obj(map[string]string{"x": `{"type": "integer"}`}, []string{"x"}) + `}`,
			`{"type": "array", "items": ` + obj(map[string]string{"x": `{"type": ["integer", "string"]}`}, []string{"x"}) + `}`,
			"backward", []string{"f! /items/properties/x/type type"}},
		{"prefixItems item narrowed",
			`{"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}], "items": false}`,
			`{"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false}`,
			"forward", []string{"b! /prefixItems/0/type type"}},
		{"tuple grown by an optional item",
			`{"type": "array", "prefixItems": [{"type": "number"}], "items": false}`,
			`{"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}], "items": false}`,
			"backward", []string{"f! /prefixItems/1 false"}},
		{"draft-07 items list and additionalItems",
			`{"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"type": "string"}], "additionalItems": false}`,
			`{"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "integer"}}`,
			"backward", []string{"f! /additionalItems false"}},
		{"draft-04 exclusiveMinimum true dropped",
			`{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true}`,
			`{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0}`,
			"backward", []string{"f! /exclusiveMinimum exclusiveMinimum"}},

		// References and combinators.
		{"$ref to a changed definition",
			`{"$defs": {"v": {"type": "number"}}, "type": "object", "properties": {"value": {"$ref": "#/$defs/v"}}}`,
			`{"$defs": {"v": {"type": "integer"}}, "type": "object", "properties": {"value": {"$ref": "#/$defs/v"}}}`,
			"forward", []string{"b! /properties/value/type type"}},
		{"$ref inlined", `{"$defs": {"v": {"type": "number"}}, "properties": {"value": {"$ref": "#/$defs/v"}}}`,
			`{"properties": {"value": {"type": "number"}}}`, "full", nil},
		{"allOf in the new schema adds a requirement",
			base, `{"allOf": [` + base + `, {"required": ["value"]}]}`,
			"forward", []string{"b! /allOf/1/required required"}},
		{"recursive $ref unchanged", tree("integer"), tree("integer"), "full", nil},
		{"recursive $ref, a leaf widened",
			tree("integer"), tree("number"),
			"unknown (backward unknown, forward incompatible)",
			[]string{"b? /properties/kids/items $ref", "f? /properties/kids/items $ref", "f! /properties/v/type type"}},
		{"anyOf widened",
			`{"anyOf": [{"type": "integer"}, {"type": "string"}]}`,
			`{"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}`,
			"backward", []string{"f! (root) type"}},
		{"anyOf narrowed", `{"anyOf": [{"type": "integer"}, {"type": "string"}]}`, `{"anyOf": [{"type": "integer"}]}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /anyOf anyOf"}},
		{"oneOf added",
			reading(nil, nil), reading(map[string]string{"value": `{"oneOf": [{"type": "integer"}, {"type": "string"}]}`}, nil),
			"unknown (backward unknown, forward unknown)",
			[]string{"b? /properties/value/oneOf oneOf", "f? /properties/value/oneOf oneOf"}},
		{"oneOf unchanged, a sibling narrowed",
			reading(map[string]string{"value": `{"oneOf": [{"type": "integer"}, {"type": "string"}]}`}, nil),
			reading(map[string]string{"value": `{"oneOf": [{"type": "integer"}, {"type": "string"}]}`, "id": `{"type": "string", "maxLength": 8}`}, nil),
			"forward", []string{"b! /properties/id/maxLength maxLength"}},
		{"not added", `{"type": "string"}`, `{"type": "string", "not": {"const": "x"}}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /not not"}},
		{"pattern changed", `{"type": "string", "pattern": "^[a-z]+$"}`, `{"type": "string", "pattern": "^[a-z0-9]+$"}`,
			"unknown (backward unknown, forward unknown)", []string{"b? /pattern pattern", "f? /pattern pattern"}},
		{"pattern added", `{"type": "string"}`, `{"type": "string", "pattern": "^[a-z]+$"}`,
			"forward", []string{"b! /pattern pattern"}},
		{"patternProperties changed", `{"type": "object", "patternProperties": {"^x_": {"type": "string"}}}`,
			`{"type": "object", "patternProperties": {"^x_": {"type": "integer"}}}`,
			"unknown (backward unknown, forward unknown)", []string{"b? /patternProperties patternProperties", "f? /patternProperties patternProperties"}},
		{"if/then in the old schema: a break is only a possibility",
			`{"type": "object", "if": {"required": ["a"]}, "then": {"properties": {"b": {"type": "string"}}}}`,
			`{"type": "object", "properties": {"b": {"type": "string"}}}`,
			"unknown (backward unknown, forward unknown)", []string{"b? /properties/b properties", "f? /if if"}},
		{"format changed", `{"type": "string", "format": "date"}`, `{"type": "string", "format": "date-time"}`,
			"unknown (backward unknown, forward unknown)", []string{"b? /format format", "f? /format format"}},
		{"minProperties raised", `{"type": "object", "minProperties": 1}`, `{"type": "object", "minProperties": 2}`,
			"forward", []string{"b! /minProperties minProperties"}},
		{"propertyNames added", `{"type": "object"}`, `{"type": "object", "propertyNames": {"maxLength": 3}}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /propertyNames propertyNames"}},
		{"contains added", `{"type": "array"}`, `{"type": "array", "contains": {"const": 1}}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /contains contains"}},
		{"dependentRequired added", `{"type": "object"}`, `{"type": "object", "dependentRequired": {"a": ["b"]}}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /dependentRequired dependentRequired"}},
		{"unevaluatedProperties added", `{"type": "object"}`, `{"type": "object", "unevaluatedProperties": false}`,
			"unknown (backward unknown, forward compatible)", []string{"b? /unevaluatedProperties unevaluatedProperties"}},
		{"false schema", `{"type": "object", "properties": {"x": false}}`, `{"type": "object", "properties": {"x": {"type": "string"}}}`,
			"backward", []string{"f! /properties/x false"}},
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range checkCases() {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(mustCompile(t, "old", tt.old), mustCompile(t, "new", tt.new))
			var got []string
			for _, f := range r.Findings {
				kind := "!"
				if f.Unknown {
					kind = "?"
				}
				ptr := f.Pointer
				if ptr == "" {
					ptr = "(root)"
				}
				got = append(got, fmt.Sprintf("%s%s %s %s", f.Direction[:1], kind, ptr, f.Keyword))
				if f.Message == "" {
					t.Errorf("finding %v has no message", f)
				}
			}
			if r.Level() != tt.level || strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
				t.Errorf("Check = %s %q, want %s %q\nfindings:\n%s", r.Level(), got, tt.level, tt.want, findings(r))
			}
		})
	}
}

func findings(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}

// Check is sound: where it says a direction is compatible, no instance
// that one side accepts is refused by the other. Instances are generated
// from the names and values the pairs above use.
func TestCheckIsSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	instances := make([]any, 0, 4000)
	for range cap(instances) {
		instances = append(instances, randomValue(rng, 0))
	}
	proven := 0
	for _, tt := range checkCases() {
		old, next := mustCompile(t, "old", tt.old), mustCompile(t, "new", tt.new)
		r := Check(old, next)
		for _, d := range []struct {
			dir      Direction
			v        Verdict
			from, to *Schema
		}{{Backward, r.Backward, old, next}, {Forward, r.Forward, next, old}} {
			if d.v != Compatible {
				continue
			}
			for _, v := range instances {
				if d.from.Validate(v) == nil {
					proven++
					if err := d.to.Validate(v); err != nil {
						t.Errorf("%s: %s compatible, but %s passes one side and fails the other: %v", tt.name, d.dir, display(v), err)
						break
					}
				}
			}
		}
	}
	if proven < 10000 {
		t.Errorf("only %d instances were valid on a compatible side: the generator misses the schemas", proven)
	}
}

var (
	sampleNames   = []string{"id", "value", "unit", "tags", "location", "lat", "x", "x_a", "a", "b", "v", "kids", "extra"}
	sampleScalars = []any{nil, true, false, json.Number("0"), json.Number("1"), json.Number("-1"), json.Number("1.5"),
		json.Number("5"), json.Number("10"), json.Number("100"), json.Number("150"), json.Number("0.25"), json.Number("0.5"),
		json.Number("0.75"), json.Number("2"), "", "a", "b", "x", "abc", "ABC", "a1", "hPa", "celsius", "percent", "d1",
		"2024-01-02T03:04:05Z", "a-long-string-of-more-than-sixty-four-characters-to-pass-every-max-length-here"}
)

// randomValue returns a JSON value as DecodeJSON gives them.
func randomValue(rng *rand.Rand, depth int) any {
	switch n := rng.IntN(10); {
	case depth >= 3 || n < 4:
		return sampleScalars[rng.IntN(len(sampleScalars))]
	case n < 6:
		arr := make([]any, rng.IntN(4))
		for i := range arr {
			arr[i] = randomValue(rng, depth+1)
		}
		return arr
	default:
		obj := map[string]any{}
		for range rng.IntN(5) {
			obj[sampleNames[rng.IntN(len(sampleNames))]] = randomValue(rng, depth+1)
		}
		if rng.IntN(2) == 0 { // most pairs want an id
			obj["id"] = "d1"
		}
		return obj
	}
}
