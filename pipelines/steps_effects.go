package pipelines

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// output: {stream, max_len} — emits the event to stream with the fields
// "key" (the message key), "id" (the dedupe id, or the entry id without
// dedupe) and "data" (the payload as JSON: as it arrived, unless a step
// changed it).
type outputStep struct {
	stream    string
	maxLen    int64
	retention *Retention
}

type outputConfig struct {
	Stream    string     `yaml:"stream"`
	MaxLen    int64      `yaml:"max_len"`
	Retention *Retention `yaml:"retention"`
}

func newOutput(cfg StepConfig) (Step, error) {
	var c outputConfig
	errs := []error{cfg.Decode(&c)} // checked on below even if it failed, to report everything
	if c.Stream == "" {
		errs = append(errs, cfg.Errorf("stream", "required"))
	}
	if c.MaxLen < 0 {
		errs = append(errs, cfg.Errorf("max_len", "must be at least 0 (0 means no cap)"))
	}
	errs = append(errs, retentionErrors(cfg, "retention", c.Retention)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &outputStep{stream: c.Stream, maxLen: c.MaxLen, retention: c.Retention}, nil
}

// capped names the output stream and its MAXLEN ~ cap.
func (s *outputStep) capped() (string, int64, string) { return s.stream, s.maxLen, "max_len" }

// retained puts the output stream under its retention.
func (s *outputStep) retained() []processor.Retained {
	return []processor.Retained{{Stream: s.stream, Retention: s.retention.Engine()}}
}

func (s *outputStep) Process(_ context.Context, ev *Event) (bool, error) {
	data, err := ev.payloadJSON()
	if err != nil { // a NaN or Inf set by map
		return false, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("encoding the payload: %w", err))
	}
	m := ev.Message()
	id := m.DedupeID
	if id == "" {
		id = m.ID
	}
	m.Emit(s.stream, s.maxLen, "key", m.Key, "id", id, "data", data)
	return true, nil
}

// state: the key's own state, or a read model for others to read.
//
//	state: {name, fields, incr, distinct, ttl} — keyed state: the hash
//	  "name" of the message key, kept by the partition's owner and written
//	  in the same atomic commit as the ack. Later steps' (and later
//	  events') expressions read it as state.<name>.<field>.
//	state: {hash, fields, incr} — a read model: the hash named by hash,
//	  where "$key" stands for the message key, written with the ack
//	  (at least once on Redis Cluster when it is in another slot).
//
// fields sets each field to its expression's result (nil: left as it is);
// incr adds each expression's result, an integer (HINCRBY) or a number
// (HINCRBYFLOAT); distinct adds each result to a HyperLogLog of the key
// named "<name>.<field>" (keyed state only); ttl gives the keyed state a
// time to live, renewed by every event that writes it.
type stateStep struct {
	name     string   // keyed state name, or ""
	hash     []string // the read model's name split around "$key"
	fields   exprFields
	incr     exprFields
	distinct exprFields
	ttl      time.Duration
}

type stateConfig struct {
	Name     string        `yaml:"name"`
	Hash     string        `yaml:"hash"`
	Fields   exprFields    `yaml:"fields"`
	Incr     exprFields    `yaml:"incr"`
	Distinct exprFields    `yaml:"distinct"`
	TTL      time.Duration `yaml:"ttl"`
}

// keyPlaceholder stands for the message key in a read model's hash name.
// (Braces would clash with Redis Cluster hash tags.)
const keyPlaceholder = "$key"

var stateNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func newState(cfg StepConfig) (Step, error) {
	var c stateConfig
	errs := []error{cfg.Decode(&c)} // checked on below even if it failed, to report everything
	switch {
	case c.Name == "" && c.Hash == "":
		errs = append(errs, cfg.Errorf("", "want name (the key's own state) or hash (a read model)"))
	case c.Name != "" && c.Hash != "":
		errs = append(errs, cfg.Errorf("hash", "set name or hash, not both"))
	case c.Name != "" && !stateNameRE.MatchString(c.Name):
		errs = append(errs, cfg.Errorf("name", "%q must match %s", c.Name, stateNameRE))
	case strings.Contains(c.Hash, "{key}"):
		errs = append(errs, cfg.Errorf("hash", "%q: write %s for the key; braces are Redis Cluster hash tags", c.Hash, keyPlaceholder))
	case strings.ContainsAny(c.Hash, "{}"):
		errs = append(errs, cfg.Errorf("hash", "must not contain braces (Redis Cluster hash tags), got %q", c.Hash))
	}
	if len(c.Fields)+len(c.Incr)+len(c.Distinct) == 0 && !cfg.Has("fields") {
		errs = append(errs, cfg.Errorf("fields", "required (or incr, or distinct)"))
	}
	if c.Hash != "" && len(c.Distinct) > 0 {
		errs = append(errs, cfg.Errorf("distinct", "needs name: a read model has no distinct counts"))
	}
	if c.Hash != "" && cfg.Has("ttl") {
		errs = append(errs, cfg.Errorf("ttl", "needs name"))
	}
	if cfg.Has("ttl") && c.TTL < time.Millisecond {
		errs = append(errs, cfg.Errorf("ttl", "must be at least 1ms"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &stateStep{name: c.Name, hash: strings.Split(c.Hash, keyPlaceholder), fields: c.Fields,
		incr: c.Incr, distinct: c.Distinct, ttl: c.TTL}, nil
}

// stateName is the keyed state the step keeps, "" for a read model.
func (s *stateStep) stateName() string { return s.name }

func (s *stateStep) readsPayload() bool {
	for _, fs := range []exprFields{s.fields, s.incr, s.distinct} {
		for _, f := range fs {
			if !f.expr.lean || f.expr.usesState && s.name == "" {
				return true
			}
		}
	}
	return false
}

func (s *stateStep) Process(_ context.Context, ev *Event) (bool, error) {
	m := ev.Message()
	pairs := make([]string, 0, 2*len(s.fields))
	for _, f := range s.fields {
		v, err := f.expr.Eval(ev)
		if err != nil {
			return false, fmt.Errorf("%s: %w", f.name, err)
		}
		if v == nil {
			continue
		}
		pairs = append(pairs, f.name, formatValue(v))
	}
	hash := ev.readModel + strings.Join(s.hash, m.Key)
	if len(pairs) > 0 {
		if s.name != "" {
			m.StateSet(s.name, pairs...)
		} else {
			m.SetState(hash, pairs...)
		}
	}
	for _, f := range s.incr {
		v, err := f.expr.Eval(ev)
		if err != nil {
			return false, fmt.Errorf("incr.%s: %w", f.name, err)
		}
		e, err := incrEffect(f.name, v)
		if err != nil {
			return false, processor.Permanentf(processor.ReasonInvalid, "incr.%s: %v", f.name, err)
		}
		if e.Kind == 0 {
			continue
		}
		if s.name != "" {
			x, _ := strconv.ParseFloat(e.Fields[1], 64)
			m.StateIncrFloat(s.name, f.name, x)
		} else {
			e.Key = hash
			m.Record(e)
		}
	}
	for _, f := range s.distinct {
		v, err := f.expr.Eval(ev)
		if err != nil {
			return false, fmt.Errorf("distinct.%s: %w", f.name, err)
		}
		if v != nil {
			m.AddDistinct(s.name+"."+f.name, formatValue(v))
		}
	}
	if s.ttl > 0 {
		m.StateExpire(s.name, s.ttl)
		for _, f := range s.distinct {
			m.DistinctExpire(s.name+"."+f.name, s.ttl)
		}
	}
	if s.name != "" {
		ev.refreshState()
	}
	return true, nil
}

// incrEffect is the increment of field by v, always HINCRBYFLOAT: a field
// that one event adds 9.99 to and the next 10 would refuse a HINCRBY once
// it holds a fraction. Redis writes an integral sum as an integer, exact
// up to 2^64 in its long double; Kind 0 for nil (nothing to add).
func incrEffect(field string, v any) (processor.Effect, error) {
	var f float64
	switch n := v.(type) {
	case nil:
		return processor.Effect{}, nil
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case float64:
		f = n
	default:
		return processor.Effect{}, fmt.Errorf("want a number, got %T %v", v, v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return processor.Effect{}, fmt.Errorf("%v is not a finite number", f)
	}
	return processor.Effect{Kind: processor.EffectHIncrByFloat, Fields: []string{field, strconv.FormatFloat(f, 'f', -1, 64)}}, nil
}

var (
	_ Step = (*outputStep)(nil)
	_ Step = (*stateStep)(nil)
)
