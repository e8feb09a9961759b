package pipelines

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/simulate"
)

// Two versions of a reading: v2 makes value an integer and adds an
// optional unit.
const (
	readingV1 = `{
  "type": "object",
  "required": ["device_id", "value"],
  "properties": {
    "device_id": {"type": "string"},
    "value": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "schema_version": {"enum": [1, null]}
  }
}`
	readingV2 = `{
  "type": "object",
  "required": ["device_id", "value"],
  "properties": {
    "device_id": {"type": "string"},
    "value": {"type": "integer", "minimum": 0},
    "unit": {"enum": ["celsius", "percent"]},
    "schema_version": {"const": 2}
  }
}`
)

// writeFiles writes name → content under a new directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// schemaConfig is a file with the two reading schemas and one pipeline
// whose steps are steps (YAML list items indented by six spaces).
func schemaConfig(steps string) string {
	return `schemas:
  - {type: reading, version: 1, file: schemas/reading.v1.json}
  - {type: reading, version: 2, file: schemas/reading.v2.json}
pipelines:
  - name: p
    input: {stream: s, payload: data}
    key: device_id
    steps:
` + steps
}

// loadSchemaPipeline loads schemaConfig(steps) from a directory that holds
// the schema files, failing the test on any problem.
func loadSchemaPipeline(t testing.TB, steps string) *Pipeline {
	t.Helper()
	dir := writeFiles(t, map[string]string{
		"eddy.yaml":               schemaConfig(steps),
		"schemas/reading.v1.json": readingV1,
		"schemas/reading.v2.json": readingV2,
	})
	f, err := Load(filepath.Join(dir, "eddy.yaml"), nil)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	return f.Pipelines[0]
}

func TestSchemaStep(t *testing.T) {
	p := loadSchemaPipeline(t, "      - schema: {type: reading}\n")
	tests := []struct {
		name, event string
		// pointer and rule of the violation; "" rule: conforms.
		pointer, rule string
		msg           string // in the violation's message
	}{
		{"v1 by default", `{"device_id":"d1","value":21.5}`, "", "", ""},
		{"v1 named", `{"device_id":"d1","value":21.5,"schema_version":1}`, "", "", ""},
		{"null version is the default", `{"device_id":"d1","value":21.5,"schema_version":null}`, "", "", ""},
		{"v2", `{"device_id":"d1","value":21,"unit":"celsius","schema_version":2}`, "", "", ""},
		{"v2 written 2.0", `{"device_id":"d1","value":21,"schema_version":2.0}`, "", "", ""},
		{"wrong type", `{"device_id":"d1","value":"hot"}`, "/value", "type", "want number"},
		{"missing required", `{"device_id":"d1"}`, "/value", "required", `missing property 'value'`},
		{"nested array item", `{"device_id":"d1","value":1,"tags":["a",7]}`, "/tags/1", "type", "want string"},
		{"v2 rules apply to v2", `{"device_id":"d1","value":21.5,"schema_version":2}`, "/value", "type", "want integer"},
		{"v2 enum", `{"device_id":"d1","value":21,"unit":"kelvin","schema_version":2}`, "/unit", "enum", "celsius"},
		{"v2 minimum", `{"device_id":"d1","value":-1,"schema_version":2}`, "/value", "minimum", ""},
		{"unregistered version", `{"device_id":"d1","value":1,"schema_version":3}`, "/schema_version", schema.RuleVersion, "no schema registered for reading version 3 (registered: 1, 2)"},
		{"version as a string", `{"device_id":"d1","value":1,"schema_version":"2"}`, "/schema_version", schema.RuleVersion, `the string "2"`},
		{"version a fraction", `{"device_id":"d1","value":1,"schema_version":2.5}`, "/schema_version", schema.RuleVersion, "2.5"},
		{"version zero", `{"device_id":"d1","value":1,"schema_version":0}`, "/schema_version", schema.RuleVersion, "from 1 to"},
		{"version an object", `{"device_id":"d1","value":1,"schema_version":{}}`, "/schema_version", schema.RuleVersion, "an object"},
		{"huge exponent", `{"device_id":"d1","value":1e999999}`, "/value", schema.RuleJSON, "exponent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := handle(t, p, tt.event)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("Handle(%s) = %v, want nil", tt.event, err)
				}
				if err := p.CheckSchema([]byte(tt.event)); err != nil {
					t.Errorf("CheckSchema(%s) = %v, want nil", tt.event, err)
				}
				return
			}
			if got := outcome(err); got != ReasonSchema {
				t.Fatalf("Handle(%s) = %v (outcome %q), want dead letter %q", tt.event, err, got, ReasonSchema)
			}
			if len(m.Effects()) != 0 {
				t.Errorf("Handle(%s) recorded effects %v, want none", tt.event, m.Effects())
			}
			for _, err := range []error{err, p.CheckSchema([]byte(tt.event))} {
				var ve *schema.ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("error %v (%T) holds no *schema.ValidationError", err, err)
				}
				if ve.Pointer != tt.pointer || ve.Rule != tt.rule || !strings.Contains(ve.Message, tt.msg) {
					t.Errorf("%s: violation = %q %q %q, want pointer %q, rule %q, message with %q", tt.event, ve.Pointer, ve.Rule, ve.Message, tt.pointer, tt.rule, tt.msg)
				}
				// The dead letter's error text names the pointer and the rule.
				if text := err.Error(); !strings.Contains(text, `"`+tt.pointer+`"`) || !strings.Contains(text, tt.rule) {
					t.Errorf("error text %q does not name pointer %q and rule %q", text, tt.pointer, tt.rule)
				}
			}
		})
	}
}

func TestSchemaStepOptions(t *testing.T) {
	p := loadSchemaPipeline(t, "      - schema: {type: reading, version_field: meta.v, default_version: 2}\n")
	for _, tt := range []struct {
		event, pointer, rule string
	}{
		{`{"device_id":"d1","value":21}`, "", ""},                                   // default_version 2: an integer
		{`{"device_id":"d1","value":21.5}`, "/value", "type"},                       // not one under v2
		{`{"device_id":"d1","value":21.5,"meta":{"v":1}}`, "", ""},                  // nested version field
		{`{"device_id":"d1","value":21.5,"meta.v":1}`, "", ""},                      // the dotted name as one field
		{`{"device_id":"d1","value":21.5,"meta":{"v":true}}`, "/meta/v", "version"}, // not an integer
		{`{"device_id":"d1","value":1,"meta":{"v":9}}`, "/meta/v", "version"},       // not registered
	} {
		_, err := handle(t, p, tt.event)
		var ve *schema.ValidationError
		switch {
		case tt.rule == "" && err != nil:
			t.Errorf("Handle(%s) = %v, want nil", tt.event, err)
		case tt.rule == "":
		case !errors.As(err, &ve):
			t.Errorf("Handle(%s) = %v, want a schema violation", tt.event, err)
		case ve.Pointer != tt.pointer || ve.Rule != tt.rule:
			t.Errorf("Handle(%s) = violation at %q rule %q, want %q %q", tt.event, ve.Pointer, ve.Rule, tt.pointer, tt.rule)
		}
	}
}

// A schema step after a map step validates the event as the map left it.
func TestSchemaStepSeesChanges(t *testing.T) {
	p := loadSchemaPipeline(t, "      - map: {value: 'string(value)'}\n      - schema: {type: reading}\n")
	_, err := handle(t, p, `{"device_id":"d1","value":21.5}`)
	var ve *schema.ValidationError
	if !errors.As(err, &ve) || ve.Pointer != "/value" || ve.Rule != "type" {
		t.Fatalf("Handle after map = %v, want a type violation at /value", err)
	}
	var pe *processor.PermanentError
	if !errors.As(err, &pe) || pe.Reason != ReasonSchema {
		t.Fatalf("Handle after map = %v, want permanent with reason %q", err, ReasonSchema)
	}
	// At the door the event is checked as it arrives.
	if err := p.CheckSchema([]byte(`{"device_id":"d1","value":21.5}`)); err != nil {
		t.Errorf("CheckSchema = %v, want nil", err)
	}
}

func TestCheckSchema(t *testing.T) {
	none := jsonPipeline(t, false, "      - require: [user.id]\n")
	for _, ev := range []string{`{"user":{"id":"u1"}}`, `not json`, `[1,2]`} {
		if err := none.CheckSchema([]byte(ev)); err != nil {
			t.Errorf("CheckSchema(%s) without a schema step = %v, want nil", ev, err)
		}
	}
	if none.HasSchema() {
		t.Errorf("HasSchema() = true for a pipeline without a schema step")
	}
	p := loadSchemaPipeline(t, "      - schema: {type: reading}\n")
	if !p.HasSchema() {
		t.Errorf("HasSchema() = false for a pipeline with a schema step")
	}
	for _, tt := range []struct{ event, pointer, rule string }{
		{`{"device_id":"d1","value":1}`, "", ""},
		{`{"device_id":"d1","value":1`, "", schema.RuleJSON},
		{``, "", schema.RuleJSON},
		{`{"device_id":"d1","value":1} {}`, "", schema.RuleJSON},
		{`[{"device_id":"d1","value":1}]`, "", "type"},
		{`{"device_id":7,"value":1}`, "/device_id", "type"},
		{`{"a~b/c":1,"device_id":"d","value":1,"schema_version":{"x":1}}`, "/schema_version", schema.RuleVersion},
	} {
		err := p.CheckSchema([]byte(tt.event))
		var ve *schema.ValidationError
		switch {
		case tt.rule == "" && err != nil:
			t.Errorf("CheckSchema(%s) = %v, want nil", tt.event, err)
		case tt.rule == "":
		case !errors.As(err, &ve):
			t.Errorf("CheckSchema(%s) = %v (%T), want a *schema.ValidationError", tt.event, err, err)
		case ve.Pointer != tt.pointer || ve.Rule != tt.rule:
			t.Errorf("CheckSchema(%s) = %q %q (%v), want pointer %q rule %q", tt.event, ve.Pointer, ve.Rule, err, tt.pointer, tt.rule)
		case ve.JSONPointer() != ve.Pointer:
			t.Errorf("JSONPointer() = %q, want %q", ve.JSONPointer(), ve.Pointer)
		}
	}
}

// Every problem of the schemas list and of schema steps is reported at
// once, each with its path and line.
func TestSchemasConfigProblems(t *testing.T) {
	files := map[string]string{
		"schemas/ok.json":      `{"type":"object"}`,
		"schemas/broken.json":  "{\n  \"type\": \"object\",\n  \"properties\": {,}\n}",
		"schemas/invalid.json": `{"type": 5, "properties": {"a": {"minimum": "x"}}}`,
		"schemas/ref.json":     `{"$ref": "other.json"}`,
		"schemas/empty.json":   ``,
		"schemas/dir/x.json":   `{}`,
	}
	src := `schemas:
  - {type: reading, version: 1, file: schemas/ok.json}
  - {type: reading, version: 1, file: schemas/ok.json}
  - {type: reading, version: 0, file: schemas/ok.json}
  - {type: reading, file: schemas/ok.json}
  - {version: 3, file: schemas/ok.json}
  - {type: "bad type", version: 4, file: schemas/ok.json}
  - {type: reading, version: 5, file: schemas/missing.json}
  - {type: reading, version: 6, file: schemas/broken.json}
  - {type: reading, version: 7, file: schemas/invalid.json}
  - {type: reading, version: 8, file: schemas/ref.json}
  - {type: reading, version: 9, file: schemas/empty.json}
  - {type: reading, version: 10, file: schemas/dir}
  - {type: reading, version: 11}
  - {type: reading, version: "2", file: schemas/ok.json}
  - {type: reading, version: 12, file: schemas/ok.json, extra: 1}
pipelines:
  - name: p
    input: {stream: s, payload: data}
    key: k
    steps:
      - schema: {type: nosuch}
      - schema: {version_field: v}
      - schema: {type: reading, default_version: 99}
      - schema: {type: reading, default_version: 0}
      - schema: {type: reading, versionfield: v}
      - schema: {type: reading, version_field: "a..b"}
      - schema: reading
  - name: q
    input: {stream: s2}
    key: k
    steps:
      - schema: {type: reading}
  - name: r
    input: {stream: s3, payload: data}
    key: k
    steps:
      - schema: {type: other}
`
	dir := writeFiles(t, files)
	cfg := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(cfg, nil)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Load = %v, want a *ConfigError", err)
	}
	want := []string{
		`:3: schemas[1].version: duplicate schema reading version 1 (first at line 2)`,
		`:4: schemas[2].version: must be at least 1`,
		`:5: schemas[3].version: required`,
		`:6: schemas[4].type: required`,
		`:7: schemas[5].type: "bad type" must match`,
		`:8: schemas[6].file: cannot read ` + filepath.Join(dir, "schemas/missing.json") + `: no such file or directory`,
		`:9: schemas[7].file: ` + filepath.Join(dir, "schemas/broken.json") + `: not valid JSON: line 3, column 18: invalid character ',' looking for beginning of object key string`,
		`:10: schemas[8].file: ` + filepath.Join(dir, "schemas/invalid.json") + `: not a valid JSON Schema: at "/properties/a/minimum": got string, want number; at "/type"`,
		`:11: schemas[9].file: ` + filepath.Join(dir, "schemas/ref.json") + `: failing loading "file://` + filepath.ToSlash(filepath.Join(dir, "schemas/other.json")) + `"`,
		`:12: schemas[10].file: ` + filepath.Join(dir, "schemas/empty.json") + `: not valid JSON: empty input`,
		`:13: schemas[11].file: ` + filepath.Join(dir, "schemas/dir") + ` is a directory`,
		`:14: schemas[12].file: required`,
		`:15: schemas[13].version: want an integer, got "2"`,
		`:16: schemas[14].extra: unknown key (want one of: file, type, version)`,
		`:22: pipelines[0].steps[0].schema.type: no schema registered for type "nosuch" in schemas (registered types: reading)`,
		`:23: pipelines[0].steps[1].schema.type: required`,
		`:24: pipelines[0].steps[2].schema.default_version: 99 has no schema registered for type "reading" (registered versions: 1, 12)`,
		`:25: pipelines[0].steps[3].schema.default_version: must be at least 1`,
		`:26: pipelines[0].steps[4].schema.versionfield: unknown key (want one of: default_version, type, version_field)`,
		`:27: pipelines[0].steps[5].schema.version_field: path "a..b" has an empty segment`,
		`:28: pipelines[0].steps[6].schema: want a mapping, got "reading"`,
		`:33: pipelines[1].steps[0].schema: needs input.payload`,
		`:38: pipelines[2].steps[0].schema.type: no schema registered for type "other"`,
	}
	got := ce.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("problems do not contain %q", w)
		}
	}
	if n := len(ce.Problems); n != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", n, len(want), got)
	}
}

// A default_version left out is 1; the message says it is the default.
func TestSchemaStepDefaultVersionMissing(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"eddy.yaml": `schemas:
  - {type: reading, version: 2, file: r2.json}
pipelines:
  - name: p
    input: {stream: s, payload: data}
    key: k
    steps:
      - schema: {type: reading}
`,
		"r2.json": `{}`,
	})
	_, err := Load(filepath.Join(dir, "eddy.yaml"), nil)
	want := `eddy.yaml:8: pipelines[0].steps[0].schema.default_version: 1 (the default) has no schema registered for type "reading" (registered versions: 2)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load = %v, want a problem %q", err, want)
	}
}

// The schema step's defaults are the documented ones.
func TestSchemaStepDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n### schema\n")
	if !ok {
		t.Fatal("docs/configuration.md has no ### schema section")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	for _, w := range []string{
		"`version_field`", "`" + DefaultSchemaVersionField + "`",
		"`default_version`", "`" + string(rune('0'+DefaultSchemaVersion)) + "`",
		"`" + ReasonSchema + "`", "input.payload",
	} {
		if !strings.Contains(section, w) {
			t.Errorf("docs/configuration.md ### schema does not mention %s", w)
		}
	}
}

// configs/iot.yaml validates readings with configs/schemas/reading.v1.json:
// the simulator's readings and the README's MQTT reading pass, and the
// violations docs/schemas.md shows are the ones a worker writes.
func TestIoTConfigSchema(t *testing.T) {
	f, err := Load("../configs/iot.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := f.Pipeline("iot")
	withoutAnalytics(p)
	if got := p.SchemaTypes(); len(got) != 1 || got[0] != "reading" {
		t.Fatalf("iot SchemaTypes() = %v, want [reading]", got)
	}
	g := simulate.NewIoT(simulate.Options{Seed: 7, Keys: 50, Duplicates: 0.1})
	for i := range 2000 {
		ev, _ := g.Next()
		if _, err := handle(t, p, string(ev)); err != nil {
			t.Fatalf("simulated reading %d %s: %v", i, ev, err)
		}
	}
	// The README's mosquitto_pub payload, with device_id and sensor from
	// the topic sensors/d42/temperature.
	readme := `{"device_id":"d42","sensor":"temperature","reading_id":"r-1","value":21.5,"unit":"C","ts":1700000000000}`
	if _, err := handle(t, p, readme); err != nil {
		t.Errorf("the README's reading: %v", err)
	}

	doc, err := os.ReadFile("../docs/schemas.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(doc), "## What a violation says")
	_, block, _ = strings.Cut(block, "```text\n")
	block, _, _ = strings.Cut(block, "```")
	lines := strings.Split(strings.TrimSpace(block), "\n")
	events := []string{
		`{"device_id":"d1","sensor":"humidity","reading_id":"r","value":"hot","ts":1}`,
		`{"device_id":"d1","sensor":"humidity","reading_id":"r","value":1,"ts":1,"battery":140}`,
		`{"device_id":"d1","reading_id":"r","value":1,"ts":1}`,
		`{"device_id":"d1","sensor":"humidity","reading_id":"r","value":1,"ts":1,"colour":"red"}`,
	}
	if len(lines) != len(events) {
		t.Fatalf("docs/schemas.md shows %d violations, the test has %d events", len(lines), len(events))
	}
	for i, ev := range events {
		_, err := handle(t, p, ev)
		if outcome(err) != ReasonSchema || err.Error() != lines[i] {
			t.Errorf("%s = %v (%s), docs/schemas.md says %q", ev, err, outcome(err), lines[i])
		}
	}

	v1, v2 := f.SchemaRegistry().Lookup("reading", 1), mustSchema(t, "../configs/schemas/reading.v2.json")
	if r := schema.Check(v1, v2); r.Level() != "backward" {
		t.Errorf("Check(reading v1, v2) = %s, want backward (v2 adds an optional field to a closed schema)", r.Summary())
	}
	// v2 is not registered yet: a reading that claims it is refused.
	_, err = handle(t, p, `{"schema_version":2,"firmware":"1.2","device_id":"d1","sensor":"humidity","reading_id":"r","value":1,"ts":1}`)
	var ve *schema.ValidationError
	if !errors.As(err, &ve) || ve.Rule != schema.RuleVersion {
		t.Errorf("a version 2 reading before v2 is registered = %v, want a version violation", err)
	}
}

func mustSchema(t testing.TB, path string) *schema.Schema {
	t.Helper()
	s, err := schema.CompileFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
