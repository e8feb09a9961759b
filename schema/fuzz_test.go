package schema

import (
	"errors"
	"strings"
	"testing"
)

// FuzzValidate compiles a schema and validates an event against it: no
// panic, no hang, and every refusal is a *ValidationError whose pointer is
// a JSON pointer and whose rule is named. A schema is never incompatible
// with a second compilation of itself.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(readingSchema), []byte(`{"device_id":"d1","value":1}`))
	f.Add([]byte(readingSchema), []byte(`{"device_id":"d1","value":"x","readings":[{"v":1.5}],"extra":1}`))
	f.Add([]byte(`{"type":"array","items":{"anyOf":[{"type":"integer"},{"type":"string"}]},"uniqueItems":true}`), []byte(`[1,"a",1]`))
	f.Add([]byte(`{"$defs":{"n":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/n"}}}}},"$ref":"#/$defs/n"}`), []byte(`{"k":[{"k":[{}]}]}`))
	f.Add([]byte(`{"type":"number","multipleOf":0.01,"exclusiveMaximum":1e300}`), []byte(`1e299`))
	f.Add([]byte(`{"type":"string","pattern":"^[a-z]+$","format":"email"}`), []byte(`"not an email"`))
	f.Fuzz(func(t *testing.T, schemaJSON, event []byte) {
		s, err := Compile("fuzz", schemaJSON)
		if err != nil {
			return
		}
		s2, err := Compile("fuzz", schemaJSON)
		if err != nil {
			t.Fatalf("the second compilation failed: %v", err)
		}
		if r := Check(s, s2); r.Backward == Incompatible || r.Forward == Incompatible {
			t.Fatalf("a schema is incompatible with itself: %s\n%s", r.Level(), r.Summary())
		}
		err = s.ValidateJSON(event)
		if err == nil {
			return
		}
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("ValidateJSON = %v (%T), want a *ValidationError", err, err)
		}
		if ve.Rule == "" || len(ve.Failures) == 0 || (ve.Pointer != "" && !strings.HasPrefix(ve.Pointer, "/")) {
			t.Fatalf("ValidateJSON = %+v: want a rule, failures and a JSON pointer", ve)
		}
		if _, derr := DecodeJSON(event); derr != nil && ve.Rule != RuleJSON {
			t.Fatalf("ValidateJSON of bytes that are not JSON = rule %q, want %q", ve.Rule, RuleJSON)
		}
		_ = ve.Error()
	})
}

// FuzzCheck checks that Check is sound: where it says a direction is
// compatible, an event one side accepts is not refused by the other.
func FuzzCheck(f *testing.F) {
	for _, c := range checkCases() {
		f.Add([]byte(c.old), []byte(c.new), []byte(`{"id":"d1","value":1.5,"unit":"hPa","tags":["a"]}`))
	}
	f.Fuzz(func(t *testing.T, oldJSON, newJSON, event []byte) {
		old, err := Compile("old", oldJSON)
		if err != nil {
			return
		}
		next, err := Compile("new", newJSON)
		if err != nil {
			return
		}
		r := Check(old, next)
		v, err := DecodeJSON(event)
		if err != nil {
			return
		}
		if r.Backward == Compatible && old.Validate(v) == nil {
			if err := next.Validate(v); err != nil {
				t.Fatalf("backward compatible, but the new schema refuses an event the old accepts: %v", err)
			}
		}
		if r.Forward == Compatible && next.Validate(v) == nil {
			if err := old.Validate(v); err != nil {
				t.Fatalf("forward compatible, but the old schema refuses an event the new accepts: %v", err)
			}
		}
	})
}
