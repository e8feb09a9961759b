package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// The events carry their time in ms ("at") beside ts, and tell observe
// the user, time and page of each one, as they say.
func TestEventsObserve(t *testing.T) {
	ev := newEvents("t1", 1)
	var seen []string
	ev.observe = func(user int, at int64, page int) { seen = append(seen, fmt.Sprintf("u%d %d /p/%d", user, at, page)) }
	for i := range 50 {
		ts := int64(1700000000123456789) + int64(i)*1e9
		rec := ev.next(ts)
		var e struct {
			UserID string `json:"user_id"`
			At     int64  `json:"at"`
			Page   string `json:"page"`
		}
		if err := json.Unmarshal([]byte(rec.Fields[1]), &e); err != nil {
			t.Fatal(err)
		}
		if want := ts / 1e6; e.At != want {
			t.Errorf("event %d: at %d, want ts in ms %d", i, e.At, want)
		}
		if got, want := seen[i], fmt.Sprintf("%s %d %s", e.UserID, e.At, e.Page); got != want {
			t.Errorf("event %d: observed %q, want %q", i, got, want)
		}
	}
}

// windowEntry is a result entry as the window step writes it.
func windowEntry(id, kind, key string, data string) redis.XMessage {
	return redis.XMessage{ID: id, Values: map[string]any{"key": key, "id": "per_minute:" + key, "kind": kind, "data": data}}
}

// check accepts the results only if each window of the events has exactly
// one, with its count and distinct pages, and nothing else is there.
func TestWindowTallyCheck(t *testing.T) {
	const m = 60_000
	tally := newWindowTally()
	for _, e := range []struct {
		user int
		at   int64
		page int
	}{
		{1, 10*m + 5, 7}, {1, 10*m + 59_999, 7}, {1, 10*m + 100, 8}, // u1 minute 10: 3 events, 2 pages
		{1, 11 * m, 7},                   // u1 minute 11
		{2, 10*m + 1, 3}, {2, -m + 1, 4}, // u2 minute 10, and before the epoch
	} {
		tally.add(e.user, e.at, e.page)
	}
	good := []redis.XMessage{
		windowEntry("1-0", "window", "u1", fmt.Sprintf(`{"start":%d,"end":%d,"count":3,"key":"u1","pages":2}`, 10*m, 11*m)),
		windowEntry("1-1", "window", "u1", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u1","pages":1}`, 11*m, 12*m)),
		windowEntry("1-2", "window", "u2", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u2","pages":1}`, 10*m, 11*m)),
		windowEntry("1-3", "window", "u2", fmt.Sprintf(`{"start":%d,"end":0,"count":1,"key":"u2","pages":1}`, -m)),
	}
	with := func(i int, e redis.XMessage) []redis.XMessage {
		out := slices.Clone(good)
		out[i] = e
		return out
	}
	tests := []struct {
		name    string
		results []redis.XMessage
		want    string // "" for no error
	}{
		{"all", good, ""},
		{"in another order", []redis.XMessage{good[3], good[1], good[0], good[2]}, ""},
		{"one missing", good[:3], "1 of 4 windows have no result"},
		{"one twice", append(slices.Clone(good), good[0]), "a second result"},
		{"a count off", with(0, windowEntry("1-0", "window", "u1", fmt.Sprintf(`{"start":%d,"end":%d,"count":2,"key":"u1","pages":2}`, 10*m, 11*m))),
			"count 2, pages 2; want end 660000, count 3, pages 2"},
		{"distinct pages off", with(0, windowEntry("1-0", "window", "u1", fmt.Sprintf(`{"start":%d,"end":%d,"count":3,"key":"u1","pages":3}`, 10*m, 11*m))),
			"pages 3; want end 660000, count 3, pages 2"},
		{"a wrong end", with(1, windowEntry("1-1", "window", "u1", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u1","pages":1}`, 11*m, 13*m))),
			"end 780000"},
		{"a window of no event", with(2, windowEntry("1-2", "window", "u3", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u3","pages":1}`, 10*m, 11*m))),
			"no event of the run falls in it"},
		{"an update", with(2, windowEntry("1-2", "update", "u2", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u2","pages":1}`, 10*m, 11*m))),
			`kind "update"`},
		{"no distinct count", with(2, windowEntry("1-2", "window", "u2", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"u2"}`, 10*m, 11*m))),
			"want a window result of the key with pages"},
		{"not JSON", with(2, windowEntry("1-2", "window", "u2", `{`)), "want a window result"},
		{"a key not a user", with(2, windowEntry("1-2", "window", "x2", fmt.Sprintf(`{"start":%d,"end":%d,"count":1,"key":"x2","pages":1}`, 10*m, 11*m))),
			`key "x2" is not one of the events' users`},
	}
	for _, tt := range tests {
		err := tally.check(tt.results)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: check = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: check = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// Above exactDistinct values a count_distinct within distinctTolerance
// passes; below it only the exact count does.
func TestWindowTallyCheckDistinct(t *testing.T) {
	tally := newWindowTally()
	const n = 2000
	for p := range n {
		tally.add(1, 5, p)
	}
	for _, tt := range []struct {
		pages int
		ok    bool
	}{{n, true}, {n + 30, true}, {n - 40, true}, {n + 41, false}, {n - 100, false}} {
		err := tally.check([]redis.XMessage{windowEntry("1-0", "window", "u1", fmt.Sprintf(`{"start":0,"end":60000,"count":%d,"key":"u1","pages":%d}`, n, tt.pages))})
		if (err == nil) != tt.ok {
			t.Errorf("check of %d distinct pages as %d = %v, want ok %v", n, tt.pages, err, tt.ok)
		}
	}
}

// openWindows finds the window fields of every partition's state whose
// start is before the given time, and nothing else.
func TestOpenWindows(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	b := &bencher{rdb: rdb}
	n := runNames(newPrefix(), 1)
	r := &sideRun{names: n, inputs: make([]string, 2), group: eddyGroup}
	key := func(p int, user string) string {
		return processor.StateKey(n.input(), p, 2, eddyGroup, windowName, user)
	}
	rdb.HSet(ctx, key(0, "u1"), "c", "120000", "w120000|", "{}")
	rdb.HSet(ctx, key(1, "u2"), "w60000|", "{}", "w9000000|", "{}")
	rdb.HSet(ctx, key(1, "u3"), "c", "60000")
	rdb.HSet(ctx, processor.StateKey(n.input(), 1, 2, eddyGroup, "other", "u2"), "w60000|", "{}")

	open, err := b.openWindows(ctx, r, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(open)
	want := []string{key(0, "u1") + " w120000|", key(1, "u2") + " w60000|"}
	if !slices.Equal(open, want) {
		t.Errorf("openWindows = %q, want %q", open, want)
	}
	rdb.HSet(ctx, key(0, "u1"), "wx|", "{}")
	if _, err := b.openWindows(ctx, r, 1_000_000); err == nil || !strings.Contains(err.Error(), `field "wx|"`) {
		t.Errorf("openWindows with a field wx| = %v, want an error naming it", err)
	}
}

// The windowed side's pipeline loads: event time from "at", and the
// window step before the output, on the results stream.
func TestEddyConfigWindow(t *testing.T) {
	n := runNames("p:", 1)
	cfg := eddyConfig(n, Standard(), SideEddyWindow)
	f, err := pipelines.Parse("bench.yaml", []byte(cfg), nil)
	if err != nil {
		t.Fatalf("the windowed config does not load: %v\n%s", err, cfg)
	}
	p := f.Pipelines[0]
	if p.Input.EventTime != eventTimeField {
		t.Errorf("input.event_time = %q, want %q", p.Input.EventTime, eventTimeField)
	}
	win, out := strings.Index(cfg, "- window:"), strings.Index(cfg, "- output:")
	if win < 0 || win > out || !strings.Contains(cfg, n.windows()) || !strings.Contains(cfg, "count_distinct: page") {
		t.Errorf("config lacks a window step with count_distinct of page on %s before the output:\n%s", n.windows(), cfg)
	}
	plain := eddyConfig(n, Standard(), SideEddy)
	if strings.Contains(plain, "event_time") || strings.Contains(plain, "- window:") {
		t.Errorf("the plain config has an event time or a window:\n%s", plain)
	}
}
