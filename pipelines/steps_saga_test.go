package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
	"github.com/eddy-streams/eddy/processor"
)

// The helpers of the saga tests (prefixed "sg").

// sgSteps are the order saga's steps: reserve (30s, the saga's timeout),
// charge (10s), ship (30s), confirm (no compensation).
const sgSteps = `
          steps:
            - name: reserve_inventory
              command: {type: inventory.reserve, fields: {items: items}}
              done: 'type == "inventory.reserved"'
              failed: 'type == "inventory.rejected"'
              compensate: {type: inventory.release}
            - name: charge_payment
              command: {type: payment.charge}
              done: 'type == "payment.charged"'
              failed: 'type == "payment.declined"'
              timeout: 10s
              compensate: {type: payment.refund, fields: {reason: '"saga compensated"'}}
            - name: create_shipment
              command: {type: shipment.create}
              done: 'type == "shipment.created"'
              failed: 'type == "shipment.failed"'
              compensate: {type: shipment.cancel}
            - name: send_confirmation
              command: {type: notification.confirm}
              done: 'type == "notification.sent"'
              failed: 'type == "notification.failed"'
`

// sgNames are the steps in order, their replies and their timeouts.
var (
	sgNames    = []string{"reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"}
	sgDone     = []string{"inventory.reserved", "payment.charged", "shipment.created", "notification.sent"}
	sgFailed   = []string{"inventory.rejected", "payment.declined", "shipment.failed", "notification.failed"}
	sgTimeouts = []time.Duration{30 * time.Second, 10 * time.Second, 30 * time.Second, 30 * time.Second}
	sgUndo     = []bool{true, true, true, false}
)

// sgConfig is a pipeline "orders" keyed by order_id with dedupe on id,
// and the saga "order" writing to "orders:commands"; in event time (ts)
// when eventTime is set; correlate adds correlate: command_id.
func sgConfig(eventTime, correlate bool) string {
	et, corr := "", ""
	if eventTime {
		et = ", event_time: ts"
	}
	if correlate {
		corr = "\n          correlate: command_id"
	}
	return `
pipelines:
  - name: orders
    input: {stream: orders, payload: data, partitions: 1` + et + `}
    key: order_id
    dedupe: {id: id, window: 1h}
    timers: {tick: 1ms}
    steps:
      - saga:
          name: order
          output: {stream: "orders:commands"}
          start: 'type == "order.placed"'` + corr + `
          fields: {order_id: order_id, amount: amount}
          timeout: 30s` + sgSteps
}

// sgH is a harness of sgConfig.
type sgH struct {
	*pipetest.Harness
	t         testing.TB
	eventTime bool
	n         int // events sent, for their ids
}

func sgHarness(t testing.TB, eventTime, correlate bool, opts pipetest.Options) *sgH {
	t.Helper()
	return sgHarnessOf(t, sgConfig(eventTime, correlate), eventTime, opts)
}

func sgHarnessOf(t testing.TB, config string, eventTime bool, opts pipetest.Options) *sgH {
	t.Helper()
	if eventTime {
		opts.SettleTimeout = alEventSettle
	}
	h := startHarness(t, config, opts)
	return &sgH{Harness: h, t: t, eventTime: eventTime}
}

// settle waits until everything sent is handled.
func (h *sgH) settle() {
	h.t.Helper()
	settleTicking(h.t, h.Harness, time.Millisecond, alTicks(h.eventTime))
}

// send sends the event of order with type typ (and fields kv) with a
// fresh id, at ts t0 + at, and waits until it is handled.
func (h *sgH) send(order, typ string, at time.Duration, kv ...any) {
	h.t.Helper()
	h.n++
	ev := map[string]any{"id": fmt.Sprintf("e%d", h.n), "order_id": order, "type": typ, "ts": ms(at)}
	for i := 0; i+1 < len(kv); i += 2 {
		ev[kv[i].(string)] = kv[i+1]
	}
	h.sendRaw(ev)
}

func (h *sgH) sendRaw(ev map[string]any) {
	h.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.Send("orders", string(b)); err != nil {
		h.t.Fatal(err)
	}
	h.settle()
}

func (h *sgH) advance(d time.Duration) {
	h.t.Helper()
	advance(h.t, h.Harness, d)
}

// entries reads the entries of "orders:commands", their data decoded.
func (h *sgH) entries() []result {
	h.t.Helper()
	return results(h.t, h.Harness, "orders:commands")
}

// summary is each entry in short: "<key> do <step>", "<key> undo <step>"
// or "<key> <outcome>".
func sgSummary(es []result) []string {
	out := make([]string, len(es))
	for i, e := range es {
		switch {
		case e.Kind == pipelines.KindCommand && e.Data["compensation"] == true:
			out[i] = fmt.Sprintf("%s undo %v", e.Key, e.Data["step"])
		case e.Kind == pipelines.KindCommand:
			out[i] = fmt.Sprintf("%s do %v", e.Key, e.Data["step"])
		default:
			out[i] = fmt.Sprintf("%s %v", e.Key, e.Data["outcome"])
		}
	}
	return out
}

// check compares the summary of the entries with want.
func (h *sgH) check(want ...string) []result {
	h.t.Helper()
	es := h.entries()
	if got := sgSummary(es); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
		h.t.Fatalf("orders:commands:\n got %q\nwant %q", got, want)
	}
	return es
}

// state is the saga state of order, decoded.
func (h *sgH) state(order string) map[string]any {
	h.t.Helper()
	st, err := h.State("orders", "order", order)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(st) != 1 {
		h.t.Fatalf("state order of %s = %v, want the one field saga", order, st)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(st["saga"]), &v); err != nil {
		h.t.Fatalf("state saga of %s = %q: %v", order, st["saga"], err)
	}
	return v
}

// checkEnded fails unless order's state holds only its ended saga.
func (h *sgH) checkEnded(order, sagaID, outcome string) {
	h.t.Helper()
	if got, want := h.state(order), map[string]any{"id": sagaID, "o": outcome}; !reflect.DeepEqual(got, want) {
		h.t.Errorf("state of %s = %v, want %v (only the ended saga)", order, got, want)
	}
	h.checkGauge(0)
}

// checkGauge fails unless the saga's open gauge (one partition) is want.
func (h *sgH) checkGauge(want int64) {
	h.t.Helper()
	s, err := h.Client().HGet(context.Background(), processor.GaugesKey("orders", 0, 1, "orders"), pipelines.GaugeOpen("order")).Result()
	if err != nil {
		h.t.Fatalf("gauge %s: %v", pipelines.GaugeOpen("order"), err)
	}
	if got, err := strconv.ParseInt(s, 10, 64); err != nil || got != want {
		h.t.Fatalf("gauge %s = %q, want %d", pipelines.GaugeOpen("order"), s, want)
	}
}

// want builds the summary lines of order: its steps done, then the
// compensations of the steps before failedAt in reverse, then outcome.
func sgWant(order string, failedAt int, outcome string) []string {
	var out []string
	last := failedAt
	if last < 0 {
		last = len(sgNames) - 1
	}
	for i := 0; i <= last; i++ {
		out = append(out, order+" do "+sgNames[i])
	}
	if failedAt >= 0 {
		for i := failedAt - 1; i >= 0; i-- {
			if sgUndo[i] {
				out = append(out, order+" undo "+sgNames[i])
			}
		}
	}
	return append(out, order+" "+outcome)
}

// Every step done: the four commands in order, each carrying the saga's
// ids and the start event's fields, then the result "completed"; the state
// keeps only the ended saga, and the gauge is back to 0.
func TestSagaCompletes(t *testing.T) {
	h := sgHarness(t, false, true, pipetest.Options{})
	h.send("o1", "order.placed", 0, "amount", 12.5, "items", []string{"a", "b"})
	es := h.check("o1 do reserve_inventory")
	sagaID := "order:o1:e1"
	want := result{Key: "o1", ID: sagaID + ":reserve_inventory:do", Kind: "command", Data: map[string]any{
		"type": "inventory.reserve", "saga": "order", "saga_id": sagaID, "step": "reserve_inventory",
		"command_id": sagaID + ":reserve_inventory:do", "compensation": false,
		"order_id": "o1", "amount": 12.5, "items": []any{"a", "b"},
	}}
	if !reflect.DeepEqual(es[0], want) {
		t.Fatalf("command:\n got %s\nwant %s", dump(es[0]), dump(want))
	}
	h.checkGauge(1)
	for i, d := range sgDone {
		h.advance(time.Second)
		h.send("o1", d, 0, "command_id", sagaID+":"+sgNames[i]+":do")
	}
	es = h.check(sgWant("o1", -1, "completed")...)
	if d := es[1].Data; d["type"] != "payment.charge" || d["items"] != nil || d["amount"] != 12.5 {
		t.Errorf("charge command data = %v, want payment.charge with the saga's fields and not reserve's items", d)
	}
	res := es[len(es)-1]
	wantRes := result{Key: "o1", ID: sagaID + ":completed", Kind: "saga", Data: map[string]any{
		"saga_id": sagaID, "outcome": "completed", "done": []any{sgNames[0], sgNames[1], sgNames[2], sgNames[3]},
		"started": float64(ms(0)), "started_iso": iso(0), "ended": float64(ms(4 * time.Second)), "ended_iso": iso(4 * time.Second),
	}}
	if !reflect.DeepEqual(res, wantRes) {
		t.Fatalf("result:\n got %s\nwant %s", dump(res), dump(wantRes))
	}
	h.checkEnded("o1", sagaID, "completed")
	// Nothing is due any more: a long wait emits nothing.
	h.advance(time.Hour)
	h.check(sgWant("o1", -1, "completed")...)
}

// A failure injected at each step in turn: the compensations of the steps
// done, exactly once each, in reverse order, and the outcome (failed when
// the first step fails: nothing to undo). The failed step itself is not
// compensated; a second failure reply and later replies change nothing.
func TestSagaFailureAtEachStep(t *testing.T) {
	for at := range sgNames {
		t.Run(sgNames[at], func(t *testing.T) {
			h := sgHarness(t, false, true, pipetest.Options{})
			h.send("o1", "order.placed", 0, "amount", 20)
			sagaID := "order:o1:e1"
			for i := 0; i < at; i++ {
				h.send("o1", sgDone[i], 0, "command_id", sagaID+":"+sgNames[i]+":do")
			}
			h.send("o1", sgFailed[at], 0, "command_id", sagaID+":"+sgNames[at]+":do")
			outcome := "compensated"
			if at == 0 {
				outcome = "failed"
			}
			want := sgWant("o1", at, outcome)
			es := h.check(want...)
			// The replay of the failure, a late done of the failed step and
			// the timeout's time passing: nothing more.
			h.send("o1", sgFailed[at], 0, "command_id", sagaID+":"+sgNames[at]+":do")
			h.send("o1", sgDone[at], 0, "command_id", sagaID+":"+sgNames[at]+":do")
			h.advance(time.Minute)
			h.check(want...)
			res := es[len(es)-1].Data
			var undone []any
			for i := at - 1; i >= 0; i-- {
				undone = append(undone, sgNames[i])
			}
			if undone == nil {
				undone = []any{}
			}
			if res["failed_step"] != sgNames[at] || res["reason"] != "failed" || !reflect.DeepEqual(res["compensated"], undone) {
				t.Errorf("result = %v, want failed_step %s, reason failed, compensated %v", res, sgNames[at], undone)
			}
			for _, e := range es[at+1 : len(es)-1] {
				step := e.Data["step"].(string)
				if e.ID != sagaID+":"+step+":undo" || e.Data["command_id"] != e.ID || e.Data["amount"] != 20.0 {
					t.Errorf("compensation %s: %v, want id %s:%s:undo and the saga's fields", e.ID, e.Data, sagaID, step)
				}
				if step == "charge_payment" && (e.Data["type"] != "payment.refund" || e.Data["reason"] != "saga compensated") {
					t.Errorf("refund = %v, want type payment.refund and its own field reason", e.Data)
				}
			}
			h.checkEnded("o1", sagaID, outcome)
		})
	}
}

// A reply that never comes, at each step in turn: the step's timeout (a
// timer: no input at all) compensates the steps done, once each, in
// reverse order, not a millisecond before the deadline.
func TestSagaTimeoutAtEachStep(t *testing.T) {
	for at := range sgNames {
		t.Run(sgNames[at], func(t *testing.T) {
			h := sgHarness(t, false, false, pipetest.Options{})
			h.send("o1", "order.placed", 0)
			for i := 0; i < at; i++ {
				h.advance(time.Second)
				h.send("o1", sgDone[i], 0)
			}
			before := sgWant("o1", -1, "")[:at+1]
			h.advance(sgTimeouts[at] - time.Millisecond)
			h.check(before...)
			h.advance(time.Millisecond)
			outcome := "compensated"
			if at == 0 {
				outcome = "failed"
			}
			want := sgWant("o1", at, outcome)
			es := h.check(want...)
			res := es[len(es)-1].Data
			end := time.Duration(at)*time.Second + sgTimeouts[at]
			if res["reason"] != "timeout" || res["failed_step"] != sgNames[at] || res["ended"] != float64(ms(end)) {
				t.Errorf("result = %v, want reason timeout at step %s, ended %d", res, sgNames[at], ms(end))
			}
			// The reply coming after the end changes nothing.
			h.send("o1", sgDone[at], 0)
			h.advance(time.Hour)
			h.check(want...)
			h.checkEnded("o1", "order:o1:e1", outcome)
		})
	}
}

// Replies of other steps, replies answering another command (correlate),
// a second start while the saga runs and the start event redelivered
// after the end are ignored; a new start after the end runs a new saga,
// and a late reply of the old one does not move it.
func TestSagaIgnores(t *testing.T) {
	h := sgHarness(t, false, true, pipetest.Options{})
	h.send("o1", "order.placed", 0)
	s1 := "order:o1:e1"
	h.send("o1", sgDone[1], 0, "command_id", s1+":charge_payment:do")            // another step's
	h.send("o1", sgFailed[1], 0, "command_id", s1+":charge_payment:do")          // another step's
	h.send("o1", sgDone[0], 0, "command_id", "order:o1:e0:reserve_inventory:do") // another command
	h.send("o1", sgDone[0], 0)                                                   // no command id
	h.send("o1", "order.placed", 0)                                              // busy
	h.send("o1", "order.shipped", 0)                                             // not a reply
	h.check("o1 do reserve_inventory")
	if st := h.state("o1"); st["s"] != nil || st["o"] != "running" {
		t.Fatalf("state = %v, want running at step 0", st)
	}
	h.send("o1", sgFailed[0], 0, "command_id", s1+":reserve_inventory:do")
	h.check("o1 do reserve_inventory", "o1 failed")
	// The start event again, with its id (a producer's retry past dedupe's
	// window would look like this): not a second saga.
	for _, k := range h.Redis().Keys() { // past dedupe: the saga's own mark holds
		if strings.Contains(k, "dedupe") {
			h.Redis().Del(k)
		}
	}
	h.sendRaw(map[string]any{"id": "e1", "order_id": "o1", "type": "order.placed"})
	h.check("o1 do reserve_inventory", "o1 failed")
	// A new order event for the key: a new saga, which a late reply of the
	// first does not move.
	h.send("o1", "order.placed", 0)
	s2 := fmt.Sprintf("order:o1:e%d", h.n)
	h.send("o1", sgDone[0], 0, "command_id", s1+":reserve_inventory:do")
	h.check("o1 do reserve_inventory", "o1 failed", "o1 do reserve_inventory")
	h.send("o1", sgDone[0], 0, "command_id", s2+":reserve_inventory:do")
	es := h.check("o1 do reserve_inventory", "o1 failed", "o1 do reserve_inventory", "o1 do charge_payment")
	if es[3].Data["saga_id"] != s2 {
		t.Errorf("charge of saga %v, want %s", es[3].Data["saga_id"], s2)
	}
	// Other keys run their own sagas.
	h.send("o2", "order.placed", 0)
	h.check("o1 do reserve_inventory", "o1 failed", "o1 do reserve_inventory", "o1 do charge_payment", "o2 do reserve_inventory")
}

// A new owner started on the same data mid-saga (a restart) goes on from
// the committed state: the pending timeout compensates once.
func TestSagaRestart(t *testing.T) {
	mr := miniredis.RunT(t)
	h := sgHarness(t, false, false, pipetest.Options{Redis: mr})
	h.send("o1", "order.placed", 0)
	h.send("o1", sgDone[0], 0)
	h.send("o1", sgDone[1], 0)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := sgHarness(t, false, false, pipetest.Options{Redis: mr})
	h2.check("o1 do reserve_inventory", "o1 do charge_payment", "o1 do create_shipment")
	h2.advance(30 * time.Second)
	h2.check(sgWant("o1", 2, "compensated")...)
	h2.advance(time.Hour)
	h2.check(sgWant("o1", 2, "compensated")...)
}

// In event time the deadline is the reply's event time + timeout and the
// watermark, not the clock, reaches it: a reply whose event time is before
// the deadline moves the saga on however late it is read, and another key's
// events moving the watermark past the deadline time the step out.
func TestSagaEventTime(t *testing.T) {
	h := sgHarness(t, true, false, pipetest.Options{})
	h.send("o1", "order.placed", 0)
	h.send("o1", sgDone[0], 20*time.Second)      // within reserve's 30s
	h.send("o2", "order.placed", 29*time.Second) // watermark at 29s
	h.check("o1 do reserve_inventory", "o1 do charge_payment", "o2 do reserve_inventory")
	h.send("o2", "order.placed", 30*time.Second) // a busy start moving the watermark to 30s: charge's deadline
	h.check("o1 do reserve_inventory", "o1 do charge_payment", "o2 do reserve_inventory",
		"o1 undo reserve_inventory", "o1 compensated")
	es := h.entries()
	if r := es[len(es)-1].Data; r["ended"] != float64(ms(30*time.Second)) || r["reason"] != "timeout" {
		t.Errorf("result = %v, want a timeout ended at the watermark 30s", r)
	}
}

// A reply handled after its step's deadline, before the timer fired (the
// owner looks for due timers once an hour here), finds the step timed out:
// the same rule as the timer's, so the outcome does not depend on which of
// the two is handled first.
func TestSagaReplyAfterDeadline(t *testing.T) {
	config := strings.Replace(sgConfig(false, false), "tick: 1ms", "tick: 1h", 1)
	h := sgHarnessOf(t, config, false, pipetest.Options{})
	h.send("o1", "order.placed", 0)
	h.Clock().Advance(30 * time.Second) // the deadline, past the harness's timer handling
	h.send("o1", sgDone[0], 0)
	es := h.check("o1 do reserve_inventory", "o1 failed")
	if r := es[1].Data; r["reason"] != "timeout" || r["ended"] != float64(ms(30*time.Second)) {
		t.Errorf("result = %v, want reason timeout, ended at 30s", r)
	}
	h.checkEnded("o1", "order:o1:e1", "failed")
}

// Every broken saga config is reported, with its path and line.
func TestSagaConfigErrors(t *testing.T) {
	const at = "test.yaml:10: pipelines[0].steps[0].saga."
	const start = "start: 'type == \"order.placed\"'\n          " // line 10
	const step = "\n            - {name: a, command: {type: x}, done: 'type == \"a\"', timeout: 1s}"
	for _, tc := range []struct{ name, saga, want string }{
		{"start missing", "steps:" + step, "test.yaml:8: pipelines[0].steps[0].saga.start: required"},
		{"start broken", "start: 'type =='\n          steps:" + step, at + "start:"},
		{"steps missing", start + "timeout: 1s", "test.yaml:8: pipelines[0].steps[0].saga.steps: want at least one step"},
		{"unknown key", start + "stpes: []", "test.yaml:11: pipelines[0].steps[0].saga.stpes: unknown key"},
		{"timeout negative", start + "timeout: -1s\n          steps:" + step, "test.yaml:11: pipelines[0].steps[0].saga.timeout: must be positive, got -1s"},
		{"step timeout missing", start + "steps:\n            - {name: a, command: {type: x}, done: 'true'}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].timeout: required (or the saga's timeout)"},
		{"step timeout not whole ms", start + "steps:\n            - {name: a, command: {type: x}, done: 'true', timeout: 1500us}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].timeout: 1.5ms is not a whole number of milliseconds"},
		{"step name missing", start + "steps:\n            - {command: {type: x}, done: 'true', timeout: 1s}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].name: required"},
		{"step name bad", start + "steps:\n            - {name: A-b, command: {type: x}, done: 'true', timeout: 1s}", `test.yaml:12: pipelines[0].steps[0].saga.steps[0].name: "A-b" must match`},
		{"step names clash", start + "steps:" + step + step, `test.yaml:13: pipelines[0].steps[0].saga.steps[1].name: "a" is the name of steps[0] too`},
		{"command type missing", start + "steps:\n            - {name: a, command: {}, done: 'true', timeout: 1s}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].command.type: required"},
		{"done missing", start + "steps:\n            - {name: a, command: {type: x}, timeout: 1s}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].done: required"},
		{"failed broken", start + "steps:\n            - {name: a, command: {type: x}, done: 'true', failed: 'x +', timeout: 1s}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].failed:"},
		{"compensate type missing", start + "steps:\n            - {name: a, command: {type: x}, done: 'true', timeout: 1s, compensate: {fields: {a: b}}}", "test.yaml:12: pipelines[0].steps[0].saga.steps[0].compensate.type: required"},
		{"reserved field", start + "fields: {step: x}\n          steps:" + step, `test.yaml:11: pipelines[0].steps[0].saga.fields.step: "step" is written by the saga itself`},
		{"reserved command field", start + "steps:\n            - {name: a, command: {type: x, fields: {command_id: y}}, done: 'true', timeout: 1s}", `test.yaml:12: pipelines[0].steps[0].saga.steps[0].command.fields.command_id: "command_id" is written by the saga itself`},
		{"event time without event_time", start + "time: event\n          steps:" + step, "test.yaml:11: pipelines[0].steps[0].saga.time: event time needs the pipeline's input.event_time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := `
pipelines:
  - name: orders
    input: {stream: orders, payload: data, partitions: 1}
    key: order_id
    dedupe: {id: id, window: 1h}
    steps:
      - saga:
          name: order
          ` + tc.saga + `
          output: {stream: "orders:commands"}
`
			_, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
