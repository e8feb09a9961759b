package pipelines_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// funnelConfig is a pipeline "clicks" keyed by user with a view →
// add_to_cart → purchase funnel "checkout" of the given settings, in event
// time unless eventTime is false.
func funnelConfig(eventTime bool, settings ...string) string {
	et := ", event_time: ts"
	if !eventTime {
		et = ""
	}
	return `
pipelines:
  - name: clicks
    input: {stream: clicks, payload: data, partitions: 1` + et + `}
    key: user
    steps:
      - funnel:
          name: checkout
          output: {stream: funnels}
          steps:
            - {name: view, when: 'type == "view"'}
            - {name: add_to_cart, when: 'type == "add_to_cart"'}
            - {name: purchase, when: 'type == "purchase"'}
          ` + strings.Join(settings, "\n          ") + `
`
}

var funnelSteps = []string{"view", "add_to_cart", "purchase"}

// funnel is an expected result of the checkout funnel: times are the
// steps reached, from the first.
type funnel struct {
	key    string
	status string
	times  []time.Duration
	reason string
	within time.Duration // default 30m
}

func (f funnel) result() result {
	idx := len(f.times) - 1
	within := f.within
	if within == 0 {
		within = 30 * time.Minute
	}
	steps := make([]map[string]any, len(f.times))
	for i, at := range f.times {
		steps[i] = map[string]any{"name": funnelSteps[i], "at": ms(at)}
	}
	started := strconv.FormatInt(ms(f.times[0]), 10)
	id := "checkout:" + f.key + ":" + started + ":" + f.status
	if f.status == pipelines.FunnelProgress {
		id += ":" + strconv.Itoa(idx)
	}
	data := map[string]any{
		"status": f.status, "step": map[string]any{"name": funnelSteps[idx], "index": idx}, "steps": steps,
		"started": ms(f.times[0]), "started_iso": iso(f.times[0]), "duration_ms": (f.times[idx] - f.times[0]).Milliseconds(),
		"deadline": ms(f.times[0] + within),
	}
	if f.reason != "" {
		data["reason"] = f.reason
	}
	return result{Key: f.key, ID: id, Kind: pipelines.KindFunnel, Data: data}
}

func funnels(fs ...funnel) []result {
	out := make([]result, len(fs))
	for i, f := range fs {
		out[i] = f.result()
	}
	return out
}

const (
	progress  = pipelines.FunnelProgress
	completed = pipelines.FunnelCompleted
	dropped   = pipelines.FunnelDropped
)

func minutes(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Minute
	}
	return out
}

// A funnel completes in relaxed order (events in between ignored), and
// the next view starts a new one, which drops when within passes with no
// further input.
func TestFunnelCompletesAndDrops(t *testing.T) {
	config := funnelConfig(true, "within: 30m")
	h := harness(t, config, pipetest.Options{})
	send(t, h, "u1", 0, "type", "view")
	send(t, h, "u1", time.Minute, "type", "search")
	send(t, h, "u1", 5*time.Minute, "type", "add_to_cart")
	send(t, h, "u1", 6*time.Minute, "type", "view") // ignored: relaxed
	if n := open(t, h, config, "checkout"); n != 1 {
		t.Errorf("open funnels = %d, want 1", n)
	}
	send(t, h, "u1", 10*time.Minute, "type", "purchase")
	send(t, h, "u1", 11*time.Minute, "type", "purchase") // no funnel: ignored
	done := funnels(
		funnel{key: "u1", status: progress, times: minutes(0)},
		funnel{key: "u1", status: progress, times: minutes(0, 5)},
		funnel{key: "u1", status: completed, times: minutes(0, 5, 10)},
	)
	checkResults(t, h, "funnels", done...)
	checkNoState(t, h, "checkout", "u1")
	if n := open(t, h, config, "checkout"); n != 0 {
		t.Errorf("open funnels = %d after completion, want 0", n)
	}
	send(t, h, "u1", 20*time.Minute, "type", "view")
	send(t, h, "u1", 21*time.Minute, "type", "add_to_cart")
	again := append(slices.Clone(done),
		funnel{key: "u1", status: progress, times: minutes(20)}.result(),
		funnel{key: "u1", status: progress, times: minutes(20, 21)}.result())
	checkResults(t, h, "funnels", again...)
	advance(t, h, 49*time.Minute) // idle: the watermark follows the clock
	checkResults(t, h, "funnels", again...)
	advance(t, h, time.Minute) // 20m + 30m
	checkResults(t, h, "funnels", append(again, funnel{key: "u1", status: dropped, times: minutes(20, 21), reason: "timeout"}.result())...)
	checkNoState(t, h, "checkout", "u1")
	if n := open(t, h, config, "checkout"); n != 0 {
		t.Errorf("open funnels = %d after the drop, want 0", n)
	}
}

// strict: an event that meets another step than the next drops the
// funnel, and starts a new one if it is a view; relaxed ignores it.
func TestFunnelOrder(t *testing.T) {
	events := []struct {
		at  int
		typ string
	}{{0, "view"}, {1, "search"}, {2, "view"}, {3, "add_to_cart"}, {4, "view"}, {5, "purchase"}, {6, "view"}, {7, "purchase"}}
	for _, tc := range []struct {
		order string
		want  []result
	}{
		{"strict", funnels(
			funnel{key: "u1", status: progress, times: minutes(0)},
			funnel{key: "u1", status: dropped, times: minutes(0), reason: "order"}, // the view at 2m
			funnel{key: "u1", status: progress, times: minutes(2)},
			funnel{key: "u1", status: progress, times: minutes(2, 3)},
			funnel{key: "u1", status: dropped, times: minutes(2, 3), reason: "order"}, // the view at 4m
			funnel{key: "u1", status: progress, times: minutes(4)},
			funnel{key: "u1", status: dropped, times: minutes(4), reason: "order"}, // the purchase at 5m
			funnel{key: "u1", status: progress, times: minutes(6)},
			funnel{key: "u1", status: dropped, times: minutes(6), reason: "order"}, // the purchase at 7m
		)},
		{"relaxed", funnels(
			funnel{key: "u1", status: progress, times: minutes(0)},
			funnel{key: "u1", status: progress, times: minutes(0, 3)},
			funnel{key: "u1", status: completed, times: minutes(0, 3, 5)},
			funnel{key: "u1", status: progress, times: minutes(6)}, // the purchase at 7m: ignored
		)},
	} {
		t.Run(tc.order, func(t *testing.T) {
			h := harness(t, funnelConfig(true, "within: 30m", "order: "+tc.order), pipetest.Options{})
			for _, e := range events {
				send(t, h, "u1", time.Duration(e.at)*time.Minute, "type", e.typ)
			}
			checkResults(t, h, "funnels", tc.want...)
		})
	}
}

// An event of the key at or after the deadline drops the funnel first
// (it cannot move it), even before the watermark reaches the deadline.
func TestFunnelEventPastDeadline(t *testing.T) {
	h := harness(t, funnelConfig(true, "within: 10m", "grace: 5m"), pipetest.Options{})
	send(t, h, "u1", 0, "type", "view")
	send(t, h, "u1", 10*time.Minute, "type", "add_to_cart") // at the deadline
	send(t, h, "u1", 12*time.Minute, "type", "view")
	checkResults(t, h, "funnels", funnels(
		funnel{key: "u1", status: progress, times: minutes(0), within: 10 * time.Minute},
		funnel{key: "u1", status: dropped, times: minutes(0), reason: "timeout", within: 10 * time.Minute},
		funnel{key: "u1", status: progress, times: minutes(12), within: 10 * time.Minute},
	)...)
}

// An event more than grace behind the watermark is late; one within grace
// but before the funnel's latest step does not move it; emit filters the
// results.
func TestFunnelLateAndEmit(t *testing.T) {
	h := harness(t, funnelConfig(true, "within: 30m", "grace: 1m", "emit: [completed, dropped]", "late: dead_letter"), pipetest.Options{})
	send(t, h, "u1", 0, "type", "view")
	send(t, h, "u1", 10*time.Minute, "type", "add_to_cart")
	send(t, h, "u1", 8*time.Minute, "type", "purchase")                // 2m behind: late
	send(t, h, "u1", 9*time.Minute+30*time.Second, "type", "purchase") // within grace, before add_to_cart
	checkResults(t, h, "funnels")
	dl, err := h.DeadLetters("clicks")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Fields["eddy.reason"] != pipelines.ReasonLate || !strings.Contains(dl[0].Fields["data"], strconv.FormatInt(ms(8*time.Minute), 10)) {
		t.Fatalf("dead letters = %v, want the purchase at 8m with reason late", dl)
	}
	send(t, h, "u1", 12*time.Minute, "type", "purchase")
	checkResults(t, h, "funnels", funnel{key: "u1", status: completed, times: minutes(0, 10, 12)}.result())
}

// In processing time the clock times the steps; a funnel drops at its
// deadline, by the timer.
func TestFunnelProcessingTime(t *testing.T) {
	h := harness(t, funnelConfig(false, "within: 30m", "emit: [dropped, completed]"), pipetest.Options{})
	send(t, h, "u1", 0, "type", "view")
	advance(t, h, 10*time.Minute)
	send(t, h, "u1", 0, "type", "add_to_cart")
	advance(t, h, 20*time.Minute-time.Second)
	checkResults(t, h, "funnels")
	advance(t, h, time.Second)
	checkResults(t, h, "funnels", funnel{key: "u1", status: dropped, times: minutes(0, 10), reason: "timeout"}.result())
	checkNoState(t, h, "checkout", "u1")
}

// A harness started again on the same data completes the funnel begun
// before.
func TestFunnelRestart(t *testing.T) {
	config := funnelConfig(true, "within: 30m", "emit: [completed, dropped]")
	mr := miniredis.RunT(t)
	h := harness(t, config, pipetest.Options{Redis: mr})
	send(t, h, "u1", 0, "type", "view")
	send(t, h, "u1", 5*time.Minute, "type", "add_to_cart")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := harness(t, config, pipetest.Options{Redis: mr, Start: h.Now()})
	send(t, h2, "u1", 7*time.Minute, "type", "purchase")
	checkResults(t, h2, "funnels", funnel{key: "u1", status: completed, times: minutes(0, 5, 7)}.result())
	checkNoState(t, h2, "checkout", "u1")
	advance(t, h2, time.Hour)
	checkResults(t, h2, "funnels", funnel{key: "u1", status: completed, times: minutes(0, 5, 7)}.result())
}

// Every broken funnel config is reported, with its path and line.
func TestFunnelConfigErrors(t *testing.T) {
	const head = `
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 1, event_time: ts}
    key: user
    dedupe: {id: id, window: 1h}
    steps:
      - funnel:
          name: checkout
          output: {stream: funnels}
`
	const two = `
          steps:
            - {name: view, when: 'type == "view"'}
            - {name: buy, when: 'type == "purchase"'}`
	for _, tc := range []struct {
		name, rest string
		want       []string
	}{
		{"within missing", two, []string{"test.yaml:8: pipelines[0].steps[0].funnel.within: required, positive"}},
		{"within zero", two + "\n          within: 0s", []string{"test.yaml:14: pipelines[0].steps[0].funnel.within: required, positive"}},
		{"within negative", two + "\n          within: -5m", []string{"test.yaml:14: pipelines[0].steps[0].funnel.within: required, positive: the time limit from the first step (got -5m0s)"}},
		{"one step", `
          within: 30m
          steps:
            - {name: view, when: 'type == "view"'}`, []string{"test.yaml:12: pipelines[0].steps[0].funnel.steps: want at least 2 steps, got 1"}},
		{"no steps", "\n          within: 30m", []string{"test.yaml:8: pipelines[0].steps[0].funnel.steps: want at least 2 steps, got 0"}},
		{"duplicate and missing", `
          within: 30m
          steps:
            - {name: view, when: 'type == "view"'}
            - {name: view, when: 'type == "cart"'}
            - {when: 'type == "x"'}
            - name: buy`, []string{
			`test.yaml:14: pipelines[0].steps[0].funnel.steps[1].name: "view" is the name of steps[0] too`,
			"test.yaml:15: pipelines[0].steps[0].funnel.steps[2].name: required",
			"test.yaml:16: pipelines[0].steps[0].funnel.steps[3].when: required",
		}},
		{"bad condition", `
          within: 30m
          steps:
            - {name: view, when: 'type =='}
            - {name: buy, when: 'type == "purchase"'}`, []string{"test.yaml:13: pipelines[0].steps[0].funnel.steps[0].when: expression"}},
		{"order", two + "\n          within: 30m\n          order: any", []string{`test.yaml:15: pipelines[0].steps[0].funnel.order: want relaxed or strict, got "any"`}},
		{"emit", two + "\n          within: 30m\n          emit: [completed, started]", []string{`test.yaml:15: pipelines[0].steps[0].funnel.emit[1]: want progress, completed or dropped, got "started"`}},
		{"emit empty", two + "\n          within: 30m\n          emit: []", []string{"test.yaml:15: pipelines[0].steps[0].funnel.emit: want at least one"}},
		{"grace negative", two + "\n          within: 30m\n          grace: -1s", []string{"test.yaml:15: pipelines[0].steps[0].funnel.grace: must be at least 0"}},
		{"grace over dedupe", two + "\n          within: 30m\n          grace: 90m", []string{"test.yaml:15: pipelines[0].steps[0].funnel.grace: grace 1h30m0s is longer than the dedupe window 1h0m0s"}},
		{"late", two + "\n          within: 30m\n          late: 'stream: '", []string{"test.yaml:15: pipelines[0].steps[0].funnel.late: want drop, dead_letter or stream:<name>"}},
		{"unknown key", two + "\n          within: 30m\n          timeout: 5m", []string{"test.yaml:15: pipelines[0].steps[0].funnel.timeout: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pipelines.Parse("test.yaml", []byte(head+strings.TrimPrefix(tc.rest, "\n")+"\n"), pipelines.NewRegistry())
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Parse = %v, want an error containing %q", err, want)
				}
			}
		})
	}
}
