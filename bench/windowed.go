package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

// The windowed scenario: Eddy's plain pipeline and the same with a window
// step before the output (SideEddyWindow), in turns. The window step keeps
// tumbling one-minute windows per key in event time (the events' "at", in
// unix ms) and, when a window closes, emits its count of events and its
// count of distinct pages. The events' times are when they were made, so
// a run's windows are those of the minute or two the pre-fill took; to
// close them all, once every event has gone through, one event an hour
// ahead goes to each partition and moves its watermark past every window
// (it is sent only then: read earlier, it would move the watermark past
// windows whose events are still in flight, and make those events late).
// The run ends when the last window's result is written.

const (
	// eventTimeField is the events' time in unix ms, the windowed
	// pipeline's input.event_time.
	eventTimeField = "at"
	// windowName names the window step: its state, timers and result ids.
	windowName = "per_minute"
	// windowSize is the tumbling window's length.
	windowSize = time.Minute
	// distinctField is the field the window counts the distinct values of,
	// and distinctName the result's name for that count.
	distinctField = "page"
	distinctName  = "pages"
	// closeAhead is how far ahead of the clock the closing events are: past
	// the end of every window of the run.
	closeAhead = time.Hour
	// WindowedTarget is the aim for the windowed pipeline's events/s
	// as a ratio to the plain pipeline's.
	WindowedTarget = 0.7
	// exactDistinct is the number of distinct values up to which the
	// window's count_distinct (a HyperLogLog sketch) must be exact; above
	// it, within distinctTolerance.
	exactDistinct     = 1000
	distinctTolerance = 0.02
	// resultsBatch is entries per XRANGE when the results are checked.
	resultsBatch = 10000
)

// windowStep is the YAML of the windowed side's window step.
func windowStep(n names) string {
	return fmt.Sprintf(`      - window:
          name: %s
          output: {stream: %q, max_len: %d}
          kind: tumbling
          size: %v
          aggregates: {%s: {count_distinct: %s}}
          emit: close
`, windowName, n.windows(), outputMaxLen, windowSize, distinctName, distinctField)
}

// Windowed is the windowed scenario: Eddy's plain pipeline and the
// windowed one (SideEddyWindow) through Events each, Runs times, in turns
// whose order alternates.
type Windowed struct {
	Events int           `json:"events"`
	Runs   []WindowedRun `json:"runs"`
	Plain  SideSummary   `json:"plain"`
	Window SideSummary   `json:"window"`
	// Windows is the median number of windows (results) of a windowed run.
	Windows int `json:"windows"`
	// CloseSeconds is the median time of a windowed run from the last
	// event's output to the last window's result.
	CloseSeconds float64 `json:"close_seconds"`
	// Ratio is the median of the turns' ratios of the windowed pipeline's
	// events/s to the plain one's; Target is the aim (WindowedTarget).
	Ratio       float64 `json:"ratio"`
	Target      float64 `json:"target"`
	MeetsTarget bool    `json:"meets_target"`
}

// WindowedRun is one turn of the windowed scenario.
type WindowedRun struct {
	Plain  RunStats `json:"plain"`
	Window RunStats `json:"window"`
	Ratio  float64  `json:"ratio"`
}

// windowed runs the windowed scenario.
func (b *bencher) windowed(ctx context.Context) (*Windowed, error) {
	wd := &Windowed{Events: b.o.Events, Target: WindowedTarget}
	var ratios, windows, closes []float64
	for i := range b.o.WindowedRuns {
		order := []Side{SideEddy, SideEddyWindow}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		var r WindowedRun
		for _, side := range order {
			s, err := b.backlogRun(ctx, side, b.o.Events, 0)
			if err != nil {
				return nil, fmt.Errorf("windowed run %d of %d, %s: %w", i+1, b.o.WindowedRuns, side, err)
			}
			b.progressRun("windowed", i+1, b.o.WindowedRuns, s)
			if side == SideEddyWindow {
				r.Window = s
			} else {
				r.Plain = s
			}
		}
		r.Ratio = ratio(r.Window.EventsPerSec, r.Plain.EventsPerSec)
		ratios = append(ratios, r.Ratio)
		windows = append(windows, float64(r.Window.Windows))
		closes = append(closes, r.Window.CloseSeconds)
		wd.Runs = append(wd.Runs, r)
	}
	wd.Ratio, wd.Windows, wd.CloseSeconds = Median(ratios), int(Median(windows)), Median(closes)
	wd.MeetsTarget = wd.Ratio >= wd.Target
	wd.Plain = summarizeRuns(runsOf(wd.Runs, func(r WindowedRun) RunStats { return r.Plain }))
	wd.Window = summarizeRuns(runsOf(wd.Runs, func(r WindowedRun) RunStats { return r.Window }))
	return wd, nil
}

// windowKey names one window: the user's number and its start (unix ms).
type windowKey struct {
	user  int
	start int64
}

// windowWant is what one window's result must say.
type windowWant struct {
	count int64
	pages map[int]struct{}
}

// windowTally is the windows the events of a run fall in, and what each
// one's result must say: the expected results, made as the events are.
type windowTally struct {
	size    int64 // ms
	events  int64
	windows map[windowKey]*windowWant
}

func newWindowTally() *windowTally {
	return &windowTally{size: windowSize.Milliseconds(), windows: map[windowKey]*windowWant{}}
}

// add counts one event (events.observe).
func (t *windowTally) add(user int, atMS int64, page int) {
	k := windowKey{user: user, start: floorDiv(atMS, t.size) * t.size}
	w := t.windows[k]
	if w == nil {
		w = &windowWant{pages: map[int]struct{}{}}
		t.windows[k] = w
	}
	w.count++
	w.pages[page] = struct{}{}
	t.events++
}

// windowResult is the part of a window result's data the bench checks.
type windowResult struct {
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Count int64  `json:"count"`
	Key   string `json:"key"`
	Pages *int64 `json:"pages"`
}

// check compares the results with the tally: one result per window,
// each with the window's count and distinct pages (exact up to
// exactDistinct), so that the counts add up to every event once. It
// names the first few results that are wrong.
func (t *windowTally) check(results []redis.XMessage) error {
	var problems []string
	wrong := 0
	bad := func(format string, args ...any) {
		wrong++
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	seen := make(map[windowKey]bool, len(t.windows))
	var sum int64
	for _, e := range results {
		kind, _ := e.Values["kind"].(string)
		key, _ := e.Values["key"].(string)
		data, _ := e.Values["data"].(string)
		var r windowResult
		if err := json.Unmarshal([]byte(data), &r); err != nil || kind != "window" || r.Key != key || r.Pages == nil {
			bad("result %s: kind %q, key %q, data %s: want a window result of the key with %s", e.ID, kind, key, data, distinctName)
			continue
		}
		user, err := strconv.Atoi(strings.TrimPrefix(key, "u"))
		if err != nil || !strings.HasPrefix(key, "u") {
			bad("result %s: key %q is not one of the events' users", e.ID, key)
			continue
		}
		k := windowKey{user: user, start: r.Start}
		w := t.windows[k]
		switch {
		case w == nil:
			bad("result %s: window %s of %s: no event of the run falls in it", e.ID, time.UnixMilli(r.Start).UTC().Format(time.RFC3339), key)
			continue
		case seen[k]:
			bad("result %s: window %s of %s: a second result", e.ID, time.UnixMilli(r.Start).UTC().Format(time.RFC3339), key)
			continue
		}
		seen[k] = true
		sum += r.Count
		distinct := int64(len(w.pages))
		pagesOK := *r.Pages == distinct
		if distinct > exactDistinct {
			pagesOK = math.Abs(float64(*r.Pages-distinct)) <= distinctTolerance*float64(distinct)
		}
		if r.End != r.Start+t.size || r.Count != w.count || !pagesOK {
			bad("result %s: window %s of %s: end %d, count %d, %s %d; want end %d, count %d, %s %d",
				e.ID, time.UnixMilli(r.Start).UTC().Format(time.RFC3339), key, r.End, r.Count, distinctName, *r.Pages,
				r.Start+t.size, w.count, distinctName, distinct)
		}
	}
	if missing := len(t.windows) - len(seen); missing > 0 {
		bad("%d of %d windows have no result", missing, len(t.windows))
	}
	if wrong == 0 && sum != t.events {
		bad("the windows count %d events together, want %d (each event once)", sum, t.events)
	}
	if wrong > 0 {
		return fmt.Errorf("%d problem(s) with the %d window results (%d windows, %d events): %s",
			wrong, len(results), len(t.windows), t.events, strings.Join(problems, "; "))
	}
	return nil
}

// closeWindows sends, once every event has gone through, one event
// closeAhead ahead of the clock to each partition, which moves its
// watermark past every window of the run, and waits until every window's
// result is written. It returns how many closing events it sent.
func (b *bencher) closeWindows(ctx context.Context, c *child, r *sideRun, ev *events, t *windowTally) (int, error) {
	ev.observe = nil // the closing events' windows stay open
	probes := r.probes(ev, time.Now().Add(closeAhead).UnixNano())
	if _, err := r.prod.Send(ctx, probes); err != nil {
		return 0, fmt.Errorf("send the events that close the windows: %w", err)
	}
	if err := b.waitOutputs(ctx, c, r.names.windows(), int64(len(t.windows)), stuckAfter); err != nil {
		return 0, fmt.Errorf("wait for the %d window results: %w", len(t.windows), err)
	}
	return len(probes), nil
}

// verifyWindows checks, after the windowed side has exited, its results
// against the tally (see windowTally.check) and that no window of the
// run is left open in its state: only the closing events' windows are.
func (b *bencher) verifyWindows(ctx context.Context, r *sideRun, t *windowTally) error {
	var results []redis.XMessage
	for from := "-"; ; {
		batch, err := b.rdb.XRangeN(ctx, r.names.windows(), from, "+", resultsBatch).Result()
		if err != nil {
			return fmt.Errorf("XRANGE %s: %w", r.names.windows(), err)
		}
		results = append(results, batch...)
		if len(batch) < resultsBatch {
			break
		}
		from = "(" + batch[len(batch)-1].ID
	}
	if err := t.check(results); err != nil {
		return err
	}
	open, err := b.openWindows(ctx, r, time.Now().Add(closeAhead/2).UnixMilli())
	if err != nil {
		return err
	}
	if len(open) > 0 {
		return fmt.Errorf("%d window(s) of the run still open in the %s state, such as %s", len(open), windowName, open[0])
	}
	return nil
}

// openWindows returns the window fields ("w<start>|…") of the window
// step's state, of any key of any partition, whose start is before
// before, as "<key> <field>".
func (b *bencher) openWindows(ctx context.Context, r *sideRun, before int64) ([]string, error) {
	var keys []string
	for p := range len(r.inputs) {
		prefix := processor.StateKey(r.names.input(), p, len(r.inputs), r.group, windowName, "")
		var cursor uint64
		for {
			ks, next, err := b.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				return nil, fmt.Errorf("scan %s*: %w", prefix, err)
			}
			keys = append(keys, ks...)
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	cmds, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.HKeys(ctx, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the fields of %d window states: %w", len(keys), err)
	}
	var open []string
	var errs []error
	for i, c := range cmds {
		for _, f := range c.(*redis.StringSliceCmd).Val() {
			startText, _, ok := strings.Cut(strings.TrimPrefix(f, "w"), "|")
			if !strings.HasPrefix(f, "w") || !ok {
				continue // the closed mark "c"
			}
			start, err := strconv.ParseInt(startText, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("state %s field %q: %w", keys[i], f, err))
				continue
			}
			if start < before {
				open = append(open, keys[i]+" "+f)
			}
		}
	}
	return open, errors.Join(errs...)
}
