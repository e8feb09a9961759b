package pipelines_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// abAlert is an expected absence alert of the step "silent" and its
// resolve.
type abAlert struct {
	key              string
	group            []string // sensor, when grouped by it
	lastSeen, raised time.Duration
	last             any // values {"battery": v}; nil when the step has none
	returned         time.Duration
	returnedValues   any
}

func (a abAlert) data() map[string]any {
	d := map[string]any{"last_seen": ms(a.lastSeen), "last_seen_iso": iso(a.lastSeen), "raised_at": ms(a.raised), "raised_at_iso": iso(a.raised)}
	if a.group != nil {
		d["group"] = map[string]any{"sensor": a.group[0]}
	}
	if a.last != nil {
		d["last"] = map[string]any{"battery": a.last}
	}
	return d
}

func (a abAlert) id(kind string) string {
	return "silent:" + a.key + ":" + strings.Join(append(a.group, strconv.FormatInt(ms(a.lastSeen), 10), kind), ":")
}

func (a abAlert) alert() result {
	return result{Key: a.key, ID: a.id("alert"), Kind: pipelines.KindAlert, Data: a.data()}
}

func (a abAlert) resolve() result {
	d := a.data()
	d["returned_at"], d["returned_at_iso"] = ms(a.returned), iso(a.returned)
	d["duration_ms"] = (a.returned - a.lastSeen).Milliseconds()
	if a.last != nil {
		d["returned"] = map[string]any{"battery": a.returnedValues}
	}
	return result{Key: a.key, ID: a.id("resolve"), Kind: pipelines.KindResolve, Data: d}
}

const abValues = "values: {battery: battery}"

// In event time, with input stopped, the idle watermark fires the timer
// at last_seen + after and not before; the key's next event resolves the
// alert, drops its raised mark from the state and re-arms the timer, which
// alerts again when the key goes quiet again.
func TestAbsenceEventTime(t *testing.T) {
	h := alHarness(t, alConfig(true, "absence", "silent", "after: 30s", abValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "battery", 90)
	alSend(t, h, "d1", 10*time.Second, "battery", 80) // re-arms: due at 40s
	alAdvance(t, h, 39*time.Second)
	alCheck(t, h)
	alAdvance(t, h, time.Second)
	first := abAlert{key: "d1", lastSeen: 10 * time.Second, raised: 40 * time.Second, last: 80}
	alCheck(t, h, first.alert())
	alCheckGauge(t, h, "silent", 1)
	if got, want := alState(t, h, "silent", "d1")["g"], `{"l":`+strconv.FormatInt(ms(10*time.Second), 10)+`,"r":`+strconv.FormatInt(ms(40*time.Second), 10)+`,"v":{"battery":80}}`; got != want {
		t.Errorf("state g = %s, want %s", got, want)
	}
	alSend(t, h, "d1", 50*time.Second, "battery", 70)
	first.returned, first.returnedValues = 50*time.Second, 70
	alCheck(t, h, first.alert(), first.resolve())
	alCheckGauge(t, h, "silent", 0)
	if got, want := alState(t, h, "silent", "d1")["g"], `{"l":`+strconv.FormatInt(ms(50*time.Second), 10)+`,"v":{"battery":70}}`; got != want {
		t.Errorf("state g after the resolve = %s, want %s (no raised mark)", got, want)
	}
	alAdvance(t, h, 39*time.Second) // the clock at 79s
	alCheck(t, h, first.alert(), first.resolve())
	alAdvance(t, h, time.Second)
	second := abAlert{key: "d1", lastSeen: 50 * time.Second, raised: 80 * time.Second, last: 70}
	alCheck(t, h, first.alert(), first.resolve(), second.alert())
}

// In processing time the engine clock drives the timer.
func TestAbsenceProcessingTime(t *testing.T) {
	h := alHarness(t, alConfig(false, "absence", "silent", "after: 30s"), pipetest.Options{})
	alSend(t, h, "d1", 0) // ts is not the step's time here
	alAdvance(t, h, 10*time.Second)
	alSend(t, h, "d1", 0)
	alAdvance(t, h, 29*time.Second)
	alCheck(t, h)
	alAdvance(t, h, time.Second)
	a := abAlert{key: "d1", lastSeen: 10 * time.Second, raised: 40 * time.Second}
	alCheck(t, h, a.alert())
	alAdvance(t, h, 5*time.Second)
	alSend(t, h, "d1", 0)
	a.returned = 45 * time.Second
	alCheck(t, h, a.alert(), a.resolve())
	alAdvance(t, h, 30*time.Second)
	b := abAlert{key: "d1", lastSeen: 45 * time.Second, raised: 75 * time.Second}
	alCheck(t, h, a.alert(), a.resolve(), b.alert())
	alCheckGauge(t, h, "silent", 1)
}

// Two events of a key after or more apart are an alert and its resolve,
// whether the timer or the event is handled first; a key whose events are
// closer gets nothing.
func TestAbsenceGapBetweenEvents(t *testing.T) {
	h := alHarness(t, alConfig(true, "absence", "silent", "after: 30s"), pipetest.Options{})
	alSend(t, h, "d1", 0)
	alSend(t, h, "d2", 0)
	alSend(t, h, "d2", 29*time.Second)
	alSend(t, h, "d1", 45*time.Second)
	a := abAlert{key: "d1", lastSeen: 0, raised: 30 * time.Second, returned: 45 * time.Second}
	alCheck(t, h, a.alert(), a.resolve())
	alSend(t, h, "d2", 55*time.Second) // 26s after its last
	alCheck(t, h, a.alert(), a.resolve())
	alCheckFields(t, h, "silent", "d1", "g")
}

// group_by watches each group of a key apart.
func TestAbsenceGroupBy(t *testing.T) {
	h := alHarness(t, alConfig(true, "absence", "silent", "after: 30s", "group_by: {sensor: sensor}", abValues), pipetest.Options{})
	alSend(t, h, "d1", 0, "sensor", "temperature", "battery", 90)
	alSend(t, h, "d1", 0, "sensor", "humidity", "battery", 90)
	alSend(t, h, "d1", 20*time.Second, "sensor", "temperature", "battery", 85)
	alAdvance(t, h, 30*time.Second)
	hum := abAlert{key: "d1", group: []string{"humidity"}, lastSeen: 0, raised: 30 * time.Second, last: 90}
	alCheck(t, h, hum.alert())
	alAdvance(t, h, 20*time.Second)
	temp := abAlert{key: "d1", group: []string{"temperature"}, lastSeen: 20 * time.Second, raised: 50 * time.Second, last: 85}
	alCheck(t, h, hum.alert(), temp.alert())
	alCheckGauge(t, h, "silent", 2)
	alCheckFields(t, h, "silent", "d1", `g["humidity"]`, `g["temperature"]`)
}

// An event older than the key's latest changes nothing: it does not move
// the timer back, nor replace the values.
func TestAbsenceOutOfOrder(t *testing.T) {
	h := alHarness(t, alConfig(true, "absence", "silent", "after: 30s", abValues), pipetest.Options{})
	alSend(t, h, "d1", 10*time.Second, "battery", 80)
	alSend(t, h, "d1", 5*time.Second, "battery", 5)
	alAdvance(t, h, 39*time.Second)
	alCheck(t, h)
	alAdvance(t, h, time.Second)
	alCheck(t, h, abAlert{key: "d1", lastSeen: 10 * time.Second, raised: 40 * time.Second, last: 80}.alert())
	alSend(t, h, "d1", 8*time.Second, "battery", 5) // older still: no resolve
	alCheck(t, h, abAlert{key: "d1", lastSeen: 10 * time.Second, raised: 40 * time.Second, last: 80}.alert())
}

// Every broken absence config is reported, with its path and line.
func TestAbsenceConfigErrors(t *testing.T) {
	const at = "test.yaml:10: pipelines[0].steps[0].absence."
	const after = "after: 30s\n          " // line 10, the setting at 11
	alConfigErrors(t, "absence", []struct{ name, step, want string }{
		{"after missing", "group_by: {sensor: sensor}", "test.yaml:8: pipelines[0].steps[0].absence.after: required"},
		{"after zero", "after: 0s", at + "after: must be positive, got 0s"},
		{"after negative", "after: -30s", at + "after: must be positive, got -30s"},
		{"after not whole ms", "after: 1500us", at + "after: 1.5ms is not a whole number of milliseconds"},
		{"unknown key", after + "for: 1m", "test.yaml:11: pipelines[0].steps[0].absence.for: unknown key"},
		{"group_by broken", after + "group_by: {sensor: 'sensor +'}", "test.yaml:11: pipelines[0].steps[0].absence.group_by.sensor:"},
		{"values empty", after + "values: {}", "test.yaml:11: pipelines[0].steps[0].absence.values: want at least one field"},
		{"time", after + "time: wall", "test.yaml:11: pipelines[0].steps[0].absence.time: want event or processing"},
		{"forget_after not longer", after + "forget_after: 30s", "test.yaml:11: pipelines[0].steps[0].absence.forget_after: must be longer than after (30s), got 30s"},
		{"forget_after not whole ms", after + "forget_after: 1m500us", "test.yaml:11: pipelines[0].steps[0].absence.forget_after: 1m0.0005s is not a whole number of milliseconds"},
		{"forget_after fraction", after + "forget_after: 1.5", "test.yaml:11: pipelines[0].steps[0].absence.forget_after:"},
	})
}

// The watch survives a restart on the same data: the new harness's timer
// alerts, and its next event resolves.
func TestAbsenceRestart(t *testing.T) {
	config := alConfig(true, "absence", "silent", "after: 30s")
	mr := miniredis.RunT(t)
	h := alHarness(t, config, pipetest.Options{Redis: mr})
	alSend(t, h, "d1", 0)
	alSend(t, h, "d1", 10*time.Second)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := alHarness(t, config, pipetest.Options{Redis: mr, Start: h.Now()})
	alAdvance(t, h2, 39*time.Second)
	alCheck(t, h2)
	alAdvance(t, h2, time.Second)
	a := abAlert{key: "d1", lastSeen: 10 * time.Second, raised: 40 * time.Second}
	alCheck(t, h2, a.alert())
	alSend(t, h2, "d1", 45*time.Second)
	a.returned = 45 * time.Second
	alCheck(t, h2, a.alert(), a.resolve())
	alCheckGauge(t, h2, "silent", 0)
}

// With forget_after, a key whose alert is raised and that stays silent
// until last_seen + forget_after is forgotten: its state field goes, the
// open gauge goes down, no result is written; if it comes back later, a
// new watch starts without a resolve. A key that comes back before then is
// resolved as usual and not forgotten. In both times.
func TestAbsenceForgetAfter(t *testing.T) {
	for _, eventTime := range []bool{false, true} {
		t.Run(map[bool]string{false: "processing time", true: "event time"}[eventTime], func(t *testing.T) {
			h := alHarness(t, alConfig(eventTime, "absence", "silent", "after: 30s", "forget_after: 2m"), pipetest.Options{})
			alSend(t, h, "d1", 0)
			alAdvance(t, h, time.Second)
			alSend(t, h, "d2", time.Second)
			alAdvance(t, h, 30*time.Second) // 31s
			a1 := abAlert{key: "d1", lastSeen: 0, raised: 30 * time.Second}
			a2 := abAlert{key: "d2", lastSeen: time.Second, raised: 31 * time.Second}
			alCheck(t, h, a1.alert(), a2.alert())
			alCheckGauge(t, h, "silent", 2)
			alAdvance(t, h, 29*time.Second)
			alSend(t, h, "d2", 60*time.Second) // back before it is forgotten
			a2.returned = 60 * time.Second
			alCheck(t, h, a1.alert(), a2.alert(), a2.resolve())
			alCheckGauge(t, h, "silent", 1)
			alAdvance(t, h, 59*time.Second) // 119s: d1 is remembered
			alCheckFields(t, h, "silent", "d1", "g")
			alAdvance(t, h, time.Second) // 120s = 0 + forget_after
			alCheckFields(t, h, "silent", "d1")
			b2 := abAlert{key: "d2", lastSeen: 60 * time.Second, raised: 90 * time.Second}
			alCheck(t, h, a1.alert(), a2.alert(), a2.resolve(), b2.alert())
			alCheckGauge(t, h, "silent", 1) // d1 forgotten, d2 silent again
			alAdvance(t, h, 10*time.Second)
			alSend(t, h, "d1", 130*time.Second) // a new watch, no resolve
			alCheck(t, h, a1.alert(), a2.alert(), a2.resolve(), b2.alert())
			alAdvance(t, h, 30*time.Second) // 160s
			b1 := abAlert{key: "d1", lastSeen: 130 * time.Second, raised: 160 * time.Second}
			alCheck(t, h, a1.alert(), a2.alert(), a2.resolve(), b2.alert(), b1.alert())
			alCheckGauge(t, h, "silent", 2)
			alAdvance(t, h, 20*time.Second) // 180s = 60 + forget_after: d2 goes
			alCheckFields(t, h, "silent", "d2")
			alCheckGauge(t, h, "silent", 1)
		})
	}
}
