package pipelines_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/zap/zaptest"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
	"github.com/eddy-streams/eddy/processor"
)

// winConfig is a file with one pipeline "p" keyed by "site", reading
// events as JSON from "in" (input extra, such as ", event_time: ts"),
// whose one step is a window with the config lines step (each indented by
// ten spaces). Its lines: 7 is "- window:", 8 the step's first line.
func winConfig(input, step string) string {
	return `pipelines:
  - name: p
    input: {stream: in, payload: data` + input + `}
    key: site
    timers: {tick: 1s}
    steps:
      - window:
` + step
}

// winHarness starts a harness on config with the clock at start (on the
// data of opts.Redis if set), closed at the end of the test.
func winHarness(t testing.TB, config string, start time.Time, opts pipetest.Options) *pipetest.Harness {
	if os.Getenv("WINLOG") != "" {
		opts.Logger = zaptest.NewLogger(t)
	}
	t.Helper()
	opts.Start = start
	if opts.SettleTimeout == 0 {
		opts.SettleTimeout = time.Second // see winSettle
	}
	return startHarness(t, config, opts)
}

// winSend sends an event of site "s1" at t0 + at (its "ts") with the
// fields of the JSON object fields (may be ""), and waits until it is
// handled. One at a time: the watermark moves with each read, so events
// read in one batch could see each other's times.
func winSend(t testing.TB, h *pipetest.Harness, at time.Duration, fields string) {
	t.Helper()
	ev := `{"site":"s1","ts":` + strconv.FormatInt(ms(at), 10)
	if fields != "" {
		ev += "," + fields
	}
	if err := h.Send("p", ev+"}"); err != nil {
		t.Fatal(err)
	}
	winSettle(t, h)
}

// winSettle waits until h has handled everything. An event-time timer
// that an event's watermark made due fires on the timer loop's next tick,
// which waits on the harness clock: while one is due, Settle does not
// settle, and the clock is moved on by one tick (1s: less than the idle
// watermark's 5s, so the watermark is still the events').
func winSettle(t testing.TB, h *pipetest.Harness) {
	t.Helper()
	settleTicking(t, h, time.Second, 2)
}

// winResult is a result entry: "kind id data" with data as canonical
// JSON.
func winResults(t testing.TB, h *pipetest.Harness, stream string) []string {
	t.Helper()
	es, err := h.Entries(stream)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		if e.Fields["key"] != "s1" {
			t.Errorf("result %d key = %q, want s1", i, e.Fields["key"])
		}
		out[i] = e.Fields["kind"] + " " + e.Fields["id"] + " " + winCanon(t, e.Fields["data"])
	}
	return out
}

// winCanon re-encodes a JSON object with sorted keys.
func winCanon(t testing.TB, s string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("result data %q: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// winWant is the expected result of kind and id suffix (after "w:s1:"),
// with data fields (without key, added here).
func winWant(t testing.TB, kind, id, data string) string {
	t.Helper()
	return kind + " w:s1:" + id + " " + winCanon(t, `{"key":"s1",`+data+`}`)
}

func winCheck(t testing.TB, got, want []string) {
	t.Helper()
	if (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// winState checks the step's state of key s1.
func winState(t testing.TB, h *pipetest.Harness, want map[string]string) {
	t.Helper()
	got, err := h.State("p", "w", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("state = %v, want %v", got, want)
	}
}

// Every aggregate over tumbling windows in event time, an event out of
// order within grace taken, one beyond it dropped, and the last window
// closed by the idle watermark with no more input.
func TestWindowTumblingAggregates(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          size: 1m
          grace: 10s
          aggregates:
            views: count
            priced: {count: amount}
            revenue: {sum: amount}
            lo: {min: amount}
            hi: {max: amount}
            mean: {avg: amount}
            entry: {first: page}
            exit: {last: page}
            users: {count_distinct: user}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, 5*time.Second, `"page":"a","amount":10,"user":"u1"`)
	winSend(t, h, 20*time.Second, `"page":"b","amount":"2.5","user":"u2"`)
	winSend(t, h, 65*time.Second, `"page":"c","amount":4,"user":"u1"`)
	// The watermark is at 65s: the first window closes at 70s.
	winSend(t, h, 50*time.Second, `"page":"d","user":"u1","amount":null`)
	st, err := h.State("p", "w", "s1")
	if err != nil {
		t.Fatal(err)
	}
	first, second := fmt.Sprintf("w%d|", ms(0)), fmt.Sprintf("w%d|", ms(time.Minute))
	if len(st) != 2 || st[first] == "" || st[second] == "" {
		t.Errorf("state with two open windows = %v, want fields %s and %s", st, first, second)
	}
	winSend(t, h, 75*time.Second, `"page":"e","amount":1,"user":"u3"`) // closes [0, 1m)
	winSend(t, h, 30*time.Second, `"page":"late","amount":100,"user":"u9"`)
	w1 := winWant(t, "window", fmt.Sprintf("%d:%d", ms(0), ms(time.Minute)), fmt.Sprintf(
		`"start":%d,"end":%d,"count":3,"views":3,"priced":2,"revenue":12.5,"lo":2.5,"hi":10,"mean":6.25,"entry":"a","exit":"d","users":2`,
		ms(0), ms(time.Minute)))
	winCheck(t, winResults(t, h, "out"), []string{w1})

	// No more input: the idle watermark (5s of the clock) closes the rest.
	if err := h.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	w2 := winWant(t, "window", fmt.Sprintf("%d:%d", ms(time.Minute), ms(2*time.Minute)), fmt.Sprintf(
		`"start":%d,"end":%d,"count":2,"views":2,"priced":2,"revenue":5,"lo":1,"hi":4,"mean":2.5,"entry":"c","exit":"e","users":2`,
		ms(time.Minute), ms(2*time.Minute)))
	winCheck(t, winResults(t, h, "out"), []string{w1, w2})
	// Closed windows leave only the closed mark, and no open window.
	winState(t, h, map[string]string{"c": strconv.FormatInt(ms(2*time.Minute), 10)})
	gauges, err := h.Client().HGetAll(t.Context(), processor.GaugesKey("in", 0, 1, "p")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if gauges[pipelines.GaugeOpen("w")] != "0" {
		t.Errorf("gauges = %v, want %s 0", gauges, pipelines.GaugeOpen("w"))
	}
}

// A hopping event belongs to size/hop windows; windows per group_by value.
func TestWindowHoppingGroups(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          kind: hopping
          size: 1m
          hop: 30s
          group_by: {page: page}
          aggregates: {views: count}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, 10*time.Second, `"page":"a"`)
	winSend(t, h, 40*time.Second, `"page":"a"`)
	winSend(t, h, 45*time.Second, `"page":"b"`)
	winSend(t, h, 70*time.Second, `"page":"a"`)
	if err := h.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	win := func(page string, from, n int) string {
		s, e := ms(time.Duration(from)*time.Second), ms(time.Duration(from)*time.Second+time.Minute)
		return winWant(t, "window", fmt.Sprintf("%s:%d:%d", page, s, e),
			fmt.Sprintf(`"start":%d,"end":%d,"group":{"page":%q},"count":%d,"views":%d`, s, e, page, n, n))
	}
	got := winResults(t, h, "out")
	// Closed in order of end; windows of one end in the order their
	// timers fire (by name).
	want := []string{win("a", -30, 1), win("a", 0, 2), win("b", 0, 1), win("a", 30, 2), win("b", 30, 1), win("a", 60, 1)}
	if len(got) != len(want) {
		winCheck(t, got, want)
		return
	}
	// Results of one end may come in either order.
	for i := 0; i < len(got); i++ {
		if got[i] != want[i] && i+1 < len(got) && got[i] == want[i+1] && got[i+1] == want[i] {
			got[i], got[i+1] = got[i+1], got[i]
		}
	}
	winCheck(t, got, want)
	winState(t, h, map[string]string{"c": strconv.FormatInt(ms(2*time.Minute), 10)})
}

// Sessions: an out-of-order event that bridges two open sessions merges
// them (every aggregate merged); one that would join a closed session is
// late and dead-lettered with reason late.
func TestWindowSessionMerge(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          kind: session
          gap: 30s
          grace: 1m
          late: dead_letter
          aggregates:
            views: count
            revenue: {sum: amount}
            lo: {min: amount}
            hi: {max: amount}
            entry: {first: page}
            exit: {last: page}
            users: {count_distinct: user}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, 0, `"page":"a","amount":1,"user":"u1"`)
	winSend(t, h, 50*time.Second, `"page":"b","amount":5,"user":"u2"`) // 50s after: a second session
	st, err := h.State("p", "w", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 { // two sessions and their index
		t.Errorf("state with two sessions = %v, want 3 fields", st)
	}
	winSend(t, h, 25*time.Second, `"page":"c","amount":3,"user":"u1"`) // within 30s of both
	st, err = h.State("p", "w", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 { // one session and its index
		t.Errorf("state after the merge = %v, want 2 fields", st)
	}
	winSend(t, h, 200*time.Second, `"page":"d","amount":2,"user":"u3"`) // closes [0s, 50s] at 50+30+60
	winSend(t, h, 10*time.Second, `"page":"late","amount":2,"user":"u3"`)
	if err := h.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	s1 := winWant(t, "window", fmt.Sprintf("%d:%d", ms(0), ms(50*time.Second)), fmt.Sprintf(
		`"start":%d,"end":%d,"count":3,"views":3,"revenue":9,"lo":1,"hi":5,"entry":"a","exit":"b","users":2`,
		ms(0), ms(50*time.Second)))
	at := ms(200 * time.Second)
	s2 := winWant(t, "window", fmt.Sprintf("%d:%d", at, at), fmt.Sprintf(
		`"start":%d,"end":%d,"count":1,"views":1,"revenue":2,"lo":2,"hi":2,"entry":"d","exit":"d","users":1`, at, at))
	winCheck(t, winResults(t, h, "out"), []string{s1, s2})
	dl, err := h.DeadLetters("p")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Fields["eddy.reason"] != pipelines.ReasonLate || !strings.Contains(dl[0].Fields["data"], `"late"`) {
		t.Errorf("dead letters = %v, want the late event with reason %s", dl, pipelines.ReasonLate)
	}
	winState(t, h, map[string]string{"c": strconv.FormatInt(ms(230*time.Second), 10)})
}

// emit both: an update after each event (ids ":u<n>"), then the window;
// late: stream sends the late event to a stream of its own.
func TestWindowEmitBothLateStream(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out, hash: 'views:$key'}
          size: 1m
          emit: both
          late: stream:late
          aggregates: {views: count}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, 5*time.Second, "")
	winSend(t, h, 20*time.Second, "")
	winSend(t, h, 60*time.Second, "") // closes [0, 1m): grace 0
	winSend(t, h, 30*time.Second, `"n":1`)
	s, e, e2 := ms(0), ms(time.Minute), ms(2*time.Minute)
	id := fmt.Sprintf("%d:%d", s, e)
	data := func(start, end int64, n int) string {
		return fmt.Sprintf(`"start":%d,"end":%d,"count":%d,"views":%d`, start, end, n, n)
	}
	winCheck(t, winResults(t, h, "out"), []string{
		winWant(t, "update", id+":u1", data(s, e, 1)),
		winWant(t, "update", id+":u2", data(s, e, 2)),
		winWant(t, "update", fmt.Sprintf("%d:%d:u1", e, e2), data(e, e2, 1)),
		winWant(t, "window", id, data(s, e, 2)),
	})
	late, err := h.Entries("late")
	if err != nil {
		t.Fatal(err)
	}
	if len(late) != 1 || late[0].Fields["late"] != "w" || !strings.Contains(late[0].Fields["data"], `"n":1`) {
		t.Errorf("late stream = %v, want the event at 30s", late)
	}
	model, err := h.Client().HGetAll(t.Context(), "views:s1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if model["kind"] != "window" || model["views"] != "2" {
		t.Errorf("read model = %v, want the closed window's", model)
	}
}

// Processing time: windows of the clock, closed by processing-time timers
// as the clock moves; no event time needed.
func TestWindowProcessingTime(t *testing.T) {
	h := winHarness(t, winConfig("", `          name: w
          output: {stream: out}
          size: 1m
          aggregates: {views: count, total: {sum: n}}
`), t0, pipetest.Options{})
	send := func(n int) {
		t.Helper()
		if err := h.Send("p", fmt.Sprintf(`{"site":"s1","n":%d}`, n)); err != nil {
			t.Fatal(err)
		}
		winSettle(t, h)
	}
	send(1)
	send(2)
	if err := h.Advance(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	send(4)
	if err := h.Advance(29 * time.Second); err != nil {
		t.Fatal(err)
	}
	winCheck(t, winResults(t, h, "out"), nil)
	if err := h.Advance(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	send(8) // in the next window
	s, e := ms(0), ms(time.Minute)
	winCheck(t, winResults(t, h, "out"), []string{
		winWant(t, "window", fmt.Sprintf("%d:%d", s, e), fmt.Sprintf(`"start":%d,"end":%d,"count":3,"views":3,"total":7`, s, e)),
	})
	if err := h.Advance(time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := winResults(t, h, "out"); len(got) != 2 || !strings.Contains(got[1], `"total":8`) {
		t.Errorf("results = %v, want a second window with total 8", got)
	}
	winState(t, h, map[string]string{"c": strconv.FormatInt(ms(2*time.Minute), 10)})
}

// A numeric aggregate of a value that is not a number dead-letters the
// event, naming the field; nothing of it is kept.
func TestWindowNotANumber(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          size: 1m
          aggregates: {views: count, total: {sum: order.amount}}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, time.Second, `"order":{"amount":"ten"}`)
	winSend(t, h, 2*time.Second, `"order":{"amount":3}`)
	dl, err := h.DeadLetters("p")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Fields["eddy.reason"] != "invalid" || !strings.Contains(dl[0].Fields["eddy.error"], `sum of "order.amount": "ten" is not a number`) {
		t.Errorf("dead letters = %v, want the event with the string amount", dl)
	}
	if err := h.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := winResults(t, h, "out"); len(got) != 1 || !strings.Contains(got[0], `"count":1`) || !strings.Contains(got[0], `"total":3`) {
		t.Errorf("results = %v, want one window of the one good event", got)
	}
}

// A harness restarted on the same data does not open a closed window
// again: a late event for it is not a second result.
func TestWindowRestartNoTwice(t *testing.T) {
	config := winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          size: 1m
          aggregates: {views: count}
`)
	start := t0.Add(time.Hour)
	mr := miniredis.RunT(t) // outlives the first harness
	h1 := winHarness(t, config, start, pipetest.Options{Redis: mr})
	winSend(t, h1, 5*time.Second, "")
	winSend(t, h1, 70*time.Second, "") // closes [0, 1m)
	if got := winResults(t, h1, "out"); len(got) != 1 {
		t.Fatalf("results before the restart = %v, want 1", got)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	// The next owner starts from an older committed watermark (as after
	// a crash before a commit stored the newer one): only the closed mark
	// in the key's state tells it that [0, 1m) has closed.
	meta := strings.Replace(processor.GaugesKey("in", 0, 1, "p"), ":gauges:", ":meta:", 1)
	if w := mr.HGet(meta, "watermark"); w != strconv.FormatInt(ms(70*time.Second), 10) {
		t.Fatalf("watermark in %s = %q, want the first harness's", meta, w)
	}
	mr.HSet(meta, "watermark", strconv.FormatInt(ms(5*time.Second), 10))
	// A second harness on the same data is the partition's next owner.
	h2 := winHarness(t, config, start, pipetest.Options{Redis: mr})
	winSend(t, h2, 10*time.Second, "") // late for the closed window
	if err := h2.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := winResults(t, h2, "out")
	if len(got) != 2 || !strings.Contains(got[1], fmt.Sprintf(`"start":%d`, ms(time.Minute))) {
		t.Errorf("results after the restart = %v, want [0,1m) once and [1m,2m)", got)
	}
}

// Broken window configs: every problem with its path and line.
func TestWindowValidation(t *testing.T) {
	const et = ", event_time: ts"
	base := "          name: w\n          output: {stream: out}\n"
	aggs := "          aggregates: {views: count}\n"
	tests := []struct {
		name, input, step string
		want              []string
	}{
		{"size missing", et, base + aggs, []string{`test.yaml:7: pipelines[0].steps[0].window.size: required for tumbling windows`}},
		{"size zero", et, base + "          size: 0s\n" + aggs, []string{`test.yaml:10: pipelines[0].steps[0].window.size: required for tumbling windows`}},
		{"size negative", et, base + "          size: -1m\n" + aggs, []string{`test.yaml:10: pipelines[0].steps[0].window.size: required`}},
		{"size fraction of ms", et, base + "          size: 1500us\n" + aggs, []string{`test.yaml:10: pipelines[0].steps[0].window.size: 1.5ms is not a whole number of milliseconds`}},
		{"hop on tumbling", et, base + "          size: 1m\n          hop: 10s\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.hop: only hopping windows have a hop`}},
		{"hop missing", et, base + "          kind: hopping\n          size: 1m\n" + aggs, []string{`test.yaml:7: pipelines[0].steps[0].window.hop: required for hopping windows`}},
		{"hop not dividing", et, base + "          kind: hopping\n          size: 1m\n          hop: 25s\n" + aggs, []string{`test.yaml:12: pipelines[0].steps[0].window.hop: 25s does not divide size 1m0s`}},
		{"hop too small", et, base + "          kind: hopping\n          size: 24h\n          hop: 1ms\n" + aggs, []string{`test.yaml:12: pipelines[0].steps[0].window.hop: size 24h0m0s / hop 1ms is 86400000 windows for every event, over 100`}},
		{"hop over size", et, base + "          kind: hopping\n          size: 1m\n          hop: 2m\n" + aggs, []string{`test.yaml:12: pipelines[0].steps[0].window.hop: 2m0s is longer than size 1m0s`}},
		{"hop zero", et, base + "          kind: hopping\n          size: 1m\n          hop: 0s\n" + aggs, []string{`test.yaml:12: pipelines[0].steps[0].window.hop: must be above 0`}},
		{"gap on tumbling", et, base + "          size: 1m\n          gap: 30s\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.gap: only session windows have a gap`}},
		{"gap missing", et, base + "          kind: session\n" + aggs, []string{`test.yaml:7: pipelines[0].steps[0].window.gap: required for session windows`}},
		{"size on session", et, base + "          kind: session\n          gap: 1m\n          size: 1m\n" + aggs, []string{`test.yaml:12: pipelines[0].steps[0].window.size: session windows have no size`}},
		{"unknown kind", et, base + "          kind: sliding\n" + aggs, []string{`test.yaml:10: pipelines[0].steps[0].window.kind: want tumbling, hopping or session, got "sliding"`}},
		{"grace negative", et, base + "          size: 1m\n          grace: -1s\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.grace: must be at least 0`}},
		{"grace over dedupe", et + "}\n    dedupe: {id: id, window: 5s", base + "          size: 1m\n          grace: 10s\n" + aggs,
			[]string{`test.yaml:12: pipelines[0].steps[0].window.grace: grace 10s is longer than the dedupe window 5s`}},
		{"aggregates missing", et, base + "          size: 1m\n", []string{`test.yaml:7: pipelines[0].steps[0].window.aggregates: required`}},
		{"aggregates empty", et, base + "          size: 1m\n          aggregates: {}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates: want at least one aggregate`}},
		{"unknown aggregate", et, base + "          size: 1m\n          aggregates: {x: {median: amount}}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x.median: unknown aggregate function "median"`}},
		{"unknown bare aggregate", et, base + "          size: 1m\n          aggregates: {x: total}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x: unknown aggregate function "total"`}},
		{"sum without field", et, base + "          size: 1m\n          aggregates: {x: sum}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x: sum needs a field`}},
		{"empty field", et, base + "          size: 1m\n          aggregates: {x: {sum: ''}}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x.sum: empty field`}},
		{"bad field path", et, base + "          size: 1m\n          aggregates: {x: {max: a..b}}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x.max: path "a..b" has an empty segment`}},
		{"two functions", et, base + "          size: 1m\n          aggregates: {x: {sum: a, max: b}}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.x: want count or a one-key mapping`}},
		{"reserved name", et, base + "          size: 1m\n          aggregates: {count: count}\n", []string{`test.yaml:11: pipelines[0].steps[0].window.aggregates.count: "count" is a field of every window result`}},
		{"emit", et, base + "          size: 1m\n          emit: always\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.emit: want close, update or both, got "always"`}},
		{"late", et, base + "          size: 1m\n          late: keep\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.late: want drop, dead_letter or stream:<name>`}},
		{"event time without input.event_time", "", base + "          time: event\n          size: 1m\n" + aggs, []string{`test.yaml:10: pipelines[0].steps[0].window.time: event time needs the pipeline's input.event_time`}},
		{"name missing", et, "          output: {stream: out}\n          size: 1m\n" + aggs, []string{`test.yaml:7: pipelines[0].steps[0].window.name: required`}},
		{"unknown key", et, base + "          size: 1m\n          every: 1m\n" + aggs, []string{`test.yaml:11: pipelines[0].steps[0].window.every: unknown key`}},
		{"several at once", et, base + "          kind: hopping\n          size: 1m\n          hop: 7s\n          grace: -1s\n          emit: x\n" + aggs, []string{
			`test.yaml:12: pipelines[0].steps[0].window.hop: 7s does not divide size 1m0s`,
			`test.yaml:13: pipelines[0].steps[0].window.grace: must be at least 0`,
			`test.yaml:14: pipelines[0].steps[0].window.emit: want close, update or both`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := winConfig(tt.input, tt.step) // a dedupe section in input moves the step down a line
			_, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
			if err == nil {
				t.Fatalf("Parse(%s) = nil error, want %q", tt.name, tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Parse(%s) problems:\n%v\nwant %d:\n%s", tt.name, err, len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("Parse(%s) problem %d = %q, want it to start with %q", tt.name, i, lines[i], w)
				}
			}
		})
	}
	// Two analytics steps of one name.
	config := winConfig(", event_time: ts", base+"          size: 1m\n"+aggs) + "      - window:\n" + base + "          size: 1m\n" + aggs
	_, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), `pipelines[0].steps[1].window.name: "w" is the state name of steps[0] too`) {
		t.Errorf("Parse(two windows named w) = %v, want the name clash", err)
	}
}

// A numeric aggregate of a field that the schema step before the window
// declares a string is a problem at the aggregate; one the schema allows
// as a number (or does not name) is not.
func TestWindowSchemaFieldType(t *testing.T) {
	dir := t.TempDir()
	schemaJSON := `{"type":"object","properties":{"page":{"type":"string"},"amount":{"type":"number"},"order":{"type":"object","properties":{"id":{"type":"string"},"qty":{"type":"integer"}}}}}`
	if err := os.WriteFile(filepath.Join(dir, "click.json"), []byte(schemaJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	config := `schemas:
  - {type: click, version: 1, file: click.json}
pipelines:
  - name: p
    input: {stream: in, payload: data, event_time: ts}
    key: site
    steps:
      - schema: {type: click}
      - window:
          name: w
          output: {stream: out}
          size: 1m
          aggregates:
            views: count
            revenue: {sum: amount}
            qty: {max: order.qty}
            other: {avg: unknown}
            pages: {count_distinct: page}
            entry: {first: page}
            bad: {sum: page}
            worse: {min: order.id}
`
	path := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The check runs as the file loads: the window step is bound to the
	// steps before it.
	_, err := pipelines.Load(path, pipelines.NewRegistry())
	want := []string{
		path + `:20: pipelines[0].steps[1].window.aggregates.bad.sum: sum of "page": the schema of type "click" version 1 (steps[0]) does not allow a number there`,
		path + `:21: pipelines[0].steps[1].window.aggregates.worse.min: min of "order.id": the schema of type "click" version 1 (steps[0]) does not allow a number there`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("Load = %v, want:\n%s", err, strings.Join(want, "\n"))
	}
}

// A hopping event too late for its older window only is added to the
// newer one, and is not dead-lettered as late.
func TestWindowHoppingPartlyLate(t *testing.T) {
	h := winHarness(t, winConfig(", event_time: ts", `          name: w
          output: {stream: out}
          kind: hopping
          size: 1m
          hop: 30s
          late: dead_letter
          aggregates: {views: count}
`), t0.Add(time.Hour), pipetest.Options{})
	winSend(t, h, 10*time.Second, "")
	winSend(t, h, 45*time.Second, "") // closes [-30s, 30s)
	winSend(t, h, 20*time.Second, "") // [-30s, 30s) closed, [0s, 60s) open
	if err := h.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	win := func(from, n int) string {
		s, e := ms(time.Duration(from)*time.Second), ms(time.Duration(from)*time.Second+time.Minute)
		return winWant(t, "window", fmt.Sprintf("%d:%d", s, e), fmt.Sprintf(`"start":%d,"end":%d,"count":%d,"views":%d`, s, e, n, n))
	}
	winCheck(t, winResults(t, h, "out"), []string{win(-30, 1), win(0, 3), win(30, 1)})
	if dl, err := h.DeadLetters("p"); err != nil || len(dl) != 0 {
		t.Errorf("dead letters = %v, %v; want none", dl, err)
	}
}
