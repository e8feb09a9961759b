package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/eddy-streams/eddy/processor"
)

// output: {stream, max_len} — emits the event to stream with the fields
// "key" (the message key), "id" (the dedupe id, or the entry id without
// dedupe) and "data" (the payload as JSON: as it arrived, unless a step
// changed it).
type outputStep struct {
	stream string
	maxLen int64
}

type outputConfig struct {
	Stream string `yaml:"stream"`
	MaxLen int64  `yaml:"max_len"`
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
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &outputStep{stream: c.Stream, maxLen: c.MaxLen}, nil
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

// state: {hash, fields: {field: expression, …}} — sets fields of the hash
// (with "{key}" replaced by the message key) to the expressions' results.
// A nil result (an absent field) leaves that hash field as it is.
type stateStep struct {
	hash   []string // the hash name split around "{key}"
	fields exprFields
}

type stateConfig struct {
	Hash   string     `yaml:"hash"`
	Fields exprFields `yaml:"fields"`
}

const keyPlaceholder = "{key}"

func newState(cfg StepConfig) (Step, error) {
	var c stateConfig
	errs := []error{cfg.Decode(&c)} // checked on below even if it failed, to report everything
	switch rest := strings.ReplaceAll(c.Hash, keyPlaceholder, ""); {
	case c.Hash == "":
		errs = append(errs, cfg.Errorf("hash", "required"))
	case strings.ContainsAny(rest, "{}"):
		errs = append(errs, cfg.Errorf("hash", "only %s may stand in braces, got %q", keyPlaceholder, c.Hash))
	}
	if len(c.Fields) == 0 && !cfg.Has("fields") {
		errs = append(errs, cfg.Errorf("fields", "required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &stateStep{hash: strings.Split(c.Hash, keyPlaceholder), fields: c.Fields}, nil
}

func (s *stateStep) Process(_ context.Context, ev *Event) (bool, error) {
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
	if len(pairs) > 0 {
		m := ev.Message()
		m.SetState(strings.Join(s.hash, m.Key), pairs...)
	}
	return true, nil
}

var (
	_ Step = (*outputStep)(nil)
	_ Step = (*stateStep)(nil)
)
