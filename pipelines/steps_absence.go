package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// absence: an alert for a key (and group) that has sent nothing for a
// while, and a resolve when it sends again.
//
//	absence:
//	  name: silent
//	  output: {stream: iot:alerts}
//	  after: 30s
//	  group_by: {sensor: sensor}
//	  values: {battery: battery}
//	  forget_after: 168h
//
// Every event of a key and group (re)arms a timer at its time + after, in
// the step's time (event time or processing time, see
// analyticsConfig.Time). When the timer fires with no newer event of the
// key and group, the alert is raised (kind "alert") at last_seen + after:
// timers drive it, so it comes while the key sends nothing at all (in
// event time the timer waits for the watermark, which a partition that
// reads nothing moves with the clock after timers.idle_watermark). The
// next event of the key and group resolves it (kind "resolve") and arms
// the timer again. A key the step has never seen has no timer: it cannot
// be found silent.
//
// The step's time is the later of the event's time and, in event time, the
// watermark (in processing time, the engine clock): an alert due by it is
// raised before the event is applied, in the event path as in the timer
// path, so two events of a key and group `after` or more apart always make
// an alert and its resolve, whichever of the event and the timer is handled
// first.
//
// Out-of-order events (event time): an event older than the latest event
// seen of its key and group changes nothing (the key was not seen any
// later by it); it is counted late (the step's "late" count) and passed on
// to the next step.
//
// Results (see ResultOutput): an alert has key, group (with group_by: name
// → value), last_seen (the time of the latest event before the silence)
// and raised_at (last_seen + after), as unix ms and *_iso, and with values,
// last: the values of that event. A resolve has the same plus returned_at
// (the time of the event that ended the silence), duration_ms (returned_at
// - last_seen, how long the key was silent) and, with values, returned:
// that event's values. Ids are "<name>:<key>:<group values…>:<last_seen
// ms>:alert" and "…:resolve". The gauge GaugeOpen(name) counts the silent
// keys.
//
// State: one field per key and group in the keyed state hash of the step's
// name ("g" followed by the group values as a JSON array; "g" without
// group_by) holding the latest event's time (and values), and, while the
// alert is raised, its raised_at, which the resolve drops; its timer has
// the same name. A key that never comes back keeps its field, unless
// forget_after is set: once the alert is raised the timer is moved to
// last_seen + forget_after, and if the key is still silent then, its field
// is deleted, the open gauge goes down and the count "<name>/forgotten"
// goes up. No result is written for it; the key's next event, if one ever
// comes, starts a new watch without a resolve. An alert raised while
// forget_after was not set kept no timer: its key is forgotten only if it
// sends again and is silent again.
type absenceStep struct {
	analytic
	afterMS int64
	// forgetMS is forget_after in ms; 0: never forget.
	forgetMS int64
	groupBy  exprFields
	values   exprFields
}

// absenceConfig is the YAML of an absence step.
type absenceConfig struct {
	// Name names the step's state, timers, metrics and result ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is "event" or "processing". Default: event when the pipeline
	// has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where alerts and resolves go. Required.
	Output ResultOutput `yaml:"output"`
	// After is how long a key (and group) must send nothing to be
	// alerted on, above 0, whole milliseconds. Required.
	After time.Duration `yaml:"after"`
	// GroupBy maps group names to expressions: each key's groups are
	// watched apart, and results carry the group in "group". Default: one
	// watch per key.
	GroupBy exprFields `yaml:"group_by"`
	// Values maps names to expressions evaluated on every event, carried
	// in results (last, returned). Default: none.
	Values exprFields `yaml:"values"`
	// ForgetAfter, above After, whole milliseconds: a key silent this long
	// since its last event (its alert raised all the while) is forgotten:
	// its state is deleted. Default: never (a key that never comes back
	// keeps its state).
	ForgetAfter time.Duration `yaml:"forget_after"`
}

func (c *absenceConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

func newAbsence(cfg StepConfig) (Step, error) {
	var c absenceConfig
	a, errs := decodeAnalytic(cfg, &c)
	s := &absenceStep{analytic: a, groupBy: c.GroupBy, values: c.Values}
	switch {
	case !cfg.Has("after"):
		errs = append(errs, cfg.Errorf("after", "required: how long a key must send nothing to be alerted on, such as 30s"))
	case c.After <= 0:
		errs = append(errs, cfg.Errorf("after", "must be positive, got %s", c.After))
	default:
		s.afterMS = nonNegativeMS(cfg, &errs, "after", c.After)
	}
	if cfg.Has("forget_after") && c.After > 0 {
		if c.ForgetAfter <= c.After {
			errs = append(errs, cfg.Errorf("forget_after", "must be longer than after (%s), got %s", c.After, c.ForgetAfter))
		} else {
			s.forgetMS = nonNegativeMS(cfg, &errs, "forget_after", c.ForgetAfter)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// absenceState is what the state keeps of a key and group. Times are unix
// ms in the step's time.
type absenceState struct {
	// Last is the time of the latest event.
	Last int64 `json:"l"`
	// Raised is when the alert was raised; 0 while none is.
	Raised int64 `json:"r,omitempty"`
	// G is the group values as a JSON array; absent without group_by.
	G json.RawMessage `json:"g,omitempty"`
	// V is the values of the latest event; absent without values.
	V json.RawMessage `json:"v,omitempty"`
}

func (s *absenceStep) readsPayload() bool { return true }

// Process resolves the key and group's alert if raised, and re-arms its
// timer.
func (s *absenceStep) Process(_ context.Context, ev *Event) (bool, error) {
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
	st := &absenceState{}
	found, err := s.load(m, field, st)
	if err != nil {
		return false, err
	}
	if found {
		raised, err := s.raiseDue(m, st, max(s.now(m).UnixMilli(), t))
		if err != nil {
			return false, err
		}
		if t < st.Last {
			m.Count(CountName(s.name, "late", ""), 1)
			if !raised {
				return true, nil
			}
			s.afterRaise(m, field, st) // it was due: the alert is raised
			return true, s.save(m, field, st)
		}
	}
	v, err := evalValues(s.values, ev)
	if err != nil {
		return false, err
	}
	if found && st.Raised != 0 {
		if err := s.resolve(m, st, t, v); err != nil {
			return false, err
		}
	}
	next := &absenceState{Last: t, V: v}
	if gkey != "" {
		next.G = json.RawMessage(gkey)
	}
	if err := s.save(m, field, next); err != nil {
		return false, err
	}
	s.setTimer(m, field, time.UnixMilli(t+s.afterMS), "")
	return true, nil
}

// raiseDue raises st's alert if it is not raised and due by now (unix ms
// in the step's time), the same rule for events and timer firings.
func (s *absenceStep) raiseDue(m *processor.Message, st *absenceState, now int64) (bool, error) {
	due := st.Last + s.afterMS
	if st.Raised != 0 || due > now {
		return false, nil
	}
	st.Raised = due
	if err := s.emit(m, KindAlert, s.alertID(m, st, KindAlert), s.result(st)); err != nil {
		return false, err
	}
	m.GaugeAdd(GaugeOpen(s.name), 1)
	return true, nil
}

// resolve emits the resolve of st's alert by an event at t with values v.
func (s *absenceStep) resolve(m *processor.Message, st *absenceState, t int64, v json.RawMessage) error {
	r := s.result(st)
	r["returned_at"], r["returned_at_iso"] = t, isoMS(t)
	r["duration_ms"] = t - st.Last
	if len(s.values) > 0 {
		r["returned"] = v
	}
	if err := s.emit(m, KindResolve, s.alertID(m, st, KindResolve), r); err != nil {
		return err
	}
	m.GaugeAdd(GaugeOpen(s.name), -1)
	return nil
}

// alertID is the id of st's alert or resolve.
func (s *absenceStep) alertID(m *processor.Message, st *absenceState, kind string) string {
	parts, _ := groupParts(s.groupBy, st.G)
	return s.resultID(m, append(parts, strconv.FormatInt(st.Last, 10), kind)...)
}

// result is the data of st's alert, which its resolve extends.
func (s *absenceStep) result(st *absenceState) map[string]any {
	r := map[string]any{
		"last_seen": st.Last, "last_seen_iso": isoMS(st.Last),
		"raised_at": st.Raised, "raised_at_iso": isoMS(st.Raised),
	}
	if _, group := groupParts(s.groupBy, st.G); group != nil {
		r["group"] = group
	}
	if len(s.values) > 0 {
		r["last"] = st.V
	}
	return r
}

// Fire raises the alert of one of the step's timers.
func (s *absenceStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	field, ok := s.ownsTimer(m)
	if !ok {
		return nil
	}
	st := &absenceState{}
	found, err := s.load(m, field, st)
	if err != nil || !found {
		return err // not found: a timer left behind by hand
	}
	now := s.now(m).UnixMilli()
	raised, err := s.raiseDue(m, st, now)
	switch {
	case err != nil:
		return err
	case raised:
		if s.forgetMS > 0 { // else the firing removed the timer
			s.afterRaise(m, field, st)
		}
		return s.save(m, field, st)
	case st.Raised == 0: // not due yet (a timer moved meanwhile): the firing removed it
		s.setTimer(m, field, time.UnixMilli(st.Last+s.afterMS), "")
	case s.forgetMS > 0 && now >= st.Last+s.forgetMS:
		s.drop(m, field)
		m.GaugeAdd(GaugeOpen(s.name), -1)
		m.Count(CountName(s.name, "forgotten", ""), 1)
	case s.forgetMS > 0: // raised, not to be forgotten yet (a timer moved meanwhile)
		s.afterRaise(m, field, st)
	}
	return nil
}

// afterRaise moves the timer of st, whose alert was just raised, to when
// it is forgotten, or cancels it if it never is.
func (s *absenceStep) afterRaise(m *processor.Message, field string, st *absenceState) {
	if s.forgetMS > 0 {
		s.setTimer(m, field, time.UnixMilli(st.Last+s.forgetMS), "")
		return
	}
	s.cancelTimer(m, field)
}

var (
	_ TimerStep    = (*absenceStep)(nil)
	_ analyticStep = (*absenceStep)(nil)
)
