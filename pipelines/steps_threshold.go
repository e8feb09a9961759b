package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// threshold: an alert per key (and group) raised when a condition has held
// for a while, resolved when a clear condition holds, with hysteresis.
//
//	threshold:
//	  name: hot
//	  output: {stream: iot:alerts, hash: 'alerts:$key'}
//	  when: 'sensor == "temperature" && value > 30'
//	  for: 1m
//	  clear: 'value < 28'
//	  keep_firing_for: 2m
//	  group_by: {sensor: sensor}
//	  values: {value: value, unit: unit}
//
// Each event of a key is taken at its time in the step's time (event time
// or processing time, see analyticsConfig.Time) and judged by two
// conditions: it "holds" when `when` is true and `clear` (if set) is not;
// it "clears" when `clear` is true, or, without clear, when `when` is not.
// With clear, an event on which neither is true (a value between the two
// bounds) keeps the alert as it is: that is the hysteresis.
//
// An alert of a key and group goes through these phases:
//
//   - idle (nothing in state): an event that holds starts it pending, since
//     that event's time t0.
//   - pending: every event that holds keeps it pending (the latest such
//     event's values are kept); any event that does not hold ends it
//     (back to idle, nothing emitted). Once the step's time reaches t0 +
//     for, the alert is raised (kind "alert"), with raised_at t0 + for:
//     by the next event of the key at or after that time, or by a timer at
//     t0 + for when none comes. The condition is taken to have held from an
//     event until the key's next event says otherwise, so a key that stops
//     sending while hot is raised by the timer. With for 0 the event that
//     holds raises it at once.
//   - raised: an event that clears resolves it (kind "resolve") at its
//     time, or, with keep_firing_for, starts clearing; events that hold
//     update the latest values.
//   - clearing (keep_firing_for only): while events clear it stays raised;
//     once the step's time reaches the first clearing event's time +
//     keep_firing_for it is resolved at that time (by an event or by a
//     timer). An event that does not clear sends it back to raised.
//
// The step's time is the later of the event's time and, in event time, the
// watermark (in processing time, the engine clock): what is due by it
// (a raise, a resolve) happens before the event is applied, in the event
// path as in the timer path, so that the results do not depend on whether
// the event or the timer is handled first.
//
// Out-of-order events (event time): an event older than the latest time
// its alert has seen (events and the raise) does not change the alert; it
// is counted late (the step's "late" count) and passed on to the next
// step. Events of a key are otherwise taken in arrival order. Once an alert
// resolves its state is gone: an event older than the resolve that comes
// after it is taken as a new reading.
//
// Results (see ResultOutput): an alert has key, group (with group_by: name
// → value), since and raised_at (unix ms, and since_iso, raised_at_iso)
// and, with values, first and last: the values of the event that started
// it and of the latest event that held before it was raised. A resolve has
// the same plus cleared_at (when clear began to hold), resolved_at,
// duration_ms (resolved_at - raised_at), last (the latest event that held
// while raised) and clear (the values of the event that began the
// clearing). Ids are "<name>:<key>:<group values…>:<since ms>:alert" and
// "…:resolve". The gauge GaugeOpen(name) counts the raised alerts.
//
// State: one field per key and group in the keyed state hash of the
// step's name ("g" followed by the group values as a JSON array; "g"
// without group_by), holding the pending or raised alert, with a timer of
// the same name at its next raise or resolve; the field is dropped when
// the alert resolves or its pending ends, so that a quiet key keeps
// nothing.
type thresholdStep struct {
	analytic
	when, clear   *Cond
	forMS, keepMS int64
	groupBy       exprFields
	values        exprFields
}

// thresholdConfig is the YAML of a threshold step.
type thresholdConfig struct {
	// Name names the step's state, timers, metrics and result ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is "event" or "processing". Default: event when the pipeline
	// has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where alerts and resolves go. Required.
	Output ResultOutput `yaml:"output"`
	// When is the raise condition. Required.
	When *Cond `yaml:"when"`
	// For is how long When must hold before the alert is raised, >= 0,
	// whole milliseconds. Default 0: at once.
	For time.Duration `yaml:"for"`
	// Clear, if set, is the condition that clears a raised alert; events
	// on which neither When nor Clear is true leave it as it is
	// (hysteresis). Default: none, an event on which When is false clears.
	Clear *Cond `yaml:"clear"`
	// KeepFiringFor is how long the clearing must last before the alert
	// resolves, >= 0, whole milliseconds. Default 0: it resolves on the
	// first event that clears.
	KeepFiringFor time.Duration `yaml:"keep_firing_for"`
	// GroupBy maps group names to expressions: one alert per key and
	// group value(s), which results carry in "group". Default: one alert
	// per key.
	GroupBy exprFields `yaml:"group_by"`
	// Values maps names to expressions evaluated on the events that
	// trigger and clear an alert, carried in its results (first, last,
	// clear). Default: none.
	Values exprFields `yaml:"values"`
}

func (c *thresholdConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

// Phases of a threshold alert as its state keeps them.
const (
	phasePending  = "pending"
	phaseRaised   = "raised"
	phaseClearing = "clearing"
)

func newThreshold(cfg StepConfig) (Step, error) {
	var c thresholdConfig
	a, errs := decodeAnalytic(cfg, &c)
	s := &thresholdStep{analytic: a, when: c.When, clear: c.Clear, groupBy: c.GroupBy, values: c.Values}
	if !cfg.Has("when") {
		errs = append(errs, cfg.Errorf("when", "required: the condition that raises the alert"))
		if cfg.Has("clear") {
			errs = append(errs, cfg.Errorf("clear", "a clear condition needs a when condition to clear"))
		}
	}
	s.forMS = nonNegativeMS(cfg, &errs, "for", c.For)
	s.keepMS = nonNegativeMS(cfg, &errs, "keep_firing_for", c.KeepFiringFor)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// thresholdState is a pending or raised alert as the state keeps it.
// Times are unix ms in the step's time.
type thresholdState struct {
	Phase string `json:"p"`
	// Since is when When began to hold (t0).
	Since int64 `json:"s"`
	// Raised is when the alert was raised (Since + for).
	Raised int64 `json:"r,omitempty"`
	// Clear is when the clearing began (phase clearing).
	Clear int64 `json:"c,omitempty"`
	// Latest is the latest time the alert has seen: an older event is late.
	Latest int64 `json:"t"`
	// G is the group values as a JSON array; absent without group_by.
	G json.RawMessage `json:"g,omitempty"`
	// First, Last and Cleared are the values (an object) of the event
	// that started it, of the latest that held and of the one that began
	// the clearing; absent without values.
	First   json.RawMessage `json:"f,omitempty"`
	Last    json.RawMessage `json:"l,omitempty"`
	Cleared json.RawMessage `json:"cv,omitempty"`
}

func (s *thresholdStep) readsPayload() bool { return true }

// Process applies the event to its key and group's alert.
func (s *thresholdStep) Process(_ context.Context, ev *Event) (bool, error) {
	m := ev.Message()
	t, err := s.stepTimeMS(ev)
	if err != nil {
		return false, err
	}
	gkey, err := evalGroup(s.groupBy, ev)
	if err != nil {
		return false, err
	}
	field := "g" + gkey
	var st *thresholdState
	loaded := &thresholdState{}
	found, err := s.load(m, field, loaded)
	if err != nil {
		return false, err
	}
	if found {
		st = loaded
	}
	due0 := s.due(st)
	now := max(s.now(m).UnixMilli(), t)
	if st, err = s.advance(m, field, st, now); err != nil {
		return false, err
	}
	if st != nil && t < st.Latest {
		m.Count(CountName(s.name, "late", ""), 1)
		return true, s.store(m, field, st, found, due0)
	}
	holds, clears, err := s.judge(ev)
	if err != nil {
		return false, err
	}
	var vals json.RawMessage // the event's values, where they are kept
	if holds || (clears && st != nil && st.Phase == phaseRaised) {
		if vals, err = evalValues(s.values, ev); err != nil {
			return false, err
		}
	}
	switch {
	case st == nil && holds:
		st = &thresholdState{Phase: phasePending, Since: t, First: vals, Last: vals}
		if gkey != "" {
			st.G = json.RawMessage(gkey)
		}
	case st == nil: // idle, and stays so
	case st.Phase == phasePending && !holds:
		st = nil // the condition broke before for: nothing was raised
	case st.Phase == phasePending:
		st.Last = vals
	case clears && st.Phase == phaseRaised:
		st.Phase, st.Clear, st.Cleared = phaseClearing, t, vals
	case clears: // clearing already
	case st.Phase == phaseClearing:
		st.Phase, st.Clear, st.Cleared = phaseRaised, 0, nil
		fallthrough
	default: // raised
		if holds {
			st.Last = vals
		}
	}
	if st != nil {
		st.Latest = max(st.Latest, t)
	}
	if st, err = s.advance(m, field, st, now); err != nil {
		return false, err
	}
	return true, s.store(m, field, st, found, due0)
}

// judge evaluates the conditions on ev: whether it holds (When and not
// Clear) and whether it clears (Clear, or without it not When).
func (s *thresholdStep) judge(ev *Event) (holds, clears bool, err error) {
	when, err := s.when.Test(ev)
	if err != nil {
		return false, false, fmt.Errorf("when: %w", err)
	}
	if s.clear == nil {
		return when, !when, nil
	}
	clr, err := s.clear.Test(ev)
	if err != nil {
		return false, false, fmt.Errorf("clear: %w", err)
	}
	return when && !clr, clr, nil
}

// due is when st's next raise or resolve falls due (unix ms), or -1 when
// nothing is.
func (s *thresholdStep) due(st *thresholdState) int64 {
	switch {
	case st == nil:
		return -1
	case st.Phase == phasePending:
		return st.Since + s.forMS
	case st.Phase == phaseClearing:
		return st.Clear + s.keepMS
	}
	return -1
}

// advance raises or resolves st if that is due by now (unix ms in the
// step's time), the same rule for events and timer firings; nil st is
// idle, and a resolved alert comes back nil.
func (s *thresholdStep) advance(m *processor.Message, field string, st *thresholdState, now int64) (*thresholdState, error) {
	due := s.due(st)
	if due < 0 || due > now {
		return st, nil
	}
	if st.Phase == phasePending {
		st.Phase, st.Raised, st.Latest = phaseRaised, due, max(st.Latest, due)
		if err := s.emit(m, KindAlert, s.alertID(m, st, KindAlert), s.result(st, KindAlert, 0)); err != nil {
			return nil, err
		}
		m.GaugeAdd(GaugeOpen(s.name), 1)
		return st, nil
	}
	if err := s.emit(m, KindResolve, s.alertID(m, st, KindResolve), s.result(st, KindResolve, due)); err != nil {
		return nil, err
	}
	m.GaugeAdd(GaugeOpen(s.name), -1)
	return nil, nil
}

// store records st in field (or drops it when idle) and moves the field's
// timer to st's next due time if that changed from due0, the one it had.
func (s *thresholdStep) store(m *processor.Message, field string, st *thresholdState, found bool, due0 int64) error {
	if st == nil {
		if found {
			s.drop(m, field)
		}
		if due0 >= 0 {
			s.cancelTimer(m, field)
		}
		return nil
	}
	if err := s.save(m, field, st); err != nil {
		return err
	}
	switch due := s.due(st); {
	case due == due0:
	case due < 0:
		s.cancelTimer(m, field)
	default:
		s.setTimer(m, field, time.UnixMilli(due), "")
	}
	return nil
}

// alertID is the id of st's alert or resolve.
func (s *thresholdStep) alertID(m *processor.Message, st *thresholdState, kind string) string {
	parts, _ := groupParts(s.groupBy, st.G)
	return s.resultID(m, append(parts, strconv.FormatInt(st.Since, 10), kind)...)
}

// result is the data of st's alert, or of its resolve at resolved (unix
// ms).
func (s *thresholdStep) result(st *thresholdState, kind string, resolved int64) map[string]any {
	r := map[string]any{
		"since": st.Since, "since_iso": isoMS(st.Since),
		"raised_at": st.Raised, "raised_at_iso": isoMS(st.Raised),
	}
	if _, group := groupParts(s.groupBy, st.G); group != nil {
		r["group"] = group
	}
	if len(s.values) > 0 {
		r["first"], r["last"] = st.First, st.Last
	}
	if kind == KindResolve {
		r["cleared_at"], r["cleared_at_iso"] = st.Clear, isoMS(st.Clear)
		r["resolved_at"], r["resolved_at_iso"] = resolved, isoMS(resolved)
		r["duration_ms"] = resolved - st.Raised
		if len(s.values) > 0 {
			r["clear"] = st.Cleared
		}
	}
	return r
}

// Fire raises or resolves the alert of one of the step's timers.
func (s *thresholdStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	field, ok := s.ownsTimer(m)
	if !ok {
		return nil
	}
	st := &thresholdState{}
	found, err := s.load(m, field, st)
	if err != nil || !found {
		return err // not found: resolved or ended already
	}
	// The firing removes the timer: store sets it again if st is still due
	// later (a timer moved meanwhile), and cancels nothing.
	if st, err = s.advance(m, field, st, s.now(m).UnixMilli()); err != nil {
		return err
	}
	return s.store(m, field, st, found, -1)
}

var (
	_ TimerStep    = (*thresholdStep)(nil)
	_ analyticStep = (*thresholdStep)(nil)
)
