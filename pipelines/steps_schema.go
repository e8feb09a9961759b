package pipelines

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// Defaults of the schema step.
const (
	// DefaultSchemaVersionField is schema.version_field when left out.
	DefaultSchemaVersionField = "schema_version"
	// DefaultSchemaVersion is schema.default_version when left out: the
	// version of an event without a version field.
	DefaultSchemaVersion = 1
)

// ReasonSchema is the dead-letter reason of an event that does not
// conform to its JSON Schema.
const ReasonSchema = "schema"

// schema: {type, version_field, default_version} — validates the event
// against the registered JSON Schema of type at the version the event's
// version_field names (default_version when the field is absent or
// null). A violation dead-letters the event with reason "schema", naming
// the JSON pointer and the rule; so does a version field that is not an
// integer >= 1, or a version with no registered schema.
type schemaStep struct {
	typ   string
	field Path
	def   int
	reg   *schema.Registry
}

type schemaStepConfig struct {
	Type           string `yaml:"type"`
	VersionField   Path   `yaml:"version_field"`
	DefaultVersion int    `yaml:"default_version"`
}

func newSchemaStep(cfg StepConfig) (Step, error) {
	var sc schemaStepConfig
	if err := cfg.Decode(&sc); err != nil {
		return nil, err
	}
	reg := cfg.Schemas()
	s := &schemaStep{typ: sc.Type, field: sc.VersionField, def: sc.DefaultVersion, reg: reg}
	if !cfg.Has("version_field") {
		s.field = fieldPath(DefaultSchemaVersionField)
	}
	if !cfg.Has("default_version") {
		s.def = DefaultSchemaVersion
	}
	var errs []error
	switch {
	case sc.Type == "":
		errs = append(errs, cfg.Errorf("type", "required: an event type of the file's schemas list"))
	case len(reg.Versions(sc.Type)) == 0:
		errs = append(errs, cfg.Errorf("type", "no schema registered for type %q in schemas (registered types: %s)", sc.Type, listOrNone(reg.Types())))
	case s.def < 1:
		errs = append(errs, cfg.Errorf("default_version", "must be at least 1"))
	case reg.Lookup(sc.Type, s.def) == nil:
		def := ""
		if !cfg.Has("default_version") {
			def = " (the default)"
		}
		errs = append(errs, cfg.Errorf("default_version", "%d%s has no schema registered for type %q (registered versions: %s)", s.def, def, sc.Type, versionList(reg.Versions(sc.Type))))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// checkSchemaSteps reports schema steps in pipelines whose events are not
// JSON objects: with entry fields every value is a string, which a schema
// would see otherwise than the producer wrote it.
func checkSchemaSteps(c *checker, f *File) {
	for _, p := range f.Pipelines {
		if p == nil || p.Input.Payload != "" {
			continue
		}
		for _, sc := range p.Steps {
			if sc.Type == "schema" {
				c.addAt(sc.Line, sc.Path, "needs input.payload (events as JSON objects): with entry fields every value is a string, so a schema would not see the JSON the producer sent")
			}
		}
	}
}

func (s *schemaStep) Process(_ context.Context, ev *Event) (bool, error) {
	var v any
	if !ev.owned && ev.payload != nil {
		// As the handler decoded it: JSON values only (strings, bools,
		// int64, float64, json.Number, maps and slices of them).
		v = ev.payload
	} else {
		raw, err := ev.payloadJSON() // changed by a step: as it would be written
		if err != nil {
			return false, processor.Permanent(ReasonSchema, schema.NotJSON(err))
		}
		if v, err = schema.DecodeJSON([]byte(raw)); err != nil {
			return false, processor.Permanent(ReasonSchema, schema.NotJSON(err))
		}
	}
	if err := s.check(v); err != nil {
		return false, processor.Permanent(ReasonSchema, err)
	}
	return true, nil
}

// check validates v, a decoded event, at its version. It returns nil or a
// *schema.ValidationError.
func (s *schemaStep) check(v any) error {
	version, ptr := s.def, ""
	if obj, ok := v.(map[string]any); ok {
		raw, at, found := s.lookupVersion(obj)
		if found && raw != nil {
			ptr = at
			n, ok := schema.Version(raw)
			if !ok {
				return schema.VersionError(ptr, fmt.Sprintf("version field %q is %s, want an integer from 1 to %d", s.field, describeValue(raw), schema.MaxVersion))
			}
			version = n
		}
	}
	return s.reg.Validate(s.typ, version, ptr, v)
}

// lookupVersion finds the version field in obj, as Path.Lookup does, and
// returns its JSON pointer too.
func (s *schemaStep) lookupVersion(obj map[string]any) (v any, ptr string, found bool) {
	p := s.field
	if len(p.parts) > 1 {
		if v, ok := obj[p.text]; ok {
			return v, jsonPointer([]string{p.text}), true
		}
	}
	v, found = p.Lookup(obj)
	return v, jsonPointer(p.parts), found
}

// jsonPointer formats tokens as an RFC 6901 pointer.
func jsonPointer(tokens []string) string {
	var b strings.Builder
	esc := strings.NewReplacer("~", "~0", "/", "~1")
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(esc.Replace(t))
	}
	return b.String()
}

// describeValue names a JSON value for messages: its kind, and the value
// itself when short.
func describeValue(v any) string {
	switch t := v.(type) {
	case string:
		if len(t) > 20 {
			t = t[:20] + "…"
		}
		return "the string " + strconv.Quote(t)
	case map[string]any:
		return "an object"
	}
	if s, ok := scalarString(v); ok && len(s) <= 24 {
		return s
	}
	return jsonKind(v)
}

// CheckSchema validates one event, a JSON object as it arrives, against
// the pipeline's schema steps, in order, as they would see it if no step
// before them changed it: ingest calls it to refuse a violation at the
// door. It returns nil when the pipeline has no schema step or the event
// conforms; otherwise an error that errors.As finds a
// *schema.ValidationError in (Pointer, Rule and Message of the failure;
// Rule is schema.RuleJSON for bytes that are not JSON, schema.RuleVersion
// for an unusable version field).
func (p *Pipeline) CheckSchema(event []byte) error {
	var steps []*schemaStep
	for _, b := range p.steps {
		if s, ok := b.step.(*schemaStep); ok {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return nil
	}
	v, err := schema.DecodeJSON(event)
	if err != nil {
		return schema.NotJSON(err)
	}
	for _, s := range steps {
		if err := s.check(v); err != nil {
			return err
		}
	}
	return nil
}

// HasSchema reports whether the pipeline has a schema step, that is
// whether CheckSchema can refuse anything.
func (p *Pipeline) HasSchema() bool {
	for _, b := range p.steps {
		if _, ok := b.step.(*schemaStep); ok {
			return true
		}
	}
	return false
}

// SchemaTypes lists the event types the pipeline's schema steps validate,
// in step order, each once.
func (p *Pipeline) SchemaTypes() []string {
	var out []string
	for _, b := range p.steps {
		if s, ok := b.step.(*schemaStep); ok && !slices.Contains(out, s.typ) {
			out = append(out, s.typ)
		}
	}
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func versionList(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return listOrNone(s)
}

var _ Step = (*schemaStep)(nil)
