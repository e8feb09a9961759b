package pipelines

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// intField is an integer field of the schema: its YAML path
// ("pipelines[].retry.max_attempts") and its Go type.
type intField struct {
	path string
	typ  reflect.Type
}

// intFields lists every integer field reachable from t, by reflection, so
// that a field added to the schema is tested without anyone listing it.
func intFields(t reflect.Type, prefix string) []intField {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return nil
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return []intField{{prefix, t}}
	case t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[File]().PkgPath():
		return nil
	}
	var out []intField
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "-" || f.Type == reflect.TypeFor[[]StepConfig]() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		out = append(out, intFields(f.Type, joinPath(prefix, tag))...)
	}
	return out
}

// fractionBase is a valid file with one simulate entry and one pipeline,
// into which withValue writes one field.
const fractionBase = `simulate:
  - pipeline: p
    kind: iot
sources:
  mqtt:
    - name: m
      broker: mqtt://127.0.0.1
      topics:
        - filter: t
          pipeline: p
schemas:
  - type: t
    version: 1
    file: testdata/schemas/object.json
pipelines:
  - name: p
    input:
      stream: s
    key: k
`

// withValue returns fractionBase with the field at path ("[]" meaning the
// first item) set to the plain scalar lit (single-quoted when quoted is
// set), and the line it is on.
func withValue(t testing.TB, path, lit string, quoted bool) (src string, line int) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(fractionBase), &doc); err != nil {
		t.Fatal(err)
	}
	n := doc.Content[0]
	parts := strings.Split(path, ".")
	for i, part := range parts {
		name, list := strings.CutSuffix(part, "[]")
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == name {
				next = n.Content[j+1]
			}
		}
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode}
			if i == len(parts)-1 {
				next = &yaml.Node{Kind: yaml.ScalarNode}
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, next)
		}
		if list {
			next = next.Content[0]
		}
		n = next
	}
	*n = yaml.Node{Kind: yaml.ScalarNode, Value: lit}
	if quoted {
		n.Style = yaml.SingleQuotedStyle
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	key := parts[len(parts)-1] + ": "
	for i, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " -"), key) {
			if line != 0 {
				t.Fatalf("key %s is on two lines of\n%s", key, out)
			}
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("key %s not found in\n%s", key, out)
	}
	return string(out), line
}

// valueAt returns the field of f at path, as withValue names it.
func valueAt(f *File, path string) reflect.Value {
	v := reflect.ValueOf(f).Elem()
	for _, part := range strings.Split(path, ".") {
		name, list := strings.CutSuffix(part, "[]")
		v = v.Field(structFields(v.Type())[name])
		if list {
			v = v.Index(0)
		}
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
	}
	return v
}

func TestIntegerFieldsFound(t *testing.T) {
	found := map[string]bool{}
	for _, f := range intFields(reflect.TypeFor[File](), "") {
		found[f.path] = true
	}
	for _, want := range []string{
		"simulate[].keys", "pipelines[].input.partitions", "pipelines[].batch_size", "pipelines[].lanes",
		"pipelines[].max_inflight", "pipelines[].max_event_bytes", "pipelines[].retry.max_attempts",
		"pipelines[].dead_letter.max_len",
	} {
		if !found[want] {
			t.Errorf("intFields(File) = %v, lacks %s", found, want)
		}
	}
}

// below1000 lists the integer fields whose bounds refuse 1000, the value
// TestIntegerFieldsRejectFractions writes in float notation.
var below1000 = map[string]bool{"sources.mqtt[].topics[].qos": true}

// Every integer field rejects a fraction, with its path and line, instead
// of truncating it; an exact integer in float notation is taken.
func TestIntegerFieldsRejectFractions(t *testing.T) {
	rejected := []struct {
		lit    string
		quoted bool
	}{
		{"1.5", false}, {"3.9", false}, {"2.7e0", false}, {"1e-3", false}, {"-0.5", false},
		{"1.0000000000000000001", false}, // float64 rounds it to 1
		{".5", false}, {".inf", false}, {"-.inf", false}, {".nan", false},
		{"true", false}, {"2024-01-02", false}, {"7", true}, {"1.5", true},
	}
	accepted := []string{"1000", "1e3", "1E3", "+1e3", "1.0e3", "1000.0", "1000.", "10000e-1", "1_000", "0x3e8", "0o1750"}
	for _, f := range intFields(reflect.TypeFor[File](), "") {
		want := strings.ReplaceAll(f.path, "[]", "[0]")
		for _, r := range rejected {
			t.Run(fmt.Sprintf("%s=%s", f.path, r.lit), func(t *testing.T) {
				src, line := withValue(t, f.path, r.lit, r.quoted)
				got := problems(t, src, nil)
				w := fmt.Sprintf("test.yaml:%d: %s: want an integer, got %q", line, want, r.lit)
				if len(got) != 1 || got[0] != w {
					t.Errorf("Parse problems = %q, want only %q; source:\n%s", got, w, src)
				}
			})
		}
		for _, lit := range accepted {
			t.Run(fmt.Sprintf("%s=%s", f.path, lit), func(t *testing.T) {
				src, line := withValue(t, f.path, lit, false)
				if below1000[f.path] { // decoded as 1000, then refused by its bounds
					w := fmt.Sprintf("test.yaml:%d: %s: want 0 or 1, got 1000", line, want)
					if got := problems(t, src, nil); len(got) != 1 || !strings.HasPrefix(got[0], w) {
						t.Errorf("Parse problems = %q, want only %q…", got, w)
					}
					return
				}
				file := parse(t, src)
				if v := valueAt(file, f.path); v.Convert(reflect.TypeFor[int64]()).Int() != 1000 {
					t.Errorf("%s: %s = %v, want 1000", f.path, lit, v)
				}
			})
		}
	}
}

func TestIntegerOutOfRange(t *testing.T) {
	const head = "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n"
	const int64Range = "from -9223372036854775808 to 9223372036854775807"
	tests := []struct{ src, want string }{
		{head + "    batch_size: 1e30\n", `test.yaml:5: pipelines[0].batch_size: want an integer ` + int64Range + `, got "1e30"`},
		{head + "    lanes: -1e400\n", `test.yaml:5: pipelines[0].lanes: want an integer, got "-1e400"`}, // beyond float64: a string to YAML
		{head + "    lanes: 1e99999999999999999999\n", `test.yaml:5: pipelines[0].lanes: want an integer, got "1e99999999999999999999"`},
		{head + "    max_inflight: 99999999999999999999\n", `test.yaml:5: pipelines[0].max_inflight: want an integer ` + int64Range + `, got "99999999999999999999"`},
		{head + "    max_inflight: 18446744073709551615\n", `test.yaml:5: pipelines[0].max_inflight: want an integer ` + int64Range + `, got "18446744073709551615"`},
		{head + "    dead_letter: {max_len: 9.3e18}\n", `test.yaml:5: pipelines[0].dead_letter.max_len: want an integer ` + int64Range + `, got "9.3e18"`},
		{head + "    steps:\n      - output: {stream: o, max_len: 2.5}\n", `test.yaml:6: pipelines[0].steps[0].output.max_len: want an integer, got "2.5"`},
		{head + "    steps:\n      - output: {stream: o, max_len: 1e300}\n", `test.yaml:6: pipelines[0].steps[0].output.max_len: want an integer ` + int64Range + `, got "1e300"`},
	}
	for _, tt := range tests {
		if got := problems(t, tt.src, nil); len(got) != 1 || got[0] != tt.want {
			t.Errorf("Parse problems = %q, want only %q", got, tt.want)
		}
	}
	p := parse(t, head+"    steps:\n      - output: {stream: o, max_len: 2.5e6}\n").Pipelines[0]
	if s, ok := p.steps[0].step.(*outputStep); !ok || s.maxLen != 2500000 {
		t.Errorf("output max_len 2.5e6: step %+v, want maxLen 2500000", p.steps[0].step)
	}
}

func TestExactInteger(t *testing.T) {
	tests := []struct {
		lit, want string
		ok        bool
	}{
		{"1e3", "1000", true}, {"-1.5e1", "-15", true}, {"2.50e1", "25", true}, {"0.0", "0", true},
		{"-0.0", "0", true}, {"0e-99999", "0", true}, {"1_0.0", "10", true}, {"007.0", "7", true},
		{"1.5", "", false}, {"0.1e0", "", false}, {"1e-1", "", false}, {"10e-2", "", false},
		{".inf", "", false}, {".nan", "", false}, {"", "", false}, {".", "", false}, {"1e", "", false},
		{"1e50", "1" + strings.Repeat("0", 40), true},
	}
	for _, tt := range tests {
		got, ok := exactInteger(tt.lit)
		if got != tt.want || ok != tt.ok {
			t.Errorf("exactInteger(%q) = %q, %v, want %q, %v", tt.lit, got, ok, tt.want, tt.ok)
		}
	}
}
