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

// harness parses config and starts a harness on it at t0 (on mr's data
// if given), closed at the end of the test.
func harness(t testing.TB, config string, opts pipetest.Options) *pipetest.Harness {
	t.Helper()
	if opts.Start.IsZero() {
		opts.Start = t0
	}
	return startHarness(t, config, opts)
}

// send sends an event of user at t0 + at (its "ts", unix ms) with the
// string fields kv (name, value, …; "a.b" for b in an object a) to
// pipeline "clicks", and waits until it is handled.
// (One at a time: the watermark moves with each event read, so events
// read in one batch could see each other's times.)
func send(t testing.TB, h *pipetest.Harness, user string, at time.Duration, kv ...string) {
	t.Helper()
	ev := map[string]any{"user": user, "ts": ms(at)}
	for i := 0; i+1 < len(kv); i += 2 {
		if outer, inner, ok := strings.Cut(kv[i], "."); ok { // a nested field
			ev[outer] = map[string]any{inner: kv[i+1]}
			continue
		}
		ev[kv[i]] = kv[i+1]
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Send("clicks", string(b)); err != nil {
		t.Fatal(err)
	}
	if err := h.Settle(); err != nil {
		t.Fatal(err)
	}
}

// open is the partition gauge of the step's open sessions or funnels
// (pipeline "clicks" of config, one partition).
func open(t testing.TB, h *pipetest.Harness, config, step string) int64 {
	t.Helper()
	f, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	in, err := processor.NewInspector(h.Client(), f.Pipeline("clicks").Options())
	if err != nil {
		t.Fatal(err)
	}
	gauges, err := in.Gauges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return gauges[0][pipelines.GaugeOpen(step)]
}

// checkNoState fails unless the keyed state name of key is empty.
func checkNoState(t testing.TB, h *pipetest.Harness, name, key string) {
	t.Helper()
	st, err := h.State("clicks", name, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Errorf("state %s of %s = %v, want none left", name, key, st)
	}
}

// sessionConfig is a pipeline "clicks" keyed by user with a session step
// of the given settings (YAML lines at the step's indentation), in event
// time unless eventTime is false.
func sessionConfig(eventTime bool, settings ...string) string {
	// Events are sent ahead of the harness's clock: no max_future bound.
	et := ", event_time: ts, max_future: -1s"
	if !eventTime {
		et = ""
	}
	return `
pipelines:
  - name: clicks
    input: {stream: clicks, payload: data, partitions: 1` + et + `}
    key: user
    steps:
      - session:
          name: sessions
          output: {stream: sessions}
          ` + strings.Join(settings, "\n          ") + `
`
}

// session is the expected summary of a session of key.
type session struct {
	key            string
	start, end     time.Duration
	events         int
	entry, exit    any // a page, or nil
	pages          []string
	truncated, cvt bool
}

func (s session) result() result {
	return result{Key: s.key, ID: "sessions:" + s.key + ":" + strconv.FormatInt(ms(s.start), 10), Kind: pipelines.KindSession,
		Data: map[string]any{
			"start": ms(s.start), "end": ms(s.end), "start_iso": iso(s.start), "end_iso": iso(s.end),
			"duration_ms": (s.end - s.start).Milliseconds(), "events": s.events,
			"entry_page": s.entry, "exit_page": s.exit, "pages": s.pages,
			"pages_truncated": s.truncated, "converted": s.cvt,
		}}
}

func sessions(ss ...session) []result {
	out := make([]result, len(ss))
	for i, s := range ss {
		out[i] = s.result()
	}
	return out
}

// In event time: an out-of-order event within grace joins and moves the
// start and entry page back; one beyond grace is late (here sent to a
// stream); the session closes by its timer at last + gap + grace with no
// further input, and its state goes with it.
func TestSessionEventTime(t *testing.T) {
	h := harness(t, sessionConfig(true, "gap: 30m", "grace: 2m", `converted: 'type == "purchase"'`, "late: stream:late"), pipetest.Options{})
	send(t, h, "u1", 10*time.Minute, "page", "/shoes", "type", "view")
	send(t, h, "u1", 9*time.Minute, "page", "/home", "type", "view") // 1m behind: joins
	send(t, h, "u1", 20*time.Minute, "page", "/cart", "type", "add_to_cart")
	send(t, h, "u1", 15*time.Minute, "page", "/late", "type", "view") // 5m behind: late
	send(t, h, "u1", 25*time.Minute, "page", "/shoes", "type", "purchase")
	checkResults(t, h, "sessions")
	late, err := h.Entries("late")
	if err != nil {
		t.Fatal(err)
	}
	if len(late) != 1 || !strings.Contains(late[0].Fields["data"], "/late") || late[0].Fields["late"] != "sessions" {
		t.Fatalf("late stream = %v, want the /late event", late)
	}
	// Idle, the watermark follows the clock: 56m is before 25m + 30m + 2m.
	advance(t, h, 56*time.Minute)
	checkResults(t, h, "sessions")
	advance(t, h, time.Minute)
	checkResults(t, h, "sessions", sessions(session{key: "u1", start: 9 * time.Minute, end: 25 * time.Minute, events: 4,
		entry: "/home", exit: "/shoes", pages: []string{"/home", "/shoes", "/cart"}, cvt: true})...)
	checkNoState(t, h, "sessions", "u1")
}

// An event that comes within gap of two open sessions merges them: one
// summary.
func TestSessionMerge(t *testing.T) {
	config := sessionConfig(true, "gap: 30m", "grace: 40m")
	h := harness(t, config, pipetest.Options{})
	send(t, h, "u1", 0, "page", "/a")
	send(t, h, "u1", 50*time.Minute, "page", "/b") // a second session: 50m after the first
	if n := open(t, h, config, "sessions"); n != 2 {
		t.Errorf("open sessions = %d, want 2", n)
	}
	send(t, h, "u1", 25*time.Minute, "page", "/c") // within 30m of both
	send(t, h, "u2", 60*time.Minute)               // another key, no page
	if n := open(t, h, config, "sessions"); n != 2 {
		t.Errorf("open sessions = %d, want 2 (u1's merged, u2's)", n)
	}
	advance(t, h, 129*time.Minute) // u1 closes at 50m + 30m + 40m
	checkResults(t, h, "sessions", sessions(session{key: "u1", start: 0, end: 50 * time.Minute, events: 3,
		entry: "/a", exit: "/b", pages: []string{"/a", "/c", "/b"}})...)
	advance(t, h, time.Minute) // u2 at 60m + 30m + 40m
	checkResults(t, h, "sessions", sessions(
		session{key: "u1", start: 0, end: 50 * time.Minute, events: 3, entry: "/a", exit: "/b", pages: []string{"/a", "/c", "/b"}},
		session{key: "u2", start: 60 * time.Minute, end: 60 * time.Minute, events: 1, pages: []string{}})...)
	checkNoState(t, h, "sessions", "u1")
	checkNoState(t, h, "sessions", "u2")
	if n := open(t, h, config, "sessions"); n != 0 {
		t.Errorf("open sessions = %d after all closed, want 0", n)
	}
}

// An out-of-order event joins a session only if the session would stay
// shorter than max_length; else it starts one of its own.
func TestSessionMaxLengthOutOfOrder(t *testing.T) {
	h := harness(t, sessionConfig(true, "gap: 30m", "max_length: 1h", "grace: 1h"), pipetest.Options{})
	for _, at := range []time.Duration{60, 40, 20, 1, 0} {
		send(t, h, "u1", at*time.Minute, "page", "/p"+strconv.Itoa(int(at)))
	}
	advance(t, h, 90*time.Minute) // [0] closes at min(0+30m, 0+1h) + 1h
	short := session{key: "u1", start: 0, end: 0, events: 1, entry: "/p0", exit: "/p0", pages: []string{"/p0"}}
	checkResults(t, h, "sessions", short.result())
	advance(t, h, 31*time.Minute) // [1m, 60m] at min(90m, 61m) + 1h
	long := session{key: "u1", start: time.Minute, end: 60 * time.Minute, events: 4, entry: "/p1", exit: "/p60",
		pages: []string{"/p1", "/p20", "/p40", "/p60"}}
	checkResults(t, h, "sessions", short.result(), long.result())
}

// A session reaching max_length closes at start + max_length, by the
// watermark an event later than that brings, and that event starts a new
// session; a gap starts one too.
func TestSessionMaxLength(t *testing.T) {
	h := harness(t, sessionConfig(true, "gap: 30m", "max_length: 1h"), pipetest.Options{})
	for _, at := range []time.Duration{0, 20 * time.Minute, 40 * time.Minute, 59 * time.Minute} {
		send(t, h, "u1", at, "page", "/p"+strconv.Itoa(int(at.Minutes())))
	}
	checkResults(t, h, "sessions")
	send(t, h, "u1", 61*time.Minute, "page", "/p61") // watermark 61m: the first closed at 60m
	first := session{key: "u1", start: 0, end: 59 * time.Minute, events: 4, entry: "/p0", exit: "/p59",
		pages: []string{"/p0", "/p20", "/p40", "/p59"}}
	checkResults(t, h, "sessions", first.result())
	send(t, h, "u1", 80*time.Minute, "page", "/p80")
	send(t, h, "u1", 111*time.Minute, "page", "/p111") // 31m after: a gap
	second := session{key: "u1", start: 61 * time.Minute, end: 80 * time.Minute, events: 2, entry: "/p61", exit: "/p80",
		pages: []string{"/p61", "/p80"}}
	checkResults(t, h, "sessions", first.result(), second.result())
	advance(t, h, 141*time.Minute)
	third := session{key: "u1", start: 111 * time.Minute, end: 111 * time.Minute, events: 1, entry: "/p111", exit: "/p111",
		pages: []string{"/p111"}}
	checkResults(t, h, "sessions", first.result(), second.result(), third.result())
	checkNoState(t, h, "sessions", "u1")
}

// max_pages keeps the pages first seen earliest, in that order, and marks
// the summary truncated; exit_page is the latest event's.
func TestSessionPagesTruncated(t *testing.T) {
	h := harness(t, sessionConfig(true, "grace: 5m", "max_pages: 3", "page: where.path"), pipetest.Options{})
	for _, e := range []struct {
		at   time.Duration
		page string
	}{{0, "/a"}, {time.Minute, "/b"}, {2 * time.Minute, "/c"}, {3 * time.Minute, "/d"}, {90 * time.Second, "/e"}, {4 * time.Minute, "/a"}} {
		send(t, h, "u1", e.at, "where.path", e.page)
	}
	advance(t, h, 4*time.Minute+35*time.Minute)
	checkResults(t, h, "sessions", sessions(session{key: "u1", start: 0, end: 4 * time.Minute, events: 6,
		entry: "/a", exit: "/a", pages: []string{"/a", "/b", "/e"}, truncated: true})...)
}

// late: dead_letter sends a late event to the dead-letter stream with
// reason late; grace 0 makes any event behind the watermark late.
func TestSessionLateDeadLetter(t *testing.T) {
	h := harness(t, sessionConfig(true, "late: dead_letter"), pipetest.Options{})
	send(t, h, "u1", 10*time.Minute, "page", "/a")
	send(t, h, "u1", 10*time.Minute, "page", "/b") // at the watermark: not late
	send(t, h, "u1", 9*time.Minute, "page", "/c")
	dl, err := h.DeadLetters("clicks")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Fields["eddy.reason"] != pipelines.ReasonLate || !strings.Contains(dl[0].Fields["data"], "/c") {
		t.Fatalf("dead letters = %v, want the /c event with reason late", dl)
	}
	advance(t, h, 40*time.Minute)
	checkResults(t, h, "sessions", sessions(session{key: "u1", start: 10 * time.Minute, end: 10 * time.Minute, events: 2,
		entry: "/a", exit: "/b", pages: []string{"/a", "/b"}})...)
}

// In processing time the engine clock times the events: a session closes
// gap after its last event.
func TestSessionProcessingTime(t *testing.T) {
	h := harness(t, sessionConfig(false, "gap: 30m", `converted: 'type == "purchase"'`), pipetest.Options{})
	send(t, h, "u1", 0, "page", "/a", "type", "view") // ts is not the step's time here
	advance(t, h, 10*time.Minute)
	send(t, h, "u1", 0, "page", "/b", "type", "view")
	advance(t, h, 29*time.Minute)
	checkResults(t, h, "sessions")
	send(t, h, "u1", 0, "page", "/c", "type", "purchase") // 39m: 29m after /b
	advance(t, h, 30*time.Minute-time.Second)
	checkResults(t, h, "sessions")
	advance(t, h, time.Second)
	checkResults(t, h, "sessions", sessions(session{key: "u1", start: 0, end: 39 * time.Minute, events: 3,
		entry: "/a", exit: "/c", pages: []string{"/a", "/b", "/c"}, cvt: true})...)
	checkNoState(t, h, "sessions", "u1")
}

// A harness started again on the same data goes on with the open session:
// one summary with every event.
func TestSessionRestart(t *testing.T) {
	config := sessionConfig(true, "gap: 30m")
	mr := miniredis.RunT(t)
	h := harness(t, config, pipetest.Options{Redis: mr})
	send(t, h, "u1", 0, "page", "/a")
	send(t, h, "u1", 10*time.Minute, "page", "/b")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := harness(t, config, pipetest.Options{Redis: mr, Start: h.Now()})
	send(t, h2, "u1", 20*time.Minute, "page", "/c")
	advance(t, h2, 50*time.Minute)
	checkResults(t, h2, "sessions", sessions(session{key: "u1", start: 0, end: 20 * time.Minute, events: 3,
		entry: "/a", exit: "/c", pages: []string{"/a", "/b", "/c"}})...)
	checkNoState(t, h2, "sessions", "u1")
}

// Every broken session config is reported, with its path and line.
func TestSessionConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, step, want string
	}{
		{"gap zero", "gap: 0s", "test.yaml:10: pipelines[0].steps[0].session.gap: must be positive, got 0s"},
		{"gap negative", "gap: -1m", "test.yaml:10: pipelines[0].steps[0].session.gap: must be positive, got -1m0s"},
		{"max_length zero", "max_length: 0s", "test.yaml:10: pipelines[0].steps[0].session.max_length: must be positive"},
		{"grace negative", "grace: -1s", "test.yaml:10: pipelines[0].steps[0].session.grace: must be at least 0"},
		{"max_pages", "max_pages: 0", "test.yaml:10: pipelines[0].steps[0].session.max_pages: want 1 to 10000, got 0"},
		{"late", "late: keep", "test.yaml:10: pipelines[0].steps[0].session.late: want drop, dead_letter or stream:<name>"},
		{"converted", "converted: 'page +'", "test.yaml:10: pipelines[0].steps[0].session.converted:"},
		{"converted empty", "converted: ''", "test.yaml:10: pipelines[0].steps[0].session.converted: empty expression"},
		{"page", "page: 'a..b'", "test.yaml:10: pipelines[0].steps[0].session.page:"},
		{"unknown key", "gaps: 30m", "test.yaml:10: pipelines[0].steps[0].session.gaps: unknown key"},
		{"time", "time: wall", "test.yaml:10: pipelines[0].steps[0].session.time: want event or processing"},
		{"grace over dedupe", "grace: 2h", "test.yaml:10: pipelines[0].steps[0].session.grace: grace 2h0m0s is longer than the dedupe window 1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := `
pipelines:
  - name: clicks
    input: {stream: clicks, payload: data, partitions: 1, event_time: ts}
    key: user
    dedupe: {id: id, window: 1h}
    steps:
      - session:
          name: sessions
          ` + tc.step + `
          output: {stream: sessions}
`
			_, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Missing name and output, both reported.
	_, err := pipelines.Parse("test.yaml", []byte(`
pipelines:
  - name: clicks
    input: {stream: clicks}
    key: user
    steps:
      - session: {gap: 10m}
`), pipelines.NewRegistry())
	for _, want := range []string{
		"test.yaml:7: pipelines[0].steps[0].session.name: required",
		"test.yaml:7: pipelines[0].steps[0].session.output.stream: required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse = %v, want an error containing %q", err, want)
		}
	}
}
