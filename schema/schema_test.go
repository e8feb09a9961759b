package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const readingSchema = `{
  "type": "object",
  "required": ["device_id", "value"],
  "additionalProperties": false,
  "properties": {
    "device_id": {"type": "string", "minLength": 1},
    "value": {"type": "number", "maximum": 1000},
    "unit": {"enum": ["celsius", "percent"]},
    "ts": {"type": "string", "format": "date-time"},
    "readings": {"type": "array", "items": {"type": "object", "required": ["v"], "properties": {"v": {"type": "integer"}}}},
    "a/b~c": {"type": "boolean"},
    "alt": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
  }
}`

func TestValidate(t *testing.T) {
	s := mustCompile(t, "reading.json", readingSchema)
	tests := []struct {
		event         string
		pointer, rule string
		msg           string
		n             int // failures
	}{
		{`{"device_id":"d1","value":1}`, "", "", "", 0},
		{`{"device_id":"d1","value":2.0,"ts":"2024-01-02T03:04:05Z"}`, "", "", "", 0},
		{`{"device_id":"d1","value":"x"}`, "/value", "type", "got string, want number", 1},
		{`{"device_id":"d1"}`, "/value", "required", "missing property 'value'", 1},
		{`{"device_id":"d1","value":1,"colour":"red"}`, "/colour", "additionalProperties", "'colour' not allowed", 1},
		{`{"device_id":"d1","value":1001}`, "/value", "maximum", "got 1001, want <= 1000", 1},
		{`{"device_id":"d1","value":1000.5}`, "/value", "maximum", "got 1000.5, want <= 1000", 1},
		{`{"device_id":"","value":1}`, "/device_id", "minLength", "got 0 characters, want at least 1", 1},
		{`{"device_id":"d1","value":1,"unit":"kelvin"}`, "/unit", "enum", "celsius", 1},
		{`{"device_id":"d1","value":1,"ts":"yesterday"}`, "/ts", "format", "date-time", 1},
		{`{"device_id":"d1","value":1,"readings":[{"v":1},{"v":1.5}]}`, "/readings/1/v", "type", "want integer", 1},
		{`{"device_id":"d1","value":1,"readings":[{}]}`, "/readings/0/v", "required", "", 1},
		{`{"device_id":"d1","value":1,"a/b~c":1}`, "/a~1b~0c", "type", "", 1},
		{`{"device_id":"d1","value":1,"alt":true}`, "/alt", "anyOf", "want integer", 1},
		// The deepest first; every failure kept.
		{`{"value":"x","readings":[{"v":"y"}]}`, "/readings/0/v", "type", "", 3},
		{`[1]`, "", "type", "want object", 1},
		{`{"device_id":"d1","value":1e500}`, "/value", RuleJSON, "exponent", 1},
	}
	for _, tt := range tests {
		err := s.ValidateJSON([]byte(tt.event))
		if tt.rule == "" {
			if err != nil {
				t.Errorf("ValidateJSON(%s) = %v, want nil", tt.event, err)
			}
			continue
		}
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("ValidateJSON(%s) = %v, want a *ValidationError", tt.event, err)
			continue
		}
		if ve.Pointer != tt.pointer || ve.Rule != tt.rule || !strings.Contains(ve.Message, tt.msg) || len(ve.Failures) != tt.n {
			t.Errorf("ValidateJSON(%s) = %q %q %q (%d failures), want %q %q with %q (%d)", tt.event, ve.Pointer, ve.Rule, ve.Message, len(ve.Failures), tt.pointer, tt.rule, tt.msg, tt.n)
		}
		if f := ve.Failures[0]; f.Pointer != ve.Pointer || f.Rule != ve.Rule || f.Message != ve.Message {
			t.Errorf("ValidateJSON(%s): Failures[0] = %+v, not the error's own", tt.event, f)
		}
		if !strings.Contains(ve.Error(), `at "`+tt.pointer+`": `+tt.rule+": ") {
			t.Errorf("Error() = %q, want the pointer and rule", ve.Error())
		}
	}
}

func TestValidationErrorListsAFew(t *testing.T) {
	s := mustCompile(t, "s", `{"type": "array", "items": {"type": "string"}}`)
	err := s.ValidateJSON([]byte(`[1,2,3,4,5]`))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Failures) != 5 {
		t.Fatalf("ValidateJSON = %v, want 5 failures", err)
	}
	if got := ve.Error(); strings.Count(got, "at \"") != maxListed || !strings.HasSuffix(got, "; and 2 more") {
		t.Errorf("Error() = %q, want %d failures and \"; and 2 more\"", got, maxListed)
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tt := range []struct{ in, err string }{
		{`{"a": 1}`, ""},
		{"{\n  \"a\": 1,\n  \"b\": x\n}", "line 3, column 8: invalid character 'x'"},
		{`{"a": 1`, "line 1, column 8: unexpected end of input"},
		{``, "empty input"},
		{`{"a": 1} 2`, "line 1, column 10: unexpected data after the JSON value"},
	} {
		_, err := DecodeJSON([]byte(tt.in))
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("DecodeJSON(%q) = %v, want an error with %q", tt.in, err, tt.err)
		}
	}
	v, err := DecodeJSON([]byte(`{"n": 12345678901234567890123}`))
	if err != nil || v.(map[string]any)["n"] != json.Number("12345678901234567890123") {
		t.Errorf("DecodeJSON kept %v, %v; want the number's every digit", v, err)
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := write("big.json", `{"description": "`+strings.Repeat("x", MaxFileBytes)+`"}`)
	for _, tt := range []struct{ path, err string }{
		{filepath.Join(dir, "missing.json"), "cannot read " + filepath.Join(dir, "missing.json") + ": no such file or directory"},
		{dir, "is a directory"},
		{write("syntax.json", "{\n\"type\": }"), "syntax.json: not valid JSON: line 2, column 9: invalid character '}'"},
		{write("meta.json", `{"type": "strin"}`), `meta.json: not a valid JSON Schema: at "/type": 'anyOf' failed`},
		{write("regex.json", `{"pattern": "("}`), "regex.json: "},
		{write("draft.json", `{"$schema": "https://example.com/no-such-draft"}`), "draft.json: "},
		{big, "is over 1048576 bytes"},
	} {
		_, err := CompileFile(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CompileFile(%s) = %v, want an error with %q", filepath.Base(tt.path), err, tt.err)
		}
	}
	// A $ref to a sibling file is read relative to the file.
	write("unit.json", `{"enum": ["celsius", "percent"]}`)
	s, err := CompileFile(write("with-ref.json", `{"properties": {"unit": {"$ref": "unit.json"}}}`))
	if err != nil {
		t.Fatalf("CompileFile(with-ref.json) = %v", err)
	}
	if err := s.ValidateJSON([]byte(`{"unit": "hPa"}`)); err == nil {
		t.Errorf("the $ref'd enum was not applied")
	}
	// From bytes, a $ref to another document is refused.
	if _, err := Compile("inline", []byte(`{"$ref": "unit.json"}`)); err == nil || !strings.Contains(err.Error(), "not supported here") {
		t.Errorf("Compile with an external $ref = %v, want it refused", err)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	v1 := mustCompile(t, "v1", `{"properties": {"value": {"type": "number"}}}`)
	v2 := mustCompile(t, "v2", `{"properties": {"value": {"type": "integer"}}}`)
	for _, a := range []struct {
		typ     string
		version int
		s       *Schema
		err     string
	}{
		{"reading", 1, v1, ""}, {"reading", 2, v2, ""}, {"click", 1, v1, ""},
		{"reading", 2, v1, "already registered"}, {"", 1, v1, "empty event type"},
		{"reading", 0, v1, "want a version >= 1"}, {"reading", 3, nil, "nil schema"},
	} {
		err := r.Add(a.typ, a.version, a.s)
		if (err == nil) != (a.err == "") || (err != nil && !strings.Contains(err.Error(), a.err)) {
			t.Errorf("Add(%q, %d) = %v, want %q", a.typ, a.version, err, a.err)
		}
	}
	if !errors.Is(r.Add("reading", 1, v1), ErrDuplicate) {
		t.Errorf("Add of a duplicate is not ErrDuplicate")
	}
	if got := strings.Join(r.Types(), ","); got != "click,reading" {
		t.Errorf("Types() = %s", got)
	}
	if got := r.Versions("reading"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("Versions(reading) = %v, want [1 2]", got)
	}
	v := map[string]any{"value": json.Number("1.5")}
	if err := r.Validate("reading", 1, "", v); err != nil {
		t.Errorf("Validate(v1) = %v", err)
	}
	var ve *ValidationError
	if err := r.Validate("reading", 2, "/schema_version", v); !errors.As(err, &ve) || ve.Schema != "reading v2" || ve.Pointer != "/value" ||
		!strings.HasPrefix(err.Error(), `schema reading v2: at "/value": type: `) {
		t.Errorf("Validate(v2) = %v, want a type violation of reading v2", err)
	}
	err := r.Validate("reading", 7, "/schema_version", v)
	if !errors.As(err, &ve) || ve.Rule != RuleVersion || ve.Pointer != "/schema_version" || !strings.Contains(ve.Message, "no schema registered for reading version 7 (registered: 1, 2)") {
		t.Errorf("Validate(v7) = %v, want a version violation", err)
	}
	if err := r.Validate("nosuch", 1, "", v); !errors.As(err, &ve) || !strings.Contains(ve.Message, "(registered: none)") {
		t.Errorf("Validate(nosuch) = %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want int
		ok   bool
	}{
		{json.Number("1"), 1, true}, {json.Number("2.0"), 2, true}, {json.Number("3e0"), 3, true},
		{json.Number("2.5"), 0, false}, {json.Number("2.0000000000000001"), 0, false}, {json.Number("0"), 0, false},
		{json.Number("-1"), 0, false}, {json.Number("2147483648"), 0, false}, {json.Number("1e999999"), 0, false},
		{int64(4), 4, true}, {4, 4, true}, {float64(5), 5, true}, {5.5, 0, false}, {"2", 0, false}, {nil, 0, false}, {true, 0, false},
	} {
		got, ok := Version(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Version(%#v) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseMode(t *testing.T) {
	r := &Report{Backward: Compatible, Forward: Unknown}
	for _, tt := range []struct {
		s    string
		want Verdict
	}{{"backward", Compatible}, {"forward", Unknown}, {"full", Unknown}} {
		m, err := ParseMode(tt.s)
		if err != nil || r.In(m) != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; In = %v, want %v", tt.s, m, err, r.In(m), tt.want)
		}
	}
	if _, err := ParseMode("sideways"); err == nil {
		t.Errorf("ParseMode(sideways) = nil error")
	}
}

// Every draft the docs name compiles, and its keywords apply.
func TestDrafts(t *testing.T) {
	for _, d := range []string{
		"http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-06/schema#",
		"http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2019-09/schema",
		"https://json-schema.org/draft/2020-12/schema",
	} {
		s := mustCompile(t, d, `{"$schema": "`+d+`", "type": "object", "required": ["v"], "properties": {"v": {"type": "integer", "maximum": 5}}}`)
		var ve *ValidationError
		if err := s.ValidateJSON([]byte(`{"v": 6}`)); !errors.As(err, &ve) || ve.Pointer != "/v" || ve.Rule != "maximum" {
			t.Errorf("%s: ValidateJSON({v: 6}) = %v, want maximum at /v", d, err)
		}
		if err := s.ValidateJSON([]byte(`{"v": 5.0}`)); err != nil {
			t.Errorf("%s: ValidateJSON({v: 5.0}) = %v, want nil", d, err)
		}
	}
}

// A Schema and a Registry are shared by every lane of a worker.
func TestValidateConcurrently(t *testing.T) {
	r := NewRegistry()
	if err := r.Add("reading", 1, mustCompile(t, "reading.json", readingSchema)); err != nil {
		t.Fatal(err)
	}
	events := []string{`{"device_id":"d1","value":1}`, `{"device_id":"d1","value":"x"}`, `{"device_id":"d1","value":1,"readings":[{"v":1.5}]}`}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 200 {
				ev := events[(g+i)%len(events)]
				v, _ := DecodeJSON([]byte(ev))
				err := r.Validate("reading", 1, "", v)
				if (err == nil) != ((g+i)%len(events) == 0) {
					done <- fmt.Errorf("Validate(%s) = %w", ev, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
