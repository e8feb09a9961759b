package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// funnel: ordered steps per key within a time limit, reporting progress,
// completion and drop-off.
//
//	funnel:
//	  name: checkout
//	  output: {stream: clicks:funnels}
//	  steps:
//	    - {name: view, when: 'type == "view"'}
//	    - {name: add_to_cart, when: 'type == "add_to_cart"'}
//	    - {name: purchase, when: 'type == "purchase"'}
//	  within: 30m
//	  order: relaxed
//	  emit: [progress, completed, dropped]
//	  grace: 0s
//	  late: drop
//
// A key has at most one funnel at a time. An event that meets the first
// step's condition while the key has none starts one. Events are taken in
// the key's arrival order; one that meets the next step's condition, at a
// time less than within after the first step and not before the funnel's
// latest step, moves it on (an event before the latest step is ignored by
// the funnel). With order "relaxed" (the default) every other event is
// ignored: events in between do not matter. With order "strict" an event
// that meets the condition of any step other than the next one (the first,
// the one just reached, a later one) ends the funnel as dropped with
// reason "order"; if it meets the first step's condition it then starts a
// new funnel. Events that meet no step's condition are ignored in both.
//
// Results (kind "funnel") have data: status ("progress" when a step other
// than the last is reached, the first included; "completed" when the last
// is; "dropped" when the funnel ends without completing), step ({name,
// index} of the latest step reached, from 0), steps (each step reached:
// name and at, unix ms), started (the first step's time, unix ms) and
// started_iso, duration_ms (from the first to the latest step reached),
// deadline (started + within) and, for dropped, reason: "timeout" or
// "order". A funnel drops with reason "timeout" when the step's time
// reaches deadline + grace, by a timer even if the key receives nothing
// more, or when an event of the key at or after the deadline comes first.
// Ids are "<name>:<key>:<started ms>:<status>", with ":<step index>" for
// progress (two funnels of one key started in the same millisecond share
// their ids). After a funnel completes or drops, the next event that meets
// the first step's condition starts a new one.
//
// In event time an event more than grace behind the partition's watermark
// is late (handled by late): the funnel it could have moved has been
// dropped by then, or may have been. In processing time nothing is late
// and grace is not used.
//
// The key's funnel is one JSON value in the field "active" of the step's
// keyed state, with a timer "<name>:deadline"; both go when it ends.
type funnelStep struct {
	analytic
	steps      []funnelStage
	within     time.Duration
	strict     bool
	emits      map[string]bool
	latePolicy LatePolicy
}

// funnelStage is one step of a funnel.
type funnelStage struct {
	name string
	when *Cond
}

// funnelConfig is the YAML of a funnel step.
type funnelConfig struct {
	// Name names the step's state, timers, metrics and result ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is "event" or "processing". Default: event when the pipeline
	// has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where the results go. Required.
	Output ResultOutput `yaml:"output"`
	// Steps are the funnel's steps in order, at least 2, each with a name
	// of its own and a condition. Required.
	Steps []funnelStepConfig `yaml:"steps"`
	// Within is the time limit from the first step: every later step must
	// come less than within after it. Required, positive.
	Within time.Duration `yaml:"within"`
	// Order is "relaxed" (default: events in between are ignored) or
	// "strict" (an event that meets another step than the next drops the
	// funnel).
	Order string `yaml:"order"`
	// Emit lists the results to write, of "progress", "completed" and
	// "dropped". Default: all three.
	Emit []string `yaml:"emit"`
	// Grace is how far behind the watermark an event may be and still
	// count (event time), and so how long after its deadline a funnel
	// waits before it drops. Default 0; at most the dedupe window.
	Grace time.Duration `yaml:"grace"`
	// Late is what happens to a late event: "drop" (default),
	// "dead_letter" or "stream:<name>".
	Late string `yaml:"late"`
}

func (c *funnelConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

// funnelStepConfig is one of a funnel's steps.
type funnelStepConfig struct {
	// Name names the step in results. Required, unique in the funnel.
	Name string `yaml:"name"`
	// When is the condition an event meets to reach the step. Required.
	When *Cond `yaml:"when"`
}

// Funnel orders and result statuses.
const (
	FunnelRelaxed   = "relaxed"
	FunnelStrict    = "strict"
	FunnelProgress  = "progress"
	FunnelCompleted = "completed"
	FunnelDropped   = "dropped"
)

// funnelField is the state field holding the key's funnel.
const funnelField = "active"

// funnelTimer is the suffix of the key's funnel deadline timer.
const funnelTimer = "deadline"

func newFunnel(cfg StepConfig) (Step, error) {
	var c funnelConfig
	a, errs := decodeAnalytic(cfg, &c)
	s := &funnelStep{analytic: a, within: c.Within, emits: map[string]bool{}}
	s.grace = c.Grace
	if len(c.Steps) < 2 {
		errs = append(errs, cfg.Errorf("steps", "want at least 2 steps, got %d", len(c.Steps)))
	}
	seen := map[string]int{}
	for i, st := range c.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		switch j, dup := seen[st.Name]; {
		case st.Name == "":
			errs = append(errs, cfg.Errorf(p+".name", "required"))
		case dup:
			errs = append(errs, cfg.Errorf(p+".name", "%q is the name of steps[%d] too", st.Name, j))
		default:
			seen[st.Name] = i
		}
		if st.When == nil {
			errs = append(errs, cfg.Errorf(p+".when", "required: the condition an event meets to reach the step"))
		}
		s.steps = append(s.steps, funnelStage{name: st.Name, when: st.When})
	}
	if c.Within <= 0 {
		errs = append(errs, cfg.Errorf("within", "required, positive: the time limit from the first step (got %s)", c.Within))
	}
	switch c.Order {
	case "", FunnelRelaxed:
	case FunnelStrict:
		s.strict = true
	default:
		errs = append(errs, cfg.Errorf("order", "want %s or %s, got %q", FunnelRelaxed, FunnelStrict, c.Order))
	}
	if cfg.Has("emit") && len(c.Emit) == 0 {
		errs = append(errs, cfg.Errorf("emit", "want at least one of %s, %s, %s (leave it out for all)", FunnelProgress, FunnelCompleted, FunnelDropped))
	}
	for i, e := range c.Emit {
		switch e {
		case FunnelProgress, FunnelCompleted, FunnelDropped:
			s.emits[e] = true
		default:
			errs = append(errs, cfg.Errorf(fmt.Sprintf("emit[%d]", i), "want %s, %s or %s, got %q", FunnelProgress, FunnelCompleted, FunnelDropped, e))
		}
	}
	if !cfg.Has("emit") {
		s.emits = map[string]bool{FunnelProgress: true, FunnelCompleted: true, FunnelDropped: true}
	}
	if c.Grace < 0 {
		errs = append(errs, cfg.Errorf("grace", "must be at least 0, got %s", c.Grace))
	}
	late, err := parseLate(cfg, c.Late)
	errs = append(errs, err)
	s.latePolicy = late
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// activeFunnel is a key's funnel as the state keeps it: the time of each
// step reached (unix ms, in the step's time), the first being its start.
type activeFunnel struct {
	Times []int64 `json:"t"`
}

func (f *activeFunnel) started() int64 { return f.Times[0] }
func (f *activeFunnel) last() int64    { return f.Times[len(f.Times)-1] }

func (s *funnelStep) deadline(f *activeFunnel) int64 { return f.started() + s.within.Milliseconds() }

// closeAt is when a funnel not completed drops.
func (s *funnelStep) closeAt(f *activeFunnel) time.Time {
	return time.UnixMilli(s.deadline(f) + s.eventGraceMS())
}

// Process moves the key's funnel on, starts one, or drops it.
func (s *funnelStep) Process(_ context.Context, ev *Event) (bool, error) {
	m := ev.Message()
	t, err := s.stepTimeMS(ev)
	if err != nil {
		return false, err
	}
	if s.behindWatermark(m, t) {
		return s.late(ev, s.latePolicy, "its funnel")
	}
	var f activeFunnel
	had, err := s.load(m, funnelField, &f)
	if err != nil {
		return false, err
	}
	active := had && len(f.Times) > 0
	if active && (s.closed(m, s.closeAt(&f)) || t >= s.deadline(&f)) {
		if err := s.end(m, &f, FunnelDropped, "timeout"); err != nil {
			return false, err
		}
		active = false
	}
	if active {
		if t < f.last() {
			return true, nil // before the funnel's latest step: ignored
		}
		next := len(f.Times)
		ok, err := s.steps[next].when.Test(ev)
		if err != nil {
			return false, fmt.Errorf("steps[%d].when: %w", next, err)
		}
		if ok {
			f.Times = append(f.Times, t)
			if len(f.Times) == len(s.steps) {
				return true, s.end(m, &f, FunnelCompleted, "")
			}
			if err := s.result(m, &f, FunnelProgress, ""); err != nil {
				return false, err
			}
			return true, s.save(m, funnelField, f)
		}
		if !s.strict {
			return true, nil
		}
		other, err := s.meetsOther(ev, next)
		if err != nil || !other {
			return err == nil, err
		}
		if err := s.end(m, &f, FunnelDropped, "order"); err != nil {
			return false, err
		}
	}
	ok, err := s.steps[0].when.Test(ev)
	if err != nil {
		return false, fmt.Errorf("steps[0].when: %w", err)
	}
	if !ok {
		return true, nil
	}
	f = activeFunnel{Times: []int64{t}}
	m.GaugeAdd(GaugeOpen(s.name), 1)
	if err := s.result(m, &f, FunnelProgress, ""); err != nil {
		return false, err
	}
	if err := s.save(m, funnelField, f); err != nil {
		return false, err
	}
	s.setTimer(m, funnelTimer, s.closeAt(&f), "")
	return true, nil
}

// meetsOther reports whether ev meets the condition of a step other than
// next.
func (s *funnelStep) meetsOther(ev *Event, next int) (bool, error) {
	for i, st := range s.steps {
		if i == next {
			continue
		}
		ok, err := st.when.Test(ev)
		if err != nil {
			return false, fmt.Errorf("steps[%d].when: %w", i, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// end finishes the key's funnel as completed or dropped: its result, its
// state and timer gone.
func (s *funnelStep) end(m *processor.Message, f *activeFunnel, status, reason string) error {
	if err := s.result(m, f, status, reason); err != nil {
		return err
	}
	s.drop(m, funnelField)
	s.cancelTimer(m, funnelTimer)
	m.GaugeAdd(GaugeOpen(s.name), -1)
	return nil
}

// result emits f's result of status, if the step emits that status.
func (s *funnelStep) result(m *processor.Message, f *activeFunnel, status, reason string) error {
	if !s.emits[status] {
		return nil
	}
	idx := len(f.Times) - 1
	steps := make([]map[string]any, len(f.Times))
	for i, at := range f.Times {
		steps[i] = map[string]any{"name": s.steps[i].name, "at": at}
	}
	r := map[string]any{
		"status":      status,
		"step":        map[string]any{"name": s.steps[idx].name, "index": idx},
		"steps":       steps,
		"started":     f.started(),
		"started_iso": isoMS(f.started()),
		"duration_ms": f.last() - f.started(),
		"deadline":    s.deadline(f),
	}
	parts := []string{strconv.FormatInt(f.started(), 10), status}
	if status == FunnelProgress {
		parts = append(parts, strconv.Itoa(idx))
	}
	if reason != "" {
		r["reason"] = reason
	}
	return s.emit(m, KindFunnel, s.resultID(m, parts...), r)
}

// Fire drops the key's funnel when its deadline (plus grace) has come.
func (s *funnelStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	if _, ok := s.ownsTimer(m); !ok {
		return nil
	}
	var f activeFunnel
	found, err := s.load(m, funnelField, &f)
	if err != nil || !found || len(f.Times) == 0 {
		return err
	}
	if !s.closed(m, s.closeAt(&f)) {
		s.setTimer(m, funnelTimer, s.closeAt(&f), "") // not due yet: fire again then
		return nil
	}
	return s.end(m, &f, FunnelDropped, "timeout")
}

var _ TimerStep = (*funnelStep)(nil)
