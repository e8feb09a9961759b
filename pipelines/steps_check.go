package pipelines

import (
	"context"

	"github.com/eddy-streams/eddy/processor"
)

// require: [path, …] — each path must be present and not null, else the
// event is dead-lettered with reason "invalid" naming the path.
type requireStep struct {
	paths []Path
}

func newRequire(cfg StepConfig) (Step, error) {
	var paths []Path
	if err := cfg.Decode(&paths); err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, cfg.Errorf("", "want a list of at least one path")
	}
	return &requireStep{paths: paths}, nil
}

func (s *requireStep) Process(_ context.Context, ev *Event) (bool, error) {
	for _, p := range s.paths {
		if _, ok := ev.Get(p); !ok {
			return false, processor.Permanentf(processor.ReasonInvalid, "%s is missing", p)
		}
	}
	return true, nil
}

// validate: <bool expression> — false dead-letters the event with reason
// "invalid" and the expression's text.
type validateStep struct {
	cond *Cond
}

func newValidate(cfg StepConfig) (Step, error) {
	var c Cond
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	return &validateStep{cond: &c}, nil
}

func (s *validateStep) Process(_ context.Context, ev *Event) (bool, error) {
	ok, err := s.cond.Test(ev)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, processor.Permanentf(processor.ReasonInvalid, "%s is false", s.cond)
	}
	return true, nil
}

// filter: <bool expression> — false drops the event: the chain stops and
// the event is acked as processed with the effects recorded before it.
type filterStep struct {
	cond *Cond
}

func newFilter(cfg StepConfig) (Step, error) {
	var c Cond
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	return &filterStep{cond: &c}, nil
}

func (s *filterStep) Process(_ context.Context, ev *Event) (bool, error) {
	return s.cond.Test(ev)
}

var (
	_ Step = (*requireStep)(nil)
	_ Step = (*validateStep)(nil)
	_ Step = (*filterStep)(nil)
)
