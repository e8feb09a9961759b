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

// saga: an orchestrated saga per key, a state machine whose actions are
// commands emitted as events and whose replies are events of the key.
//
//	saga:
//	  name: order
//	  output: {stream: orders:commands}
//	  start: 'type == "order.placed"'
//	  correlate: command_id
//	  fields: {order_id: order_id, amount: amount}
//	  steps:
//	    - name: reserve_inventory
//	      command: {type: inventory.reserve}
//	      done: 'type == "inventory.reserved"'
//	      failed: 'type == "inventory.rejected"'
//	      timeout: 30s
//	      compensate: {type: inventory.release}
//	    - …
//
// An event for which start holds starts a saga of its key: the first
// step's command is emitted and the step's timeout armed (a timer). A reply
// for which the current step's done holds (tested before failed) emits the
// next step's command, or, after the last step, ends the saga "completed".
// A reply for which its failed holds, or the step's timeout passing with no
// such reply (the timer fires with no input at all), starts the
// compensation: the compensate commands of the steps done so far are
// emitted in reverse order, each once, all in one commit, and the saga ends
// "compensated" ("failed" when no step done had a compensate command:
// nothing to undo). A step without compensate needs no undo. The step that
// failed or timed out is not compensated: its service answered that it did
// nothing, or did not answer (a service that acts on a command after its
// saga timed out must undo that itself).
//
// The timeout rule is the same for replies and timers: a reply handled once
// the step's deadline (its command's time + timeout, in the step's time:
// the watermark in event time, the engine clock otherwise) has passed finds
// the step timed out, and the saga compensated before it is looked at.
//
// Ignored, counted and passed on (the counts "<name>/ignored/<why>"): a
// start while the key's saga runs ("busy") or of the saga that ran last
// ("duplicate": a redelivered start event does not start it twice); a
// reply matching another step's done or failed than the current one's, or,
// with correlate, answering another command than the current one or none
// ("stale"); a reply matching any step's done or failed while the key has
// no saga running: it came after the end ("ended"). Every event, a reply or
// not, goes on to the next step.
//
// Commands and results go to output.stream (see ResultOutput) with the
// fields key, id, kind and data. A command (kind "command") has id
// command_id, and data: type, saga (the step's name), saga_id
// ("<name>:<key>:<start id>", the start id being the start event's dedupe
// id, or its entry id without dedupe), step, command_id
// ("<saga_id>:<step>:do", or ":undo" for a compensation), compensation
// (true or false), and the fields, evaluated on the start event (the
// saga's, then the command's own). A result (kind "saga") has id
// "<saga_id>:<outcome>" and data: saga_id, outcome (completed, compensated
// or failed), started and ended (unix ms, and *_iso), done (the steps that
// completed, in order) and, unless completed, failed_step, reason (failed
// or timeout) and compensated (the steps whose compensations were emitted,
// in the order emitted). The gauge GaugeOpen(name) counts running sagas.
//
// State: the field "saga" of the keyed state hash of the step's name holds
// the key's saga as JSON: while it runs, its id, current step, deadline and
// evaluated fields; once it ended, only its id and outcome (to know a
// redelivered start event). The timer "<name>:timeout" is the current
// step's deadline. Both, and the commands emitted, are written in the
// commit that acks the event or the timer's firing, so a command is emitted
// exactly once across retries, crashes and owner changes.
type sagaStep struct {
	analytic
	start     Cond
	correlate *Expr
	fields    exprFields
	steps     []sagaStepDef
}

// sagaStepDef is one step of a saga, checked.
type sagaStepDef struct {
	name       string
	command    sagaCommand
	done       Cond
	failed     *Cond
	timeoutMS  int64
	compensate *sagaCommand
}

// sagaConfig is the YAML of a saga step.
type sagaConfig struct {
	// Name names the step's state, timers, metrics and the saga ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is "event" or "processing": the clock of the timeouts. Default:
	// event when the pipeline has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where commands and results go. Required.
	Output ResultOutput `yaml:"output"`
	// Start is the condition of an event that starts a saga of its key.
	// Required.
	Start Cond `yaml:"start"`
	// Correlate, if set, is evaluated on a reply: the command id it
	// answers. A reply answering another command than the current one is
	// ignored (stale). Default: none, any reply of the key counts.
	Correlate *Expr `yaml:"correlate"`
	// Fields maps names to expressions evaluated on the start event, copied
	// into every command (compensations too). Default: none.
	Fields exprFields `yaml:"fields"`
	// Timeout is the steps' timeout when a step gives none, above 0, whole
	// milliseconds. Default: none (every step must give one).
	Timeout time.Duration `yaml:"timeout"`
	// Steps are the saga's steps, in order. At least one.
	Steps []sagaStepConfig `yaml:"steps"`
}

func (c *sagaConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

// sagaStepConfig is one item of a saga's steps.
type sagaStepConfig struct {
	// Name names the step in commands and results: [a-z0-9_]+, unique in
	// the saga. Required.
	Name string `yaml:"name"`
	// Command is what the step asks for. Required.
	Command sagaCommand `yaml:"command"`
	// Done is the condition of a reply saying the step is done. Required.
	Done Cond `yaml:"done"`
	// Failed is the condition of a reply saying the step failed. Default:
	// none (only the timeout fails the step).
	Failed *Cond `yaml:"failed"`
	// Timeout is how long the step waits for done or failed, above 0,
	// whole milliseconds. Default: the saga's timeout.
	Timeout time.Duration `yaml:"timeout"`
	// Compensate is the command that undoes the step once it is done,
	// emitted if a later step fails or times out. Default: none (the step
	// needs no undo).
	Compensate *sagaCommand `yaml:"compensate"`
}

// sagaCommand is a command of a step: its type and its own fields.
type sagaCommand struct {
	// Type is the command's "type" field. Required.
	Type string `yaml:"type"`
	// Fields maps names to expressions evaluated on the start event, added
	// to the saga's fields in this command. Default: none.
	Fields exprFields `yaml:"fields"`
}

// Saga outcomes and the reasons a saga is compensated.
const (
	SagaCompleted   = "completed"
	SagaCompensated = "compensated"
	SagaFailed      = "failed"
	SagaRunning     = "running" // in the state only

	SagaReasonFailed  = "failed"
	SagaReasonTimeout = "timeout"
)

// Result kinds of the saga step.
const (
	KindCommand = "command" // a command for a service
	KindSaga    = "saga"    // a saga ended: its outcome
)

// sagaReserved are the command data members the step writes itself.
var sagaReserved = map[string]bool{"type": true, "saga": true, "saga_id": true, "step": true, "command_id": true, "compensation": true}

var sagaStepNameRE = stepNameRE

func newSaga(cfg StepConfig) (Step, error) {
	var c sagaConfig
	a, errs := decodeAnalytic(cfg, &c)
	s := &sagaStep{analytic: a, start: c.Start, correlate: c.Correlate, fields: c.Fields}
	if !cfg.Has("start") {
		errs = append(errs, cfg.Errorf("start", "required: the condition of the event that starts a saga, such as 'type == \"order.placed\"'"))
	}
	checkSagaFields(cfg, &errs, "fields", c.Fields)
	var defMS int64
	if cfg.Has("timeout") {
		defMS = sagaTimeout(cfg, &errs, "timeout", c.Timeout)
	}
	if len(c.Steps) == 0 {
		errs = append(errs, cfg.Errorf("steps", "want at least one step"))
	}
	seen := map[string]int{}
	for i, sc := range c.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		d := sagaStepDef{name: sc.Name, command: sc.Command, done: sc.Done, failed: sc.Failed, compensate: sc.Compensate, timeoutMS: defMS}
		switch first, dup := seen[sc.Name]; {
		case sc.Name == "":
			errs = append(errs, cfg.Errorf(p+".name", "required: it names the step in commands and results"))
		case !sagaStepNameRE.MatchString(sc.Name):
			errs = append(errs, cfg.Errorf(p+".name", "%q must match %s", sc.Name, sagaStepNameRE))
		case dup:
			errs = append(errs, cfg.Errorf(p+".name", "%q is the name of steps[%d] too", sc.Name, first))
		default:
			seen[sc.Name] = i
		}
		checkSagaCommand(cfg, &errs, p+".command", &sc.Command)
		if !cfg.Has(p + ".done") {
			errs = append(errs, cfg.Errorf(p+".done", "required: the condition of the reply that says the step is done"))
		}
		switch {
		case cfg.Has(p + ".timeout"):
			d.timeoutMS = sagaTimeout(cfg, &errs, p+".timeout", sc.Timeout)
		case defMS == 0:
			errs = append(errs, cfg.Errorf(p+".timeout", "required (or the saga's timeout): how long the step waits for its reply, such as 30s"))
		}
		if sc.Compensate != nil {
			checkSagaCommand(cfg, &errs, p+".compensate", sc.Compensate)
		}
		s.steps = append(s.steps, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// sagaTimeout checks a timeout and returns it in ms.
func sagaTimeout(cfg StepConfig, errs *[]error, field string, d time.Duration) int64 {
	if d <= 0 {
		*errs = append(*errs, cfg.Errorf(field, "must be positive, got %s", d))
		return 0
	}
	return nonNegativeMS(cfg, errs, field, d)
}

// checkSagaCommand checks a command's type and fields.
func checkSagaCommand(cfg StepConfig, errs *[]error, path string, c *sagaCommand) {
	if c.Type == "" {
		*errs = append(*errs, cfg.Errorf(path+".type", "required: the command's type, such as inventory.reserve"))
	}
	checkSagaFields(cfg, errs, path+".fields", c.Fields)
}

// checkSagaFields refuses fields named like the members the step writes.
func checkSagaFields(cfg StepConfig, errs *[]error, path string, f exprFields) {
	for _, ne := range f {
		if sagaReserved[ne.name] {
			*errs = append(*errs, cfg.Errorf(path+"."+ne.name, "%q is written by the saga itself (reserved: command_id, compensation, saga, saga_id, step, type)", ne.name))
		}
	}
}

// sagaStateField is the field of the step's state that holds the key's saga.
const sagaStateField = "saga"

// sagaTimer is the suffix of the timer of the current step's deadline.
const sagaTimer = "timeout"

// sagaState is the key's saga as the state keeps it. Times are unix ms in
// the step's time.
type sagaState struct {
	// ID is the saga id.
	ID string `json:"id"`
	// Outcome is SagaRunning, or how it ended.
	Outcome string `json:"o"`
	// Step is the index of the current step while running.
	Step int `json:"s,omitempty"`
	// Started is when it started.
	Started int64 `json:"t,omitempty"`
	// Deadline is when the current step times out.
	Deadline int64 `json:"d,omitempty"`
	// Fields are the saga's fields, evaluated on the start event, each as
	// JSON (numbers kept as they were).
	Fields map[string]json.RawMessage `json:"f,omitempty"`
	// Cmd holds each command's own fields ("<i>" for step i's command,
	// "<i>u" for its compensation), for the commands that have some.
	Cmd map[string]map[string]json.RawMessage `json:"c,omitempty"`
}

func (s *sagaStep) readsPayload() bool { return true }

// Process starts a saga, moves it on by a reply, or ignores the event.
func (s *sagaStep) Process(_ context.Context, ev *Event) (bool, error) {
	m := ev.Message()
	t, err := s.stepTimeMS(ev)
	if err != nil {
		return false, err
	}
	st := &sagaState{}
	found, err := s.load(m, sagaStateField, st)
	if err != nil {
		return false, err
	}
	running := found && st.Outcome == SagaRunning
	if running && s.closed(m, time.UnixMilli(st.Deadline)) {
		// The step timed out before this event: the same rule as the timer.
		if err := s.compensate(m, st, SagaReasonTimeout, s.now(m).UnixMilli()); err != nil {
			return false, err
		}
		running = false
	}
	starts, err := s.start.Test(ev)
	if err != nil {
		return false, fmt.Errorf("start: %w", err)
	}
	if starts {
		id := s.sagaID(m)
		switch {
		case found && st.ID == id:
			m.Count(CountName(s.name, "ignored", "duplicate"), 1)
		case running:
			m.Count(CountName(s.name, "ignored", "busy"), 1)
		default:
			return true, s.begin(m, ev, id, t)
		}
		return true, nil
	}
	idx, done, err := s.reply(ev)
	if err != nil || idx < 0 {
		return err == nil, err
	}
	switch {
	case !running:
		m.Count(CountName(s.name, "ignored", "ended"), 1)
	case idx != st.Step:
		m.Count(CountName(s.name, "ignored", "stale"), 1)
	default:
		stale, err := s.stale(ev, st)
		if err != nil {
			return false, err
		}
		if stale {
			m.Count(CountName(s.name, "ignored", "stale"), 1)
			break
		}
		if done {
			return true, s.advance(m, st, t)
		}
		return true, s.compensate(m, st, SagaReasonFailed, t)
	}
	return true, nil
}

// sagaID is the id of the saga the start event m starts.
func (s *sagaStep) sagaID(m *processor.Message) string {
	id := m.DedupeID
	if id == "" {
		id = m.ID
	}
	return s.resultID(m, id)
}

// reply finds the step whose done or failed ev matches: its index (-1 for
// none) and whether it is done. Each step's done is tested before its
// failed, steps in order.
func (s *sagaStep) reply(ev *Event) (int, bool, error) {
	for i, d := range s.steps {
		ok, err := d.done.Test(ev)
		if err != nil {
			return -1, false, fmt.Errorf("steps[%d].done: %w", i, err)
		}
		if ok {
			return i, true, nil
		}
		if d.failed == nil {
			continue
		}
		if ok, err = d.failed.Test(ev); err != nil {
			return -1, false, fmt.Errorf("steps[%d].failed: %w", i, err)
		}
		if ok {
			return i, false, nil
		}
	}
	return -1, false, nil
}

// stale reports whether, with correlate, ev answers another command than
// st's current one.
func (s *sagaStep) stale(ev *Event, st *sagaState) (bool, error) {
	if s.correlate == nil {
		return false, nil
	}
	v, err := s.correlate.Eval(ev)
	if err != nil {
		return false, fmt.Errorf("correlate: %w", err)
	}
	return v == nil || formatValue(v) != commandID(st.ID, s.steps[st.Step].name, false), nil
}

// begin starts the saga id by the start event ev at t.
func (s *sagaStep) begin(m *processor.Message, ev *Event, id string, t int64) error {
	st := &sagaState{ID: id, Outcome: SagaRunning, Started: t}
	var err error
	if st.Fields, err = evalSagaFields(s.fields, ev, "fields"); err != nil {
		return err
	}
	for i, d := range s.steps {
		if err := st.keep(ev, strconv.Itoa(i), d.command.Fields, fmt.Sprintf("steps[%d].command.fields", i)); err != nil {
			return err
		}
		if d.compensate != nil {
			if err := st.keep(ev, strconv.Itoa(i)+"u", d.compensate.Fields, fmt.Sprintf("steps[%d].compensate.fields", i)); err != nil {
				return err
			}
		}
	}
	m.GaugeAdd(GaugeOpen(s.name), 1)
	return s.issue(m, st, t)
}

// keep evaluates a command's own fields on the start event into st.Cmd.
func (st *sagaState) keep(ev *Event, k string, f exprFields, path string) error {
	if len(f) == 0 {
		return nil
	}
	v, err := evalSagaFields(f, ev, path)
	if err != nil {
		return err
	}
	if st.Cmd == nil {
		st.Cmd = map[string]map[string]json.RawMessage{}
	}
	st.Cmd[k] = v
	return nil
}

// issue emits st's current step's command, arms its deadline from t and
// saves st.
func (s *sagaStep) issue(m *processor.Message, st *sagaState, t int64) error {
	d := s.steps[st.Step]
	if err := s.command(m, st, st.Step, false); err != nil {
		return err
	}
	st.Deadline = t + d.timeoutMS
	s.setTimer(m, sagaTimer, time.UnixMilli(st.Deadline), commandID(st.ID, d.name, false))
	return s.save(m, sagaStateField, st)
}

// command emits step i's command, or its compensation.
func (s *sagaStep) command(m *processor.Message, st *sagaState, i int, undo bool) error {
	d := s.steps[i]
	typ, k := d.command.Type, strconv.Itoa(i)
	if undo {
		typ, k = d.compensate.Type, k+"u"
	}
	id := commandID(st.ID, d.name, undo)
	data := make(map[string]any, len(st.Fields)+len(st.Cmd[k])+6)
	// The fields as the start event gave them: json.RawMessage marshals as
	// it is.
	for n, v := range st.Fields {
		data[n] = v
	}
	for n, v := range st.Cmd[k] {
		data[n] = v
	}
	data["type"], data["saga"], data["saga_id"] = typ, s.name, st.ID
	data["step"], data["command_id"], data["compensation"] = d.name, id, undo
	return s.emit(m, KindCommand, id, data)
}

// commandID is the id of a saga's command of step, or of its compensation.
func commandID(sagaID, step string, undo bool) string {
	if undo {
		return sagaID + ":" + step + ":undo"
	}
	return sagaID + ":" + step + ":do"
}

// advance records the current step done at t: the next step's command,
// or the saga's completion.
func (s *sagaStep) advance(m *processor.Message, st *sagaState, t int64) error {
	st.Step++
	if st.Step < len(s.steps) {
		return s.issue(m, st, t)
	}
	done := make([]string, len(s.steps))
	for i, d := range s.steps {
		done[i] = d.name
	}
	r := s.result(st, SagaCompleted, t, done)
	return s.end(m, st, SagaCompleted, r)
}

// compensate emits the compensations of the steps done, in reverse order,
// and ends the saga: its current step failed or timed out (reason) at t.
func (s *sagaStep) compensate(m *processor.Message, st *sagaState, reason string, t int64) error {
	done := make([]string, 0, st.Step)
	undone := []string{}
	for i := 0; i < st.Step; i++ {
		done = append(done, s.steps[i].name)
	}
	for i := st.Step - 1; i >= 0; i-- {
		if s.steps[i].compensate == nil {
			continue
		}
		if err := s.command(m, st, i, true); err != nil {
			return err
		}
		undone = append(undone, s.steps[i].name)
	}
	outcome := SagaCompensated
	if len(undone) == 0 {
		outcome = SagaFailed
	}
	r := s.result(st, outcome, t, done)
	r["failed_step"], r["reason"], r["compensated"] = s.steps[st.Step].name, reason, undone
	return s.end(m, st, outcome, r)
}

// result is the data of st's result, ended at t with the steps done.
func (s *sagaStep) result(st *sagaState, outcome string, t int64, done []string) map[string]any {
	return map[string]any{
		"saga_id": st.ID, "outcome": outcome, "done": done,
		"started": st.Started, "started_iso": isoMS(st.Started),
		"ended": t, "ended_iso": isoMS(t),
	}
}

// end emits the result r and leaves in the state only the ended saga's id
// and outcome.
func (s *sagaStep) end(m *processor.Message, st *sagaState, outcome string, r map[string]any) error {
	if err := s.emit(m, KindSaga, st.ID+":"+outcome, r); err != nil {
		return err
	}
	s.cancelTimer(m, sagaTimer)
	m.GaugeAdd(GaugeOpen(s.name), -1)
	*st = sagaState{ID: st.ID, Outcome: outcome}
	return s.save(m, sagaStateField, st)
}

// Fire times the current step out, if the firing is its deadline's.
func (s *sagaStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	suffix, ok := s.ownsTimer(m)
	if !ok || suffix != sagaTimer {
		return nil
	}
	st := &sagaState{}
	found, err := s.load(m, sagaStateField, st)
	if err != nil || !found || st.Outcome != SagaRunning {
		return err // ended: a timer left behind by hand
	}
	if m.Timer.Payload != commandID(st.ID, s.steps[st.Step].name, false) {
		return nil // another step's deadline: the current one's timer is set
	}
	if !s.closed(m, time.UnixMilli(st.Deadline)) {
		// Not due yet (a clock behind the timer's): the firing removed it.
		s.setTimer(m, sagaTimer, time.UnixMilli(st.Deadline), m.Timer.Payload)
		return nil
	}
	return s.compensate(m, st, SagaReasonTimeout, s.now(m).UnixMilli())
}

// evalSagaFields evaluates fields on ev, each to its JSON.
func evalSagaFields(f exprFields, ev *Event, path string) (map[string]json.RawMessage, error) {
	if len(f) == 0 {
		return nil, nil
	}
	out := make(map[string]json.RawMessage, len(f))
	for _, ne := range f {
		v, err := ne.expr.Eval(ev)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", path, ne.name, err)
		}
		b, err := json.Marshal(v)
		if err != nil { // a NaN or Inf
			return nil, processor.Permanentf(processor.ReasonInvalid, "%s.%s: %v", path, ne.name, err)
		}
		out[ne.name] = b
	}
	return out, nil
}

var (
	_ TimerStep    = (*sagaStep)(nil)
	_ analyticStep = (*sagaStep)(nil)
)
