package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// Window kinds.
const (
	WindowTumbling = "tumbling" // back-to-back windows of size
	WindowHopping  = "hopping"  // windows of size starting every hop
	WindowSession  = "session"  // per key and group, events closer than gap
)

// MaxWindowHops bounds size/hop of a hopping window: how many windows, each
// a state field and a timer written with the event, one event opens.
const MaxWindowHops = 100

// Emit modes of the window step.
const (
	EmitClose  = "close"  // one result per window, when it closes
	EmitUpdate = "update" // a result after each event the window takes
	EmitBoth   = "both"   // both
)

// window: aggregates of a key's events over tumbling, hopping or session
// windows, per group, in event time (the pipeline's input.event_time,
// closed by the watermark) or processing time (the engine clock).
//
// A tumbling window holds the events of [start, start+size), starts
// aligned to multiples of size since the Unix epoch; a hopping window is
// as long, and one starts every hop, so an event belongs to size/hop of
// them. A session holds events of one key and group less than gap apart:
// an event within gap of a session joins it, one within gap of two
// sessions merges them, and a session closes gap after its last event.
//
// A window closes when the step's time (the watermark, or the clock)
// reaches its end plus grace (for a session, its last event plus gap plus
// grace). An event is late when every window it belongs to has closed (for
// a session, when the session it would open or join has): it is counted
// and dropped, dead-lettered or sent to a stream (late). A hopping event
// too late for its older windows only is added to the newer ones.
//
// Results are entries of output.stream (see ResultOutput): kind "window"
// when a window closes, kind "update" after each event it takes (emit
// update or both), with data {start, end (unix ms; a session's end is the
// time of its last event), group (with group_by: name → value), count
// (events), key, and each aggregate by its name}. The id is
// "<name>:<key>:<group values…>:<start>:<end>", and ":u<n>" after it for
// the update that the window's n-th event made: the same input gives the
// same ids.
//
// Aggregates: count (events), {count: f} (events with f present), sum,
// min, max, avg of a numeric field, first and last value of a field (by the
// step's time; the earlier arrival wins a tie for first, the later for
// last), count_distinct of a field (a HyperLogLog sketch kept in the
// window's state: exact up to a few thousand values, about 0.8% off
// beyond). A field that is absent or null is not counted by its
// aggregate. A numeric field's value may be a JSON number or a string
// holding one (entry fields are strings); anything else dead-letters the
// event with reason invalid, naming the field. sum is exact while every
// value is an integer and the sum fits int64, else it is the float64 sum
// in arrival order; min, max and avg are float64; an aggregate without
// values is null (0 for the counts).
//
// State: the key's keyed state hash of the step's name holds one field per
// open window ("w<start>|<group>", or "s<group>|<id>" with an index
// "i<group>" of a group's open sessions) and, once a window has closed,
// "c" (tumbling, hopping: the end of the latest window closed) or
// "c<group>" (sessions: the latest end plus gap closed), so that an
// owner that starts from an older watermark never opens a closed window
// again; a window's field is dropped when it closes. Each window has a
// timer of the same name.
type windowStep struct {
	analytic
	kind       string
	size, hop  int64 // ms; hop == size for tumbling
	gap        int64 // ms, sessions
	graceMS    int64
	groupBy    exprFields
	aggs       windowAggs
	emitUpdate bool
	emitClose  bool
	latePolicy LatePolicy
}

// windowConfig is the window step's YAML.
type windowConfig struct {
	// Name names the step's state, timers, metrics and result ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is event or processing. Default: event when the pipeline has
	// input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where results go. Required.
	Output ResultOutput `yaml:"output"`
	// Kind is tumbling, hopping or session. Default tumbling.
	Kind string `yaml:"kind"`
	// Size is the length of a tumbling or hopping window, a whole number
	// of milliseconds. Required for those; not for sessions.
	Size time.Duration `yaml:"size"`
	// Hop is how often a hopping window starts: more than 0, at most
	// size, and dividing it. Hopping only, required there.
	Hop time.Duration `yaml:"hop"`
	// Gap is a session's inactivity gap, whole milliseconds. Sessions
	// only, required there.
	Gap time.Duration `yaml:"gap"`
	// Grace is how long after a window's end events for it are still
	// taken (it closes at end + grace), >= 0, whole milliseconds, at most
	// the pipeline's dedupe window. Default 0. In processing time it only
	// delays the close.
	Grace time.Duration `yaml:"grace"`
	// GroupBy maps group names to expressions: the windows of a key are
	// kept apart per group value(s), which the results carry in "group".
	// Default: none (one set of windows per key).
	GroupBy exprFields `yaml:"group_by"`
	// Aggregates maps result names to aggregates: count, or {<function>:
	// <field path>} with function count, sum, min, max, avg, first, last
	// or count_distinct. Required, at least one.
	Aggregates windowAggs `yaml:"aggregates"`
	// Emit is close (a result when a window closes), update (one after
	// every event it takes) or both. Default close.
	Emit string `yaml:"emit"`
	// Late is what happens to a late event: drop, dead_letter or
	// stream:<name>. Default drop. Late events are counted either way.
	Late string `yaml:"late"`
}

func (c *windowConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

// windowReserved are the names of a window result's own data fields,
// which an aggregate cannot take.
var windowReserved = []string{"start", "end", "group", "count", "key"}

func newWindow(cfg StepConfig) (Step, error) {
	var c windowConfig
	a, errs := decodeAnalytic(cfg, &c)
	w := &windowStep{analytic: a, kind: c.Kind, groupBy: c.GroupBy, aggs: c.Aggregates}
	if w.kind == "" {
		w.kind = WindowTumbling
	}
	ms := func(field string, d time.Duration) int64 {
		if d%time.Millisecond != 0 {
			errs = append(errs, cfg.Errorf(field, "%s is not a whole number of milliseconds", d))
		}
		return d.Milliseconds()
	}
	switch w.kind {
	case WindowTumbling, WindowHopping:
		if c.Size <= 0 {
			errs = append(errs, cfg.Errorf("size", "required for %s windows: a duration above 0, such as 1m", w.kind))
		}
		w.size = ms("size", c.Size)
		if cfg.Has("gap") {
			errs = append(errs, cfg.Errorf("gap", "only session windows have a gap (kind is %s)", w.kind))
		}
	case WindowSession:
		if c.Gap <= 0 {
			errs = append(errs, cfg.Errorf("gap", "required for session windows: a duration above 0, such as 30m"))
		}
		w.gap = ms("gap", c.Gap)
		if cfg.Has("size") {
			errs = append(errs, cfg.Errorf("size", "session windows have no size: they close gap after their last event"))
		}
	default:
		errs = append(errs, cfg.Errorf("kind", "want %s, %s or %s, got %q", WindowTumbling, WindowHopping, WindowSession, c.Kind))
	}
	switch {
	case w.kind == WindowHopping && !cfg.Has("hop"):
		errs = append(errs, cfg.Errorf("hop", "required for hopping windows: how often one starts, dividing size"))
	case w.kind == WindowHopping && c.Hop <= 0:
		errs = append(errs, cfg.Errorf("hop", "must be above 0"))
	case w.kind == WindowHopping && c.Size > 0 && c.Hop > c.Size:
		errs = append(errs, cfg.Errorf("hop", "%s is longer than size %s", c.Hop, c.Size))
	case w.kind == WindowHopping && c.Size > 0 && c.Size%c.Hop != 0:
		errs = append(errs, cfg.Errorf("hop", "%s does not divide size %s: each event must belong to a whole number of windows", c.Hop, c.Size))
	case w.kind == WindowHopping && c.Size > 0 && c.Size/c.Hop > MaxWindowHops:
		errs = append(errs, cfg.Errorf("hop", "size %s / hop %s is %d windows for every event, over %d: each is a state field and a timer", c.Size, c.Hop, c.Size/c.Hop, MaxWindowHops))
	case w.kind == WindowHopping:
		w.hop = ms("hop", c.Hop)
	case cfg.Has("hop"):
		errs = append(errs, cfg.Errorf("hop", "only hopping windows have a hop (kind is %s)", w.kind))
	default:
		w.hop = w.size
	}
	if c.Grace < 0 {
		errs = append(errs, cfg.Errorf("grace", "must be at least 0"))
	}
	w.grace = c.Grace
	w.graceMS = ms("grace", c.Grace)
	if len(c.Aggregates) == 0 && !cfg.Has("aggregates") {
		errs = append(errs, cfg.Errorf("aggregates", "required: at least one, such as {views: count}"))
	}
	for _, ag := range c.Aggregates {
		if slices.Contains(windowReserved, ag.name) {
			errs = append(errs, cfg.Errorf("aggregates."+ag.name, "%q is a field of every window result (%s): name the aggregate otherwise", ag.name, strings.Join(windowReserved, ", ")))
		}
	}
	switch c.Emit {
	case "", EmitClose:
		w.emitClose = true
	case EmitUpdate:
		w.emitUpdate = true
	case EmitBoth:
		w.emitClose, w.emitUpdate = true, true
	default:
		errs = append(errs, cfg.Errorf("emit", "want %s, %s or %s, got %q", EmitClose, EmitUpdate, EmitBoth, c.Emit))
	}
	var err error
	if w.latePolicy, err = parseLate(cfg, c.Late); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

// windowState is one open window (or session) in the key's state.
type windowState struct {
	// S is the start (unix ms); E the end (exclusive) of a tumbling or
	// hopping window, the time of a session's last event.
	S int64 `json:"s"`
	E int64 `json:"e"`
	// N counts the events taken.
	N int64 `json:"n"`
	// G is the group values as a JSON array; absent without group_by.
	G json.RawMessage `json:"g,omitempty"`
	// A holds the aggregates, in config order.
	A []aggState `json:"a"`
}

// Process adds the event to its windows, opening those it is the first
// of; an event for none but closed windows is late.
func (w *windowStep) Process(_ context.Context, ev *Event) (bool, error) {
	t, err := w.stepTimeMS(ev)
	if err != nil {
		return false, err
	}
	gkey, err := evalGroup(w.groupBy, ev)
	if err != nil {
		return false, err
	}
	in := make([]aggInput, len(w.aggs))
	for i := range w.aggs {
		if w.aggs[i].has {
			in[i].v, in[i].present = ev.Get(w.aggs[i].field)
		}
	}
	if w.kind == WindowSession {
		return w.session(ev, t, gkey, in)
	}
	return w.fixed(ev, t, gkey, in)
}

// readsPayload: a window reads its aggregates' fields one by one (Event.Get
// reads them from the JSON as it arrived), so the payload is decoded only
// for group_by expressions that read it.
func (w *windowStep) readsPayload() bool {
	for _, g := range w.groupBy {
		if !g.expr.lean {
			return true
		}
	}
	return false
}

// aggInput is an event's value of one aggregate's field.
type aggInput struct {
	v       any
	present bool
}

// fixed adds the event at t to its tumbling or hopping windows.
func (w *windowStep) fixed(ev *Event, t int64, gkey string, in []aggInput) (bool, error) {
	m := ev.Message()
	mark, err := w.mark(m, "c")
	if err != nil {
		return false, err
	}
	last := floorDiv(t, w.hop) * w.hop
	took := 0
	for start := last - w.size + w.hop; start <= last; start += w.hop {
		end := start + w.size
		if end <= mark || w.closed(m, time.UnixMilli(end+w.graceMS)) {
			continue
		}
		field := "w" + strconv.FormatInt(start, 10) + "|" + gkey
		st, err := w.open(m, field, start, end, gkey)
		if err != nil {
			return false, err
		}
		if err := w.take(st, t, in); err != nil {
			return false, err
		}
		if err := w.save(m, field, st); err != nil {
			return false, err
		}
		if err := w.update(m, st); err != nil {
			return false, err
		}
		took++
	}
	if took == 0 {
		return w.late(ev, w.latePolicy, fmt.Sprintf("the window of %s", time.UnixMilli(t).UTC().Format(time.RFC3339Nano)))
	}
	return true, nil
}

// open loads the window in field, or opens it: a new window, its timer at
// end + grace, one more open window.
func (w *windowStep) open(m *processor.Message, field string, start, end int64, gkey string) (*windowState, error) {
	st := &windowState{}
	found, err := w.load(m, field, st)
	if err != nil || found {
		return st, err
	}
	*st = windowState{S: start, E: end, A: make([]aggState, len(w.aggs))}
	if gkey != "" {
		st.G = json.RawMessage(gkey)
	}
	w.setTimer(m, field, time.UnixMilli(end+w.graceMS), "")
	m.GaugeAdd(GaugeOpen(w.name), 1)
	return st, nil
}

// take adds the event at t to st.
func (w *windowStep) take(st *windowState, t int64, in []aggInput) error {
	st.N++
	for i := range w.aggs {
		if err := st.A[i].add(&w.aggs[i], in[i].v, in[i].present, t); err != nil {
			return err
		}
	}
	return nil
}

// update emits st's update result, with emit update or both.
func (w *windowStep) update(m *processor.Message, st *windowState) error {
	if !w.emitUpdate {
		return nil
	}
	data, id, err := w.result(m, st)
	if err != nil {
		return err
	}
	return w.emit(m, KindUpdate, id+":u"+strconv.FormatInt(st.N, 10), data)
}

// session adds the event at t to the group's session it falls in,
// merging the sessions it bridges, or opens one.
func (w *windowStep) session(ev *Event, t int64, gkey string, in []aggInput) (bool, error) {
	m := ev.Message()
	mark, err := w.mark(m, "c"+gkey)
	if err != nil {
		return false, err
	}
	what := func() string {
		return fmt.Sprintf("the session of %s", time.UnixMilli(t).UTC().Format(time.RFC3339Nano))
	}
	if t < mark {
		return w.late(ev, w.latePolicy, what())
	}
	index := "i" + gkey
	var ids []int64
	if _, err := w.load(m, index, &ids); err != nil {
		return false, err
	}
	type openSession struct {
		id    int64
		field string
		st    *windowState
	}
	var hit []openSession
	for _, id := range ids {
		field := winSessionField(gkey, id)
		st := &windowState{}
		found, err := w.load(m, field, st)
		if err != nil {
			return false, err
		}
		if !found || t <= st.S-w.gap || t >= st.E+w.gap {
			continue
		}
		if w.closed(m, time.UnixMilli(st.E+w.gap+w.graceMS)) {
			// Closed, its timer about to fire: the event is late for it.
			return w.late(ev, w.latePolicy, what())
		}
		hit = append(hit, openSession{id, field, st})
	}
	var keep openSession
	switch {
	case len(hit) == 0:
		if w.closed(m, time.UnixMilli(t+w.gap+w.graceMS)) {
			return w.late(ev, w.latePolicy, what())
		}
		keep = openSession{id: t, field: winSessionField(gkey, t), st: &windowState{S: t, E: t, A: make([]aggState, len(w.aggs))}}
		if gkey != "" {
			keep.st.G = json.RawMessage(gkey)
		}
		ids = insertSorted(ids, t)
		m.GaugeAdd(GaugeOpen(w.name), 1)
		if err := w.save(m, index, ids); err != nil {
			return false, err
		}
	default:
		keep = hit[0]
		for _, o := range hit[1:] { // the event bridges them: one session now
			keep.st.S, keep.st.E = min(keep.st.S, o.st.S), max(keep.st.E, o.st.E)
			keep.st.N += o.st.N
			for i := range w.aggs {
				if err := keep.st.A[i].merge(&w.aggs[i], &o.st.A[i]); err != nil {
					return false, err
				}
			}
			w.drop(m, o.field)
			w.cancelTimer(m, o.field)
			m.GaugeAdd(GaugeOpen(w.name), -1)
			ids = slices.DeleteFunc(ids, func(id int64) bool { return id == o.id })
		}
		if len(hit) > 1 {
			if err := w.save(m, index, ids); err != nil {
				return false, err
			}
		}
	}
	oldEnd := keep.st.E
	keep.st.S, keep.st.E = min(keep.st.S, t), max(keep.st.E, t)
	if err := w.take(keep.st, t, in); err != nil {
		return false, err
	}
	if len(hit) != 1 || keep.st.E != oldEnd {
		w.setTimer(m, keep.field, time.UnixMilli(keep.st.E+w.gap+w.graceMS), "")
	}
	if err := w.save(m, keep.field, keep.st); err != nil {
		return false, err
	}
	if err := w.update(m, keep.st); err != nil {
		return false, err
	}
	return true, nil
}

func winSessionField(gkey string, id int64) string {
	return "s" + gkey + "|" + strconv.FormatInt(id, 10)
}

func insertSorted(ids []int64, id int64) []int64 {
	i, found := slices.BinarySearch(ids, id)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

// Fire closes the window of one of the step's timers: its result (emit
// close or both), its field dropped, the closed mark moved.
func (w *windowStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	field, ok := w.ownsTimer(m)
	if !ok {
		return nil
	}
	st := &windowState{}
	found, err := w.load(m, field, st)
	if err != nil || !found {
		return err // not found: closed already (a timer left behind by hand)
	}
	if w.emitClose {
		data, id, err := w.result(m, st)
		if err != nil {
			return err
		}
		if err := w.emit(m, KindWindow, id, data); err != nil {
			return err
		}
	}
	w.drop(m, field)
	m.GaugeAdd(GaugeOpen(w.name), -1)
	markField, end := "c", st.E
	if w.kind == WindowSession {
		gkey, idText, cut := cutLast(field[1:], "|")
		id, perr := strconv.ParseInt(idText, 10, 64)
		if !cut || perr != nil {
			return processor.Permanentf(processor.ReasonInvalid, "%s: timer %q does not name a session", w.name, field)
		}
		markField, end = "c"+gkey, st.E+w.gap
		index := "i" + gkey
		var ids []int64
		if _, err := w.load(m, index, &ids); err != nil {
			return err
		}
		if ids = slices.DeleteFunc(ids, func(x int64) bool { return x == id }); len(ids) == 0 {
			w.drop(m, index)
		} else if err := w.save(m, index, ids); err != nil {
			return err
		}
	}
	mark, err := w.mark(m, markField)
	if err != nil {
		return err
	}
	if end > mark {
		m.StateSet(w.name, markField, strconv.FormatInt(end, 10))
	}
	return nil
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// mark reads a closed mark (unix ms); the lowest int64 when there is none.
func (w *windowStep) mark(m *processor.Message, field string) (int64, error) {
	st, err := m.State(w.name)
	if err != nil {
		return 0, err
	}
	s, ok := st.Get(field)
	if !ok {
		return -1 << 63, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("state %s field %q: %w", w.name, field, err))
	}
	return n, nil
}

// result is st's result data and id.
func (w *windowStep) result(m *processor.Message, st *windowState) (map[string]any, string, error) {
	data := make(map[string]any, len(w.aggs)+5)
	data["start"], data["end"], data["count"], data["key"] = st.S, st.E, st.N, m.Key
	parts := make([]string, 0, len(w.groupBy)+2)
	if len(w.groupBy) > 0 {
		vals, err := groupValues(st.G)
		if err != nil || len(vals) != len(w.groupBy) {
			return nil, "", processor.Permanentf(processor.ReasonInvalid, "%s: window group %s does not match group_by", w.name, st.G)
		}
		group := make(map[string]any, len(vals))
		for i, g := range w.groupBy {
			group[g.name] = vals[i]
			parts = append(parts, formatValue(vals[i]))
		}
		data["group"] = group
	}
	for i := range w.aggs {
		v, err := st.A[i].value(&w.aggs[i])
		if err != nil {
			return nil, "", err
		}
		data[w.aggs[i].name] = v
	}
	parts = append(parts, strconv.FormatInt(st.S, 10), strconv.FormatInt(st.E, 10))
	return data, w.resultID(m, parts...), nil
}

// floorDiv is a/b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

var (
	_ TimerStep    = (*windowStep)(nil)
	_ analyticStep = (*windowStep)(nil)
)

// bindPipeline checks the step against the steps before it: a numeric
// aggregate (sum, min, max, avg) of a field that a schema step's schema
// (any registered version of its type) does not allow to be a number is a
// problem at the aggregate. A field a schema leaves open is not.
func (w *windowStep) bindPipeline(c *checker, sc StepConfig, p *Pipeline) {
	for _, b := range p.steps {
		if b.step == Step(w) {
			return // only the steps before it
		}
		ss, ok := b.step.(*schemaStep)
		if !ok {
			continue
		}
		for _, v := range ss.reg.Versions(ss.typ) {
			s := ss.reg.Lookup(ss.typ, v)
			for _, ag := range w.aggs {
				if !numericAgg(ag.fn) || !refusesNumber(s, ag.field) {
					continue
				}
				field := "aggregates." + ag.name + "." + ag.fn
				c.addAt(lineOf(c, sc, field), joinPath(sc.Path, field),
					"%s of %q: the schema of type %q version %d (steps[%d]) does not allow a number there", ag.fn, ag.field, ss.typ, v, b.index)
			}
		}
	}
}

// refusesNumber reports whether s fails an event holding 1 at path with a
// "type" failure at that very place.
func refusesNumber(s *schema.Schema, path Path) bool {
	var probe any = int64(1)
	ptr := ""
	for i := len(path.parts) - 1; i >= 0; i-- {
		probe = map[string]any{path.parts[i]: probe}
	}
	for _, part := range path.parts {
		ptr += "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(part)
	}
	b, err := json.Marshal(probe)
	if err != nil {
		return false
	}
	v, err := schema.DecodeJSON(b)
	if err != nil {
		return false
	}
	var ve *schema.ValidationError
	if !errors.As(s.Validate(v), &ve) {
		return false
	}
	for _, f := range ve.Failures {
		if f.Pointer == ptr && f.Rule == "type" {
			return true
		}
	}
	return false
}
