package pipelines

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/eddy-streams/eddy/processor"
)

// ReasonFaultInjected is the dead-letter reason of the fault step's
// permanent failures.
const ReasonFaultInjected = "fault_injected"

// Errors returned by the fault step.
var (
	ErrInjectedTransient = errors.New("injected transient failure")
	ErrInjectedPermanent = errors.New("injected permanent failure")
)

// fault: {transient, permanent} — a rehearsal step for demos and tests of
// failure handling: it fails a fraction transient of attempts with an
// ordinary (retried) error and a fraction permanent with a permanent one
// (reason "fault_injected"). Never put it in a production pipeline.
type faultStep struct {
	transient, permanent float64
	random               func() float64 // [0, 1); tests replace it
}

type faultConfig struct {
	Transient float64 `yaml:"transient"`
	Permanent float64 `yaml:"permanent"`
}

func newFault(cfg StepConfig) (Step, error) {
	var c faultConfig
	errs := []error{cfg.Decode(&c)} // checked on below even if it failed, to report everything
	okT := c.Transient >= 0 && c.Transient <= 1
	okP := c.Permanent >= 0 && c.Permanent <= 1
	if !okT {
		errs = append(errs, cfg.Errorf("transient", "must be between 0 and 1"))
	}
	if !okP {
		errs = append(errs, cfg.Errorf("permanent", "must be between 0 and 1"))
	}
	if okT && okP && c.Transient+c.Permanent > 1 {
		errs = append(errs, cfg.Errorf("", "transient + permanent must be at most 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &faultStep{transient: c.Transient, permanent: c.Permanent, random: rand.Float64}, nil
}

func (s *faultStep) Process(_ context.Context, _ *Event) (bool, error) {
	r := s.random()
	switch {
	case r < s.permanent:
		return false, processor.Permanent(ReasonFaultInjected, ErrInjectedPermanent)
	case r < s.permanent+s.transient:
		return false, ErrInjectedTransient
	}
	return true, nil
}

var _ Step = (*faultStep)(nil)
