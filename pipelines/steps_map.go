package pipelines

import (
	"context"
	"errors"
	"fmt"
)

// map: {field: expression, …} — sets top-level payload fields to the
// expressions' results, in YAML order; each expression sees the fields set
// before it.
type mapStep struct {
	fields exprFields
}

func newMap(cfg StepConfig) (Step, error) {
	var f exprFields
	errs := []error{cfg.Decode(&f)} // checked on below even if it failed, to report everything
	for _, e := range f {
		if reserved(e.name) {
			errs = append(errs, cfg.Errorf(e.name, "%s and %s are reserved for the key and entry id", EnvKey, EnvID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &mapStep{fields: f}, nil
}

func (s *mapStep) Process(_ context.Context, ev *Event) (bool, error) {
	for _, f := range s.fields {
		v, err := f.expr.Eval(ev)
		if err != nil {
			return false, fmt.Errorf("%s: %w", f.name, err)
		}
		ev.Set(f.name, v)
	}
	return true, nil
}

var _ Step = (*mapStep)(nil)
