package pipelines

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// What the analytics steps (window, session, funnel, threshold, absence)
// share: their name, their clock, where their results go, how they keep
// their per-key state and timers, what they do with late events and what
// they count. Each step keeps its open windows, sessions, funnels or alerts
// in the keyed state hash of its name, one JSON value per field, and its
// timers under names that start with "<name>:"; both are written in the
// commit that acks the event or the timer's firing, so a result is emitted
// exactly once across retries, crashes and owner changes.

// ReasonLate is the dead-letter reason of an event that came after its
// window closed, for a step with late: dead_letter.
const ReasonLate = "late"

// Time modes of an analytics step.
const (
	TimeEvent      = "event"      // the pipeline's input.event_time, closed by the watermark
	TimeProcessing = "processing" // the engine clock when the step runs
)

// Late-event actions.
const (
	LateDrop       = "drop"
	LateDeadLetter = "dead_letter"
)

// ResultOutput is where an analytics step writes its results: entries of
// Stream with the fields "key" (the message key), "id" (the result's
// deterministic id: downstream may dedupe on it), "kind" (window, update,
// session, alert, resolve, …) and "data" (the result as a JSON object);
// and, with Hash, each result's fields also set on that hash ("$key"
// stands for the message key), a read model of the latest result.
type ResultOutput struct {
	// Stream receives the results. Required.
	Stream string `yaml:"stream"`
	// MaxLen caps Stream approximately (MAXLEN ~), >= 0. 0: no cap.
	MaxLen int64 `yaml:"max_len"`
	// Retention trims Stream, never past what a group has not acknowledged.
	Retention *Retention `yaml:"retention"`
	// Hash, if set, gets each result's fields (HSET), "$key" replaced by
	// the message key.
	Hash string `yaml:"hash"`
}

// LatePolicy is what a step does with an event that arrives after the
// window (session, funnel step) it belongs to has closed: "drop" (the
// default; counted), "dead_letter" (the whole event goes to the pipeline's
// dead-letter stream with reason ReasonLate, and no effect of it is
// written) or a stream to append it to (the same fields as an output step
// writes).
type LatePolicy struct {
	action string
	stream string
}

// parseLate reads the step's "late" field: drop, dead_letter or
// stream:<name>.
func parseLate(cfg StepConfig, s string) (LatePolicy, error) {
	switch s {
	case "", LateDrop:
		return LatePolicy{action: LateDrop}, nil
	case LateDeadLetter:
		return LatePolicy{action: LateDeadLetter}, nil
	}
	after, ok := strings.CutPrefix(s, "stream:")
	if !ok || strings.TrimSpace(after) == "" || strings.ContainsAny(after, "{}") {
		return LatePolicy{}, cfg.Errorf("late", "want %s, %s or stream:<name> (no braces), got %q", LateDrop, LateDeadLetter, s)
	}
	return LatePolicy{action: "stream", stream: strings.TrimSpace(after)}, nil
}

// analyticsConfig is the part of an analytics step's YAML that every one
// of them has.
type analyticsConfig struct {
	// Name names the step: its keyed state, its timers, its metrics and
	// the ids of its results. Required, unique in the pipeline.
	Name string `yaml:"name"`
	// Time is TimeEvent or TimeProcessing. Default: event when the
	// pipeline has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where results go. Required.
	Output ResultOutput `yaml:"output"`
}

// analytic is what an analytics step holds of analyticsConfig, once the
// pipeline it belongs to is known (bind).
type analytic struct {
	name      string
	timeMode  string // as configured; "" until bind
	eventTime bool
	out       ResultOutput
	hash      []string // out.Hash split around "$key"
	// grace is how long after a window (session, …) ends in the step's time
	// it stays open for events; bind checks it against the dedupe window.
	grace time.Duration
}

// analyticsConfigurer is an analytics step's YAML: it picks out the part
// every analytics step has.
type analyticsConfigurer interface {
	analytics() analyticsConfig
}

// decodeAnalytic decodes the step's config into c and checks the fields
// every analytics step has. It returns every problem, the decoding's among
// them: the step checks on even if decoding failed, to report everything
// at once.
func decodeAnalytic(cfg StepConfig, c analyticsConfigurer) (analytic, []error) {
	errs := []error{cfg.Decode(c)}
	a, problems := newAnalytic(cfg, c.analytics())
	return a, append(errs, problems...)
}

// newAnalytic checks the shared fields and returns them, or the problems.
func newAnalytic(cfg StepConfig, c analyticsConfig) (analytic, []error) {
	var errs []error
	switch {
	case c.Name == "":
		errs = append(errs, cfg.Errorf("name", "required: it names the step's state, timers, metrics and result ids"))
	case !stateNameRE.MatchString(c.Name) || strings.Contains(c.Name, ":") || strings.Contains(c.Name, "/"):
		errs = append(errs, cfg.Errorf("name", "%q must match %s", c.Name, stateNameRE))
	}
	switch c.Time {
	case "", TimeEvent, TimeProcessing:
	default:
		errs = append(errs, cfg.Errorf("time", "want %s or %s, got %q", TimeEvent, TimeProcessing, c.Time))
	}
	if c.Output.Stream == "" {
		errs = append(errs, cfg.Errorf("output.stream", "required"))
	}
	if c.Output.MaxLen < 0 {
		errs = append(errs, cfg.Errorf("output.max_len", "must be at least 0 (0 means no cap)"))
	}
	errs = append(errs, retentionErrors(cfg, "output.retention", c.Output.Retention)...)
	if strings.ContainsAny(c.Output.Hash, "{}") {
		errs = append(errs, cfg.Errorf("output.hash", "must not contain braces (Redis Cluster hash tags); write %s for the key, got %q", keyPlaceholder, c.Output.Hash))
	}
	a := analytic{name: c.Name, timeMode: c.Time, out: c.Output}
	if c.Output.Hash != "" {
		a.hash = strings.Split(c.Output.Hash, keyPlaceholder)
	}
	return a, errs
}

// capped names the output stream and its MAXLEN ~ cap.
func (a *analytic) capped() (string, int64, string) {
	return a.out.Stream, a.out.MaxLen, "output.max_len"
}

// retained puts the output stream under its retention.
func (a *analytic) retained() []processor.Retained {
	return []processor.Retained{{Stream: a.out.Stream, Retention: a.out.Retention.Engine()}}
}

// stateName makes the step's state one of the pipeline's keyed states.
func (a *analytic) stateName() string { return a.name }

// analyticStep is an analytics step, bound to its pipeline after it is
// built (registry.build): the time mode is settled and checked against
// the pipeline's input.event_time, dedupe window and ordering.
type analyticStep interface {
	base() *analytic
}

func (a *analytic) base() *analytic { return a }

// bind settles the time mode and checks the step against the pipeline.
func (a *analytic) bind(c *checker, sc StepConfig, p *Pipeline) {
	switch {
	case a.timeMode == "" && p.Input.EventTime != "":
		a.eventTime = true
	case a.timeMode == TimeEvent:
		a.eventTime = true
		if p.Input.EventTime == "" {
			c.addAt(lineOf(c, sc, "time"), joinPath(sc.Path, "time"), "event time needs the pipeline's input.event_time (the field whose time drives the watermark)")
		}
	}
	if p.Dedupe != nil && a.grace > p.Dedupe.Window {
		c.addAt(lineOf(c, sc, "grace"), joinPath(sc.Path, "grace"),
			"grace %s is longer than the dedupe window %s: a duplicate arriving within grace but after its id was forgotten would be counted twice", a.grace, p.Dedupe.Window)
	}
}

// lineOf is the line of field in the step's config, or the step's own.
func lineOf(c *checker, sc StepConfig, field string) int {
	if l, ok := c.lines[joinPath(sc.Path, field)]; ok {
		return l
	}
	return sc.Line
}

// eventTimeOf is the time of ev in the step's time: its event time, or
// the engine clock. ok is false for an event-time step when the event has
// no time (the decoder dead-letters such events; a timer firing has none).
func (a *analytic) eventTimeOf(ev *Event) (t time.Time, ok bool) {
	m := ev.Message()
	if !a.eventTime {
		return m.Now(), true
	}
	return m.EventTime, !m.EventTime.IsZero()
}

// stepTimeMS is the time of ev in the step's time (eventTimeOf), unix ms.
// An event-time step given an event without a time dead-letters it
// (invalid).
func (a *analytic) stepTimeMS(ev *Event) (int64, error) {
	at, ok := a.eventTimeOf(ev)
	if !ok {
		return 0, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("%s: %w", a.name, errNoEventTime))
	}
	return at.UnixMilli(), nil
}

// eventGraceMS is the grace of a step whose grace is for event time only
// (session, funnel): none in processing time.
func (a *analytic) eventGraceMS() int64 {
	if !a.eventTime {
		return 0
	}
	return a.grace.Milliseconds()
}

// behindWatermark reports whether an event at t (unix ms) is more than
// eventGraceMS behind the watermark (t + grace < watermark), in event time
// only: what it would join may have closed, so it is late.
func (a *analytic) behindWatermark(m *processor.Message, t int64) bool {
	if !a.eventTime {
		return false
	}
	w := m.Watermark()
	return !w.IsZero() && t+a.eventGraceMS() < w.UnixMilli()
}

// now is the step's current time: the watermark for an event-time step
// (zero before any event time is known), the engine clock otherwise.
func (a *analytic) now(m *processor.Message) time.Time {
	if a.eventTime {
		return m.Watermark()
	}
	return m.Now()
}

// closed reports whether something that closes at closeAt (end + grace)
// has closed by the step's time: an event for it is late.
func (a *analytic) closed(m *processor.Message, closeAt time.Time) bool {
	now := a.now(m)
	return !now.IsZero() && !closeAt.After(now)
}

// timerPrefix starts the names of the step's timers.
func (a *analytic) timerPrefix() string { return a.name + ":" }

// ownsTimer reports whether the firing m is one of the step's timers, and
// returns the rest of its name.
func (a *analytic) ownsTimer(m *processor.Message) (string, bool) {
	if m.Timer == nil {
		return "", false
	}
	return strings.CutPrefix(m.Timer.Name, a.timerPrefix())
}

// setTimer sets the key's timer "<name>:<suffix>" at at, in the step's
// time.
func (a *analytic) setTimer(m *processor.Message, suffix string, at time.Time, payload string) {
	if a.eventTime {
		m.SetEventTimer(a.timerPrefix()+suffix, at, payload)
		return
	}
	m.SetTimer(a.timerPrefix()+suffix, at, payload)
}

// cancelTimer cancels the key's timer "<name>:<suffix>".
func (a *analytic) cancelTimer(m *processor.Message, suffix string) {
	m.CancelTimer(a.timerPrefix() + suffix)
}

// load decodes the JSON held in field of the step's state into v, and
// reports whether the field was there.
func (a *analytic) load(m *processor.Message, field string, v any) (bool, error) {
	s, ok, err := m.StateField(a.name, field)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		// Only Eddy writes it: someone edited the hash by hand.
		return false, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("state %s field %q: %w", a.name, field, err))
	}
	return true, nil
}

// save records field of the step's state set to v as JSON.
func (a *analytic) save(m *processor.Message, field string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return processor.Permanent(processor.ReasonInvalid, fmt.Errorf("state %s field %q: %w", a.name, field, err))
	}
	m.StateSet(a.name, field, string(b))
	return nil
}

// drop records the removal of fields of the step's state.
func (a *analytic) drop(m *processor.Message, fields ...string) {
	if len(fields) > 0 {
		m.StateDel(a.name, fields...)
	}
}

// Result kinds, the "kind" field of a result entry.
const (
	KindWindow  = "window"  // a window closed: its final aggregates
	KindUpdate  = "update"  // a window's aggregates after an event (emit: update)
	KindSession = "session" // a session closed
	KindFunnel  = "funnel"  // a funnel progressed, completed or dropped off
	KindAlert   = "alert"   // a threshold or absence alert was raised
	KindResolve = "resolve" // it was resolved
)

// emit records a result: an entry of the output stream, the read model's
// fields if the step has one, and a count of the kind for the metrics.
// id must be the same whenever the same result is emitted again (a retry,
// a replay after a crash), so that downstream can dedupe on it.
func (a *analytic) emit(m *processor.Message, kind, id string, result map[string]any) error {
	b, err := json.Marshal(result)
	if err != nil {
		return processor.Permanent(processor.ReasonInvalid, fmt.Errorf("%s result %s: %w", a.name, id, err))
	}
	m.Emit(a.out.Stream, a.out.MaxLen, "key", m.Key, "id", id, "kind", kind, "data", string(b))
	if a.hash != nil {
		pairs := make([]string, 0, 2*len(result)+4)
		pairs = append(pairs, "kind", kind, "id", id)
		for _, k := range sortedKeys(result) {
			pairs = append(pairs, k, resultString(result[k]))
		}
		m.SetState(strings.Join(a.hash, m.Key), pairs...)
	}
	m.Count(CountName(a.name, "emitted", kind), 1)
	return nil
}

// resultString is how a result value is written to a read-model hash:
// strings as they are, everything else as JSON.
func resultString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// resultID is the deterministic id of a result: the step's name, the key
// and the parts that tell its results apart.
func (a *analytic) resultID(m *processor.Message, parts ...string) string {
	var b strings.Builder
	b.WriteString(a.name)
	b.WriteByte(':')
	b.WriteString(m.Key)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// late handles an event that came after what it belongs to closed: it is
// counted, and dropped, dead-lettered or appended to the late stream.
// keep is always false: the event goes no further down the steps.
func (a *analytic) late(ev *Event, policy LatePolicy, what string) (keep bool, err error) {
	m := ev.Message()
	switch policy.action {
	case LateDeadLetter:
		// Counted by the dead-letter metrics, under reason "late".
		return false, processor.Permanentf(ReasonLate, "%s: %s closed before the event came (event time %s, watermark %s)",
			a.name, what, m.EventTime.UTC().Format(time.RFC3339Nano), m.Watermark().UTC().Format(time.RFC3339Nano))
	case "stream":
		data, err := ev.payloadJSON()
		if err != nil {
			return false, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("encoding the payload: %w", err))
		}
		id := m.DedupeID
		if id == "" {
			id = m.ID
		}
		m.Emit(policy.stream, 0, "key", m.Key, "id", id, "data", data, "late", a.name)
	}
	m.Count(CountName(a.name, "late", ""), 1)
	return false, nil
}

// nonNegativeMS checks a duration that may be 0 and is kept in whole
// milliseconds, and returns it in ms.
func nonNegativeMS(cfg StepConfig, errs *[]error, field string, d time.Duration) int64 {
	switch {
	case d < 0:
		*errs = append(*errs, cfg.Errorf(field, "must be at least 0, got %s", d))
	case d%time.Millisecond != 0:
		*errs = append(*errs, cfg.Errorf(field, "%s is not a whole number of milliseconds", d))
	}
	return d.Milliseconds()
}

// evalGroup evaluates group_by on ev: the group's values as a JSON array,
// "" without group_by.
func evalGroup(groupBy exprFields, ev *Event) (string, error) {
	if len(groupBy) == 0 {
		return "", nil
	}
	vals := make([]any, len(groupBy))
	for i, g := range groupBy {
		v, err := g.expr.Eval(ev)
		if err != nil {
			return "", fmt.Errorf("group_by.%s: %w", g.name, err)
		}
		vals[i] = v
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return "", processor.Permanentf(processor.ReasonInvalid, "group_by: %v", err)
	}
	return string(b), nil
}

// groupParts decodes a group's JSON array (evalGroup) into its values as
// result id parts and as the results' "group" object (nil without
// group_by). The state holds what evalGroup wrote, so it decodes.
func groupParts(groupBy exprFields, g json.RawMessage) ([]string, map[string]any) {
	if len(groupBy) == 0 {
		return nil, nil
	}
	vals, _ := groupValues(g) // a short or broken array leaves values nil below
	parts := make([]string, len(groupBy))
	group := make(map[string]any, len(groupBy))
	for i, gb := range groupBy {
		var v any
		if i < len(vals) {
			v = vals[i]
		}
		parts[i], group[gb.name] = formatValue(v), v
	}
	return parts, group
}

// groupValues decodes a group's JSON array (evalGroup), numbers kept as
// they were written.
func groupValues(g json.RawMessage) ([]any, error) {
	d := json.NewDecoder(bytes.NewReader(g))
	d.UseNumber()
	var vals []any
	err := d.Decode(&vals)
	return vals, err
}

// evalValues evaluates values on ev as one JSON object; nil without
// values.
func evalValues(values exprFields, ev *Event) (json.RawMessage, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(values))
	for _, v := range values {
		x, err := v.expr.Eval(ev)
		if err != nil {
			return nil, fmt.Errorf("values.%s: %w", v.name, err)
		}
		out[v.name] = x
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, processor.Permanentf(processor.ReasonInvalid, "values: %v", err)
	}
	return b, nil
}

// CountName is the name of a step's count (processor.Message.Count) as the
// metrics read it: "<step>/<what>" or "<step>/<what>/<kind>".
func CountName(step, what, kind string) string {
	if kind == "" {
		return step + "/" + what
	}
	return step + "/" + what + "/" + kind
}

// GaugeOpen is the partition gauge of a step's open windows, sessions,
// funnels or active alerts (processor.Message.GaugeAdd): "<step>/open".
func GaugeOpen(step string) string { return step + "/open" }

// errNoEventTime is the error of an event-time step given an event
// without one (the pipeline's decoder normally dead-letters those first).
var errNoEventTime = errors.New("the event has no event time (input.event_time)")

// AnalyticsSteps returns the names of the pipeline's analytics steps
// (window, session, funnel, threshold, absence), in order.
func (p *Pipeline) AnalyticsSteps() []string {
	var names []string
	for _, s := range p.steps {
		if as, ok := s.step.(analyticStep); ok {
			names = append(names, as.base().name)
		}
	}
	return names
}
