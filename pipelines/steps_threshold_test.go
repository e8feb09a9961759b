package pipelines_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
	"github.com/eddy-streams/eddy/processor"
)

// The helpers of the threshold and absence tests (prefixed "al").

// alConfig is a pipeline "iot" keyed by device, one partition, with one
// step of type typ named name writing to the stream "alerts", with the
// given settings (YAML lines at the step's indentation), in event time
// (input.event_time: ts) unless eventTime is false.
func alConfig(eventTime bool, typ, name string, settings ...string) string {
	et := ", event_time: ts"
	if !eventTime {
		et = ""
	}
	return `
pipelines:
  - name: iot
    input: {stream: iot, payload: data, partitions: 1` + et + `}
    key: device
    timers: {tick: 1ms}
    steps:
      - ` + typ + `:
          name: ` + name + `
          output: {stream: alerts, hash: 'alerts:$key'}
          ` + strings.Join(settings, "\n          ") + `
`
}

// alH is a harness and whether its pipeline is in event time.
type alH struct {
	*pipetest.Harness
	eventTime bool
}

// alHarness parses config and starts a harness on it at t0 (or
// opts.Start), closed at the end of the test.
func alHarness(t testing.TB, config string, opts pipetest.Options) *alH {
	t.Helper()
	if opts.Start.IsZero() {
		opts.Start = t0
	}
	eventTime := strings.Contains(config, "event_time:")
	if eventTime {
		opts.SettleTimeout = alEventSettle
	}
	h := startHarness(t, config, opts)
	return &alH{Harness: h, eventTime: eventTime}
}

// alEventSettle bounds a Settle of an event-time harness: an event-time
// timer that an event's watermark made due fires on the timer loop's next
// tick, which waits on the harness clock, so Settle cannot settle until
// the clock moves on (alSettle moves it by one 1ms tick when Settle times
// out).
const alEventSettle = 2 * time.Second

// alSettle waits until h has handled everything sent.
func alSettle(t testing.TB, h *alH) {
	t.Helper()
	settleTicking(t, h.Harness, time.Millisecond, alTicks(h.eventTime))
}

// alTicks is how many ticks (timers.tick: 1ms) a settle may move the
// clock on: 10 in event time, none in processing time.
func alTicks(eventTime bool) int {
	if eventTime {
		return 10
	}
	return 0
}

// alSend sends an event of device at t0 + at (its "ts", unix ms) with the
// fields kv (name, value, …) to pipeline "iot" and waits until it is
// handled. (One at a time: the watermark moves with each event read.)
func alSend(t testing.TB, h *alH, device string, at time.Duration, kv ...any) {
	t.Helper()
	ev := map[string]any{"device": device, "ts": ms(at)}
	for i := 0; i+1 < len(kv); i += 2 {
		ev[kv[i].(string)] = kv[i+1]
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Send("iot", string(b)); err != nil {
		t.Fatal(err)
	}
	alSettle(t, h)
}

// alAdvance moves the harness clock by d, once what is in hand has
// settled (an event-time harness just started after a restart may have a
// due timer waiting for a tick: Advance's own first Settle would time out
// on it, as it did once in CI under load).
func alAdvance(t testing.TB, h *alH, d time.Duration) {
	t.Helper()
	alSettle(t, h)
	advance(t, h.Harness, d)
}

// alCheck compares the results in the stream "alerts" with want, in order.
func alCheck(t testing.TB, h *alH, want ...result) {
	t.Helper()
	checkResults(t, h.Harness, "alerts", want...)
}

// alState reads the keyed state name of key in pipeline "iot".
func alState(t testing.TB, h *alH, name, key string) map[string]string {
	t.Helper()
	st, err := h.State("iot", name, key)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// alCheckFields fails unless the state name of key has exactly the fields.
func alCheckFields(t testing.TB, h *alH, name, key string, fields ...string) {
	t.Helper()
	st := alState(t, h, name, key)
	got := make([]string, 0, len(st))
	for f := range st {
		got = append(got, f)
	}
	if len(got) != len(fields) {
		t.Fatalf("state %s of %s = %v, want the fields %q", name, key, st, fields)
	}
	for _, f := range fields {
		if _, ok := st[f]; !ok {
			t.Fatalf("state %s of %s = %v, want the fields %q", name, key, st, fields)
		}
	}
}

// alCheckGauge fails unless the open gauge of step name in pipeline "iot"
// (one partition) is want.
func alCheckGauge(t testing.TB, h *alH, name string, want int64) {
	t.Helper()
	s, err := h.Client().HGet(context.Background(), processor.GaugesKey("iot", 0, 1, "iot"), pipelines.GaugeOpen(name)).Result()
	if err != nil {
		t.Fatalf("gauge %s: %v", pipelines.GaugeOpen(name), err)
	}
	if got, err := strconv.ParseInt(s, 10, 64); err != nil || got != want {
		t.Fatalf("gauge %s = %q, want %d", pipelines.GaugeOpen(name), s, want)
	}
}

// thAlert is an expected threshold alert of the step "hot" and its
// resolve.
type thAlert struct {
	key               string
	group             []string // sensor, when grouped by it
	since, raised     time.Duration
	first, last       any // values {"value": v} at the raise; nil when the step has none
	final             any // the last values at the resolve, if not last
	cleared, resolved time.Duration
	clear             any
}

func (a thAlert) data() map[string]any {
	d := map[string]any{"since": ms(a.since), "since_iso": iso(a.since), "raised_at": ms(a.raised), "raised_at_iso": iso(a.raised)}
	if a.group != nil {
		d["group"] = map[string]any{"sensor": a.group[0]}
	}
	if a.first != nil {
		d["first"], d["last"] = map[string]any{"value": a.first}, map[string]any{"value": a.last}
	}
	return d
}

func (a thAlert) id(kind string) string {
	return "hot:" + a.key + ":" + strings.Join(append(a.group, strconv.FormatInt(ms(a.since), 10), kind), ":")
}

func (a thAlert) alert() result {
	return result{Key: a.key, ID: a.id("alert"), Kind: pipelines.KindAlert, Data: a.data()}
}

func (a thAlert) resolve() result {
	d := a.data()
	if a.final != nil {
		d["last"] = map[string]any{"value": a.final}
	}
	d["cleared_at"], d["cleared_at_iso"] = ms(a.cleared), iso(a.cleared)
	d["resolved_at"], d["resolved_at_iso"] = ms(a.resolved), iso(a.resolved)
	d["duration_ms"] = (a.resolved - a.raised).Milliseconds()
	if a.first != nil {
		d["clear"] = map[string]any{"value": a.clear}
	}
	return result{Key: a.key, ID: a.id("resolve"), Kind: pipelines.KindResolve, Data: d}
}

const thValues = "values: {value: value}"

// An alert is raised by the key's first event at or after since + for,
// with the values of the event that started it and of the latest that held
// before the raise; the read model hash gets it; an event where when is
// false resolves it, and the state and gauge go back to nothing.
func TestThresholdRaiseByEvent(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 30*time.Second, "value", 32)
	alCheck(t, h)
	alCheckFields(t, h, "hot", "d1", "g")
	alSend(t, h, "d1", 60*time.Second, "value", 33)
	a := thAlert{key: "d1", since: 0, raised: time.Minute, first: 31, last: 32}
	alCheck(t, h, a.alert())
	alCheckGauge(t, h, "hot", 1)
	model, err := h.Client().HGetAll(context.Background(), "alerts:d1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if model["kind"] != "alert" || model["id"] != a.id("alert") || model["since"] != strconv.FormatInt(ms(0), 10) || model["first"] != `{"value":31}` {
		t.Errorf("read model alerts:d1 = %v, want the alert", model)
	}
	alSend(t, h, "d1", 90*time.Second, "value", 20)
	a.final, a.cleared, a.resolved, a.clear = 33, 90*time.Second, 90*time.Second, 20
	alCheck(t, h, a.alert(), a.resolve())
	alCheckFields(t, h, "hot", "d1")
	alCheckGauge(t, h, "hot", 0)
}

// With input stopped, the timer raises the alert at since + for, in event
// time by the idle watermark and in processing time by the clock; not a
// moment before.
func TestThresholdRaiseByTimer(t *testing.T) {
	t.Run("event time", func(t *testing.T) {
		h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues), pipetest.Options{})
		alSend(t, h, "d1", 0, "value", 31)
		alSend(t, h, "d1", 20*time.Second, "value", 35)
		alAdvance(t, h, 59*time.Second)
		alCheck(t, h)
		alAdvance(t, h, time.Second)
		a := thAlert{key: "d1", since: 0, raised: time.Minute, first: 31, last: 35}
		alCheck(t, h, a.alert())
		alSend(t, h, "d1", 61*time.Second, "value", 25)
		a.cleared, a.resolved, a.clear = 61*time.Second, 61*time.Second, 25
		alCheck(t, h, a.alert(), a.resolve())
		alCheckFields(t, h, "hot", "d1")
	})
	t.Run("processing time", func(t *testing.T) {
		h := alHarness(t, alConfig(false, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues), pipetest.Options{})
		alSend(t, h, "d1", 0, "value", 31) // ts is not the step's time here
		alAdvance(t, h, 20*time.Second)
		alSend(t, h, "d1", 0, "value", 35)
		alAdvance(t, h, 39*time.Second)
		alCheck(t, h)
		alAdvance(t, h, time.Second)
		a := thAlert{key: "d1", since: 0, raised: time.Minute, first: 31, last: 35}
		alCheck(t, h, a.alert())
		alCheckGauge(t, h, "hot", 1)
	})
}

// An event on which when is false before for has passed ends the pending
// alert (its state and timer go); the next one that holds starts anew.
func TestThresholdResetBeforeFor(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 30*time.Second, "value", 25)
	alCheckFields(t, h, "hot", "d1")
	alSend(t, h, "d1", 40*time.Second, "value", 36)
	alAdvance(t, h, 99*time.Second) // past the first timer's 60s
	alCheck(t, h)
	alAdvance(t, h, time.Second)
	alCheck(t, h, thAlert{key: "d1", since: 40 * time.Second, raised: 100 * time.Second, first: 36, last: 36}.alert())
}

// With a separate clear condition, a value between the bounds keeps a
// raised alert raised (and is not one of its values); only one below the
// clear bound resolves it; after that, a value between the bounds starts
// nothing.
func TestThresholdHysteresis(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "clear: 'value < 28'", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31) // for 0: raised at once
	first := thAlert{key: "d1", since: 0, raised: 0, first: 31, last: 31}
	alCheck(t, h, first.alert())
	alSend(t, h, "d1", 10*time.Second, "value", 29)
	alSend(t, h, "d1", 20*time.Second, "value", 32)
	alSend(t, h, "d1", 30*time.Second, "value", 28)
	alCheck(t, h, first.alert())
	alCheckGauge(t, h, "hot", 1)
	alSend(t, h, "d1", 40*time.Second, "value", 27)
	first.final, first.cleared, first.resolved, first.clear = 32, 40*time.Second, 40*time.Second, 27
	alSend(t, h, "d1", 50*time.Second, "value", 29)
	alCheckFields(t, h, "hot", "d1")
	alSend(t, h, "d1", 60*time.Second, "value", 31)
	second := thAlert{key: "d1", since: time.Minute, raised: time.Minute, first: 31, last: 31}
	alCheck(t, h, first.alert(), first.resolve(), second.alert())
	alCheckGauge(t, h, "hot", 1)
}

// While pending, the raise condition must hold throughout: with clear set,
// a value between the bounds ends the pending alert too.
func TestThresholdHysteresisPending(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "clear: 'value < 28'", "for: 1m", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 30*time.Second, "value", 29)
	alSend(t, h, "d1", 40*time.Second, "value", 31)
	alAdvance(t, h, 99*time.Second)
	alCheck(t, h)
	alAdvance(t, h, time.Second)
	alCheck(t, h, thAlert{key: "d1", since: 40 * time.Second, raised: 100 * time.Second, first: 31, last: 31}.alert())
}

// keep_firing_for: the alert resolves only once clearing events have
// lasted that long (by the timer, with input stopped); an event that
// does not clear meanwhile sends it back to raised, and the clearing
// starts again with the next one that does.
func TestThresholdKeepFiringFor(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "keep_firing_for: 2m", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 10*time.Second, "value", 25)  // clearing, due at 130s
	alSend(t, h, "d1", 60*time.Second, "value", 33)  // raised again
	alSend(t, h, "d1", 90*time.Second, "value", 24)  // clearing, due at 210s
	alSend(t, h, "d1", 150*time.Second, "value", 25) // still clearing
	a := thAlert{key: "d1", since: 0, raised: 0, first: 31, last: 31, final: 33}
	alAdvance(t, h, 209*time.Second)
	alCheck(t, h, a.alert())
	alCheckFields(t, h, "hot", "d1", "g")
	alAdvance(t, h, time.Second)
	a.cleared, a.resolved, a.clear = 90*time.Second, 210*time.Second, 24
	alCheck(t, h, a.alert(), a.resolve())
	alCheckFields(t, h, "hot", "d1")
	alCheckGauge(t, h, "hot", 0)
}

// group_by keeps one alert per key and group, each with its own id,
// state field and resolve.
func TestThresholdGroupBy(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "group_by: {sensor: sensor}", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "sensor", "temperature", "value", 31)
	alSend(t, h, "d1", time.Second, "sensor", "humidity", "value", 50)
	alSend(t, h, "d1", 2*time.Second, "sensor", "humidity", "value", 10)
	alSend(t, h, "d2", 3*time.Second, "sensor", "temperature", "value", 40)
	temp := thAlert{key: "d1", group: []string{"temperature"}, since: 0, raised: 0, first: 31, last: 31}
	hum := thAlert{key: "d1", group: []string{"humidity"}, since: time.Second, raised: time.Second, first: 50, last: 50,
		cleared: 2 * time.Second, resolved: 2 * time.Second, clear: 10}
	d2 := thAlert{key: "d2", group: []string{"temperature"}, since: 3 * time.Second, raised: 3 * time.Second, first: 40, last: 40}
	alCheck(t, h, temp.alert(), hum.alert(), hum.resolve(), d2.alert())
	alCheckFields(t, h, "hot", "d1", `g["temperature"]`)
	alCheckGauge(t, h, "hot", 2)
}

// Out of order: an event older than the latest its alert has seen (an
// event, or the raise that the watermark of another key's event brought)
// changes nothing: it does not end the pending alert, nor resolve it.
func TestThresholdOutOfOrder(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 20*time.Second, "value", 32)
	alSend(t, h, "d1", 10*time.Second, "value", 20) // late: pending goes on
	alSend(t, h, "d2", 70*time.Second, "value", 10) // the watermark passes d1's 60s
	a := thAlert{key: "d1", since: 0, raised: time.Minute, first: 31, last: 32}
	alCheck(t, h, a.alert())
	alSend(t, h, "d1", 30*time.Second, "value", 20) // late: before the raise
	alCheck(t, h, a.alert())
	alSend(t, h, "d1", 80*time.Second, "value", 20)
	a.cleared, a.resolved, a.clear = 80*time.Second, 80*time.Second, 20
	alCheck(t, h, a.alert(), a.resolve())
}

// Without values, results carry no first, last or clear.
func TestThresholdNoValues(t *testing.T) {
	h := alHarness(t, alConfig(true, "threshold", "hot", `when: 'sensor == "temperature" && value > 30'`), pipetest.Options{})
	alSend(t, h, "d1", 0, "sensor", "humidity", "value", 90)
	alSend(t, h, "d1", time.Second, "sensor", "temperature", "value", 31)
	alSend(t, h, "d1", 2*time.Second, "sensor", "temperature", "value", 20)
	a := thAlert{key: "d1", since: time.Second, raised: time.Second, cleared: 2 * time.Second, resolved: 2 * time.Second}
	alCheck(t, h, a.alert(), a.resolve())
}

// A pending alert survives a restart on the same data: the new harness's
// timer raises it.
func TestThresholdRestart(t *testing.T) {
	config := alConfig(true, "threshold", "hot", "when: 'value > 30'", "for: 1m", thValues)
	mr := miniredis.RunT(t)
	h := alHarness(t, config, pipetest.Options{Redis: mr})
	alSend(t, h, "d1", 0, "value", 31)
	alSend(t, h, "d1", 10*time.Second, "value", 32)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := alHarness(t, config, pipetest.Options{Redis: mr, Start: h.Now()})
	alAdvance(t, h2, time.Minute)
	alCheck(t, h2, thAlert{key: "d1", since: 0, raised: time.Minute, first: 31, last: 32}.alert())
}

// alConfigErrors parses each broken step (settings at line 10 of the
// file, after the step's name) and wants an error containing want.
func alConfigErrors(t *testing.T, typ string, cases []struct{ name, step, want string }) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			config := `
pipelines:
  - name: iot
    input: {stream: iot, payload: data, partitions: 1}
    key: device
    dedupe: {id: id, window: 1h}
    steps:
      - ` + typ + `:
          name: alerts
          ` + tc.step + `
          output: {stream: alerts}
`
			_, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Every broken threshold config is reported, with its path and line.
func TestThresholdConfigErrors(t *testing.T) {
	const at = "test.yaml:10: pipelines[0].steps[0].threshold."
	const when = "when: 'value > 30'\n          " // line 10, the setting at 11
	alConfigErrors(t, "threshold", []struct{ name, step, want string }{
		{"when missing", "for: 1m", "test.yaml:8: pipelines[0].steps[0].threshold.when: required"},
		{"clear without when", "clear: 'value < 28'", at + "clear: a clear condition needs a when condition"},
		{"when empty", "when: ''", at + "when: empty expression"},
		{"when broken", "when: 'value >'", at + "when:"},
		{"unknown key", "whne: 'value > 1'", at + "whne: unknown key"},
		{"time", "time: wall", at + "time: want event or processing"},
		{"event time without event_time", when + "time: event", "test.yaml:11: pipelines[0].steps[0].threshold.time: event time needs the pipeline's input.event_time"},
		{"group_by empty", when + "group_by: {}", "test.yaml:11: pipelines[0].steps[0].threshold.group_by: want at least one field"},
		{"values broken", when + "values: {v: 'value +'}", "test.yaml:11: pipelines[0].steps[0].threshold.values.v:"},
		{"for negative", when + "for: -1m", "test.yaml:11: pipelines[0].steps[0].threshold.for: must be at least 0, got -1m0s"},
		{"for not whole ms", when + "for: 1500us", "test.yaml:11: pipelines[0].steps[0].threshold.for: 1.5ms is not a whole number of milliseconds"},
		{"keep_firing_for negative", when + "keep_firing_for: -2s", "test.yaml:11: pipelines[0].steps[0].threshold.keep_firing_for: must be at least 0, got -2s"},
	})
}

// Two analytics steps of one name clash; a missing name and output are
// both reported.
func TestAlertStepNames(t *testing.T) {
	_, err := pipelines.Parse("test.yaml", []byte(`
pipelines:
  - name: iot
    input: {stream: iot}
    key: device
    steps:
      - threshold: {name: hot, output: {stream: alerts}, when: 'value > 30'}
      - absence:
          name: hot
          output: {stream: alerts}
          after: 30s
      - absence: {after: 1m}
`), pipelines.NewRegistry())
	for _, want := range []string{
		`test.yaml:9: pipelines[0].steps[1].absence.name: "hot" is the state name of steps[0] too`,
		"test.yaml:12: pipelines[0].steps[2].absence.name: required",
		"test.yaml:12: pipelines[0].steps[2].absence.output.stream: required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse = %v, want an error containing %q", err, want)
		}
	}
}
