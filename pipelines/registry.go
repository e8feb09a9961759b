package pipelines

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// Step is one stage of a pipeline. Process is called once per attempt of
// each event, by at most one goroutine per key at a time, but by many
// goroutines at once for different keys: a Step must be safe for
// concurrent use.
//
// Process returns keep=true to pass the event to the next step, keep=false
// to stop the chain and finish the event as processed (its effects so far
// are committed), or an error: an ordinary error is retried, one made with
// processor.Permanent dead-letters the event (see package processor for the
// delivery contract). Effects go through ev.Message() (Emit, SetState) so
// that they are committed with the entry's ack and discarded on retry.
type Step interface {
	Process(ctx context.Context, ev *Event) (keep bool, err error)
}

// StepFunc adapts a function to Step.
type StepFunc func(ctx context.Context, ev *Event) (bool, error)

// Process calls f(ctx, ev).
func (f StepFunc) Process(ctx context.Context, ev *Event) (bool, error) { return f(ctx, ev) }

// StepFactory builds a Step from its config at load time. It decodes the
// config with cfg.Decode and reports problems with cfg.Errorf (or
// errors.Join of several); any other error is reported at the step's line.
type StepFactory func(cfg StepConfig) (Step, error)

// StepConfig is one item of a pipeline's "steps" list: a one-key mapping
// {<type>: <config>}.
type StepConfig struct {
	// Type is the step type, the mapping's key, e.g. "map".
	Type string
	// Path names the config node, e.g. "pipelines[0].steps[3].map".
	Path string
	// Line is the line of the step in the file.
	Line int

	node    *yaml.Node
	c       *checker
	schemas *schema.Registry // the file's "schemas" list, compiled
}

// Schemas returns the file's registered JSON Schemas (its "schemas" list),
// for a step that validates against them; empty, never nil, when the
// file has none.
func (s StepConfig) Schemas() *schema.Registry {
	if s.schemas == nil {
		return schema.NewRegistry()
	}
	return s.schemas
}

// Decode decodes the step's config into v, a non-nil pointer, strictly:
// unknown keys, wrong types and bad durations are errors, all returned at
// once as a *ConfigError with paths and lines. Struct fields are matched by
// their `yaml:"name"` tag (or lower-cased name); fields of type Expr, Cond
// and Path are compiled or parsed as they are decoded.
func (s StepConfig) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("pipelines: StepConfig.Decode needs a non-nil pointer, got %T", v)
	}
	sub := &checker{file: s.file(), lines: s.lines()}
	if s.node != nil {
		sub.decode(s.node, s.Path, rv.Elem())
	}
	return sub.err()
}

// Errorf returns a *ConfigError with one problem at the config's field
// (a path relative to the step config such as "fields.last_ts", or "" for
// the step config itself), on that field's line.
func (s StepConfig) Errorf(field, format string, args ...any) error {
	sub := &checker{file: s.file(), lines: s.lines()}
	sub.addf(joinPath(s.Path, field), format, args...)
	return sub.err()
}

// Has reports whether field (relative, as in Errorf) is present in the file.
func (s StepConfig) Has(field string) bool {
	_, ok := s.lines()[joinPath(s.Path, field)]
	return ok
}

func (s StepConfig) file() string {
	if s.c == nil {
		return ""
	}
	return s.c.file
}

func (s StepConfig) lines() map[string]int {
	if s.c == nil {
		return map[string]int{s.Path: s.Line}
	}
	return s.c.lines
}

// decodeNode reads the one-key mapping {<type>: <config>}.
func (s *StepConfig) decodeNode(c *checker, n *yaml.Node, path string) {
	s.c, s.Path, s.Line = c, path, n.Line
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode {
		c.addAt(n.Line, path, "want a one-key mapping {<step type>: <config>}, got %s", stepShape(n))
		return
	}
	k := n.Content[0]
	s.Type, s.node, s.Line = k.Value, n.Content[1], k.Line
	s.Path = joinPath(path, k.Value)
	c.lines[s.Path] = k.Line
}

func stepShape(n *yaml.Node) string {
	if n.Kind == yaml.MappingNode {
		return fmt.Sprintf("a mapping with %d keys", len(n.Content)/2)
	}
	return kindName(n)
}

// Registry holds the step types a config may use. Register every custom
// step before Load; a Registry is not safe for concurrent Register calls.
type Registry struct {
	factories map[string]StepFactory
}

var stepNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// NewRegistry returns a registry with the built-in steps: require,
// validate, filter, map, output, state, fault and schema, and the
// analytics steps window, session, funnel, threshold and absence, and the
// saga step.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]StepFactory{
		"require":  newRequire,
		"validate": newValidate,
		"filter":   newFilter,
		"map":      newMap,
		"output":   newOutput,
		"state":    newState,
		"fault":    newFault,
		"schema":   newSchemaStep,

		"window":    newWindow,
		"session":   newSession,
		"funnel":    newFunnel,
		"threshold": newThreshold,
		"absence":   newAbsence,
		"saga":      newSaga,
	}}
}

// ErrDuplicateStep is returned by Register for a name already registered.
var ErrDuplicateStep = errors.New("pipelines: step type already registered")

// Register adds a step type. name must match ^[a-z][a-z0-9_]*$ and not be
// registered yet (ErrDuplicateStep).
func (r *Registry) Register(name string, f StepFactory) error {
	if !stepNameRE.MatchString(name) {
		return fmt.Errorf("pipelines: step type %q: want a name matching %s", name, stepNameRE)
	}
	if f == nil {
		return fmt.Errorf("pipelines: step type %q: nil factory", name)
	}
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateStep, name)
	}
	r.factories[name] = f
	return nil
}

// Names returns the registered step types, sorted.
func (r *Registry) Names() []string { return sortedKeys(r.factories) }

// build runs the factory of every step of p, recording problems in c.
func (r *Registry) build(c *checker, p *Pipeline) {
	for i, sc := range p.Steps {
		if sc.Type == "" { // not a one-key mapping: already reported
			continue
		}
		f, ok := r.factories[sc.Type]
		if !ok {
			c.addAt(sc.Line, parentPath(sc.Path), "unknown step type %q (registered: %s)", sc.Type, strings.Join(r.Names(), ", "))
			continue
		}
		s, err := f(sc)
		if err != nil {
			c.absorb(sc.Path, err)
			continue
		}
		if s == nil {
			c.addAt(sc.Line, sc.Path, "step factory returned no step")
			continue
		}
		if st, ok := s.(interface{ stateName() string }); ok && st.stateName() != "" {
			if p.Ordering == processor.OrderingNone {
				c.addAt(sc.Line, sc.Path+".name", "keyed state needs ordering %q (one writer per key), not %q", processor.OrderingKey, p.Ordering)
			}
			if p.WrongPartition == processor.WrongPartitionProcess {
				c.addAt(sc.Line, sc.Path+".name", "keyed state needs wrong_partition %q: an entry read from another partition than its key's would keep a second copy of its state", processor.WrongPartitionDeadLetter)
			}
		}
		if as, ok := s.(analyticStep); ok {
			a := as.base()
			for _, b := range p.steps {
				if ob, ok := b.step.(interface{ stateName() string }); ok && ob.stateName() == a.name {
					c.addAt(lineOf(c, sc, "name"), sc.Path+".name", "%q is the state name of steps[%d] too: each analytics step needs a name of its own", a.name, b.index)
				}
			}
			a.bind(c, sc, p)
			// A step that checks itself against the steps before it (the
			// window step: the types a schema step gives its fields).
			if pb, ok := s.(interface {
				bindPipeline(*checker, StepConfig, *Pipeline)
			}); ok {
				pb.bindPipeline(c, sc, p)
			}
		}
		p.steps = append(p.steps, boundStep{index: i, typ: sc.Type, step: s})
	}
}
