package bench

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"time"
)

const (
	// pollEvery is how often a backlog run checks the output's length.
	pollEvery = 10 * time.Millisecond
	// stuckAfter fails a run whose output has not grown for this long.
	stuckAfter = 30 * time.Second
	// stopTimeout is how long a side gets to exit after SIGTERM.
	stopTimeout = 30 * time.Second
)

// RunStats is one side's run through a pre-filled backlog.
type RunStats struct {
	Side    Side    `json:"side"`
	Events  int     `json:"events"`
	Seconds float64 `json:"seconds"` // from process start to the last output
	// EventsPerSec is Events / Seconds.
	EventsPerSec float64 `json:"events_per_sec"`
	// CPUSeconds is the side's process, user plus system, from its start
	// to the last output; RedisCPUSeconds is redis-server's over the same
	// time (INFO cpu).
	CPUSeconds      float64 `json:"cpu_seconds"`
	RedisCPUSeconds float64 `json:"redis_cpu_seconds"`
	// PeakRSSBytes is the side's VmHWM at the last output; 0 if unknown.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// Outputs is the output stream's length after the side exited, and
	// Pending the entries left pending on its inputs: Events (and the
	// windowed side's closing events) and 0, or the run is an error.
	Outputs int64 `json:"outputs"`
	Pending int64 `json:"pending"`
	// Windows is the windowed side's window results, one per key and
	// minute, and CloseSeconds the part of Seconds from the last event's
	// output to the last result (see Windowed); 0 for the other sides.
	Windows      int     `json:"windows,omitempty"`
	CloseSeconds float64 `json:"close_seconds,omitempty"`
}

// Pair is one paired throughput run: both sides on fresh data of the same size.
type Pair struct {
	First    Side     `json:"first"`
	Baseline RunStats `json:"baseline"`
	Eddy     RunStats `json:"eddy"`
	// Ratio is Eddy's events/s over the baseline's.
	Ratio float64 `json:"ratio"`
	// RedisCPURatio is redis-server's CPU per event while Eddy ran over
	// the same while the baseline ran.
	RedisCPURatio float64 `json:"redis_cpu_ratio"`
}

// SideSummary is one side's medians over the paired runs.
type SideSummary struct {
	EventsPerSec float64 `json:"events_per_sec"`
	// CPUPerMillion is the side's CPU seconds per million events;
	// RedisCPUPerMillion redis-server's while that side ran (both are also
	// µs per event).
	CPUPerMillion      float64 `json:"cpu_seconds_per_million"`
	RedisCPUPerMillion float64 `json:"redis_cpu_seconds_per_million"`
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
}

// Throughput is a paired throughput scenario: Runs pairs over Events each.
// In the dedupe steady state (Premarked > 0) every dedupe set of Eddy's
// window exists before a run starts, and the baseline's one set holds as
// many ids as all of them together (see premark).
type Throughput struct {
	Events    int         `json:"events"`
	Premarked int         `json:"premarked,omitempty"`
	Pairs     []Pair      `json:"pairs"`
	Baseline  SideSummary `json:"baseline"`
	Eddy      SideSummary `json:"eddy"`
	// Ratio is the median of the pairs' ratios (not the ratio of medians),
	// and RedisCPURatio likewise of their Redis CPU per event.
	Ratio         float64 `json:"ratio"`
	RedisCPURatio float64 `json:"redis_cpu_ratio"`
}

// throughput runs the paired throughput runs on fresh data.
func (b *bencher) throughput(ctx context.Context) (*Throughput, error) {
	return b.pairs(ctx, "throughput", b.o.Runs, false)
}

// steady runs the paired throughput runs in the dedupe steady state.
func (b *bencher) steady(ctx context.Context) (*Throughput, error) {
	return b.pairs(ctx, "steady", b.o.SteadyRuns, true)
}

// pairs runs paired throughput runs, alternating which side goes first;
// with premarked, each in the dedupe steady state.
func (b *bencher) pairs(ctx context.Context, label string, runs int, premarked bool) (*Throughput, error) {
	t := &Throughput{Events: b.o.Events}
	if premarked {
		t.Premarked = b.o.Events
	}
	var ratios, redisRatios []float64
	for i := range runs {
		first := SideBaseline
		if i%2 == 1 {
			first = SideEddy
		}
		p := Pair{First: first}
		for _, side := range []Side{first, first.other()} {
			s, err := b.backlogRun(ctx, side, b.o.Events, t.Premarked)
			if err != nil {
				return nil, fmt.Errorf("%s run %d of %d, %s: %w", label, i+1, runs, side, err)
			}
			b.progressRun(label, i+1, runs, s)
			if side == SideEddy {
				p.Eddy = s
			} else {
				p.Baseline = s
			}
		}
		p.Ratio = ratio(p.Eddy.EventsPerSec, p.Baseline.EventsPerSec)
		p.RedisCPURatio = ratio(p.Eddy.RedisCPUSeconds, p.Baseline.RedisCPUSeconds) // the same events on both sides
		ratios = append(ratios, p.Ratio)
		redisRatios = append(redisRatios, p.RedisCPURatio)
		t.Pairs = append(t.Pairs, p)
	}
	t.Ratio, t.RedisCPURatio = Median(ratios), Median(redisRatios)
	t.Baseline = summarizeRuns(runsOf(t.Pairs, func(p Pair) RunStats { return p.Baseline }))
	t.Eddy = summarizeRuns(runsOf(t.Pairs, func(p Pair) RunStats { return p.Eddy }))
	return t, nil
}

// Stateful is the stateful scenario: Eddy's plain pipeline and the two
// stateful ones (SideEddyIncr, SideEddyRMW) through Events each, Runs
// times, in turns whose order rotates.
type Stateful struct {
	Events int           `json:"events"`
	Runs   []StatefulRun `json:"runs"`
	Plain  SideSummary   `json:"plain"`
	Incr   SideSummary   `json:"incr"`
	RMW    SideSummary   `json:"rmw"`
	// IncrRatio and RMWRatio are the medians of the turns' ratios of the
	// stateful pipeline's events/s to the plain one's.
	IncrRatio float64 `json:"incr_ratio"`
	RMWRatio  float64 `json:"rmw_ratio"`
}

// StatefulRun is one turn of the stateful scenario.
type StatefulRun struct {
	Plain     RunStats `json:"plain"`
	Incr      RunStats `json:"incr"`
	RMW       RunStats `json:"rmw"`
	IncrRatio float64  `json:"incr_ratio"`
	RMWRatio  float64  `json:"rmw_ratio"`
}

// stateful runs the stateful scenario.
func (b *bencher) stateful(ctx context.Context) (*Stateful, error) {
	st := &Stateful{Events: b.o.Events}
	order := []Side{SideEddy, SideEddyIncr, SideEddyRMW}
	var incr, rmw []float64
	for i := range b.o.StatefulRuns {
		var r StatefulRun
		for j := range order {
			side := order[(i+j)%len(order)]
			s, err := b.backlogRun(ctx, side, b.o.Events, 0)
			if err != nil {
				return nil, fmt.Errorf("stateful run %d of %d, %s: %w", i+1, b.o.StatefulRuns, side, err)
			}
			b.progressRun("stateful", i+1, b.o.StatefulRuns, s)
			switch side {
			case SideEddyIncr:
				r.Incr = s
			case SideEddyRMW:
				r.RMW = s
			default:
				r.Plain = s
			}
		}
		r.IncrRatio = ratio(r.Incr.EventsPerSec, r.Plain.EventsPerSec)
		r.RMWRatio = ratio(r.RMW.EventsPerSec, r.Plain.EventsPerSec)
		incr, rmw = append(incr, r.IncrRatio), append(rmw, r.RMWRatio)
		st.Runs = append(st.Runs, r)
	}
	st.IncrRatio, st.RMWRatio = Median(incr), Median(rmw)
	st.Plain = summarizeRuns(runsOf(st.Runs, func(r StatefulRun) RunStats { return r.Plain }))
	st.Incr = summarizeRuns(runsOf(st.Runs, func(r StatefulRun) RunStats { return r.Incr }))
	st.RMW = summarizeRuns(runsOf(st.Runs, func(r StatefulRun) RunStats { return r.RMW }))
	return st, nil
}

// progressRun reports one finished run.
func (b *bencher) progressRun(label string, i, runs int, s RunStats) {
	b.progress("%-10s %d/%d %-15s %9.0f events/s  cpu %5.2fs  redis cpu %5.2fs (%.2f µs/event)  rss %s",
		label, i, runs, s.Side, s.EventsPerSec, s.CPUSeconds, s.RedisCPUSeconds, perMillion(s.RedisCPUSeconds, s.Events), megabytes(s.PeakRSSBytes))
}

// runsOf picks one side's runs out of xs.
func runsOf[T any](xs []T, side func(T) RunStats) []RunStats {
	out := make([]RunStats, len(xs))
	for i, x := range xs {
		out[i] = side(x)
	}
	return out
}

// summarizeRuns returns the medians of one side's runs.
func summarizeRuns(runs []RunStats) SideSummary {
	var eps, cpu, rcpu, rss []float64
	for _, s := range runs {
		eps = append(eps, s.EventsPerSec)
		cpu = append(cpu, perMillion(s.CPUSeconds, s.Events))
		rcpu = append(rcpu, perMillion(s.RedisCPUSeconds, s.Events))
		rss = append(rss, float64(s.PeakRSSBytes))
	}
	return SideSummary{EventsPerSec: Median(eps), CPUPerMillion: Median(cpu), RedisCPUPerMillion: Median(rcpu), PeakRSSBytes: int64(Median(rss))}
}

// perMillion scales seconds spent on events to a million events.
func perMillion(seconds float64, events int) float64 {
	return ratio(seconds*1e6, float64(events))
}

// backlogRun pre-fills n events (and, with premarked > 0, that many ids
// into the dedupe sets: see premark), starts side, and measures it from its
// process start until the output holds n entries; then stops it with
// SIGTERM and verifies the output length, that nothing is pending and,
// for a stateful side, that its counters add up to n. The windowed side
// is measured until its last window result, once closeWindows has closed
// them, and its results are checked by verifyWindows.
func (b *bencher) backlogRun(ctx context.Context, side Side, n, premarked int) (RunStats, error) {
	keys := b.next()
	defer func() { _ = b.clean(ctx, keys) }() // an error here shows on the next run
	r, err := b.prepare(side, keys)
	if err != nil {
		return RunStats{}, err
	}
	ev := newEvents("t"+strconv.Itoa(b.runs), uint64(b.runs))
	var tally *windowTally
	if side == SideEddyWindow {
		tally = newWindowTally()
		ev.observe = tally.add
	}
	if err := prefill(ctx, r.prod, ev, n, func() int64 { return time.Now().UnixNano() }); err != nil {
		return RunStats{}, fmt.Errorf("pre-fill: %w", err)
	}
	if premarked > 0 {
		if err := b.premark(ctx, r, premarked); err != nil {
			return RunStats{}, fmt.Errorf("pre-mark: %w", err)
		}
	}
	redis0, err := b.redisCPU(ctx)
	if err != nil {
		return RunStats{}, err
	}
	c, err := startChild(string(side), b.o.Exe, b.url, r.args)
	if err != nil {
		return RunStats{}, err
	}
	defer c.kill()
	var prof *profiler
	if r.pprof != "" {
		if prof, err = startProfiler(ctx, r.pprof, b.o.ProfileDir, fmt.Sprintf("%s-run%d", side, b.runs)); err != nil {
			return RunStats{}, err
		}
		defer prof.stop() //nolint:errcheck // stopped and reported below; this one is for the early returns
	}
	if err := b.waitOutputs(ctx, c, keys.output(), int64(n), stuckAfter); err != nil {
		return RunStats{}, err
	}
	outputs, closeTook := int64(n), time.Duration(0)
	if tally != nil {
		lastOutput := time.Now()
		sent, err := b.closeWindows(ctx, c, r, ev, tally)
		if err != nil {
			return RunStats{}, err
		}
		outputs += int64(sent)
		closeTook = time.Since(lastOutput)
	}
	took := time.Since(c.started)
	u := c.sample()
	if prof != nil {
		files, err := prof.stop()
		if err != nil {
			b.progress("warning: profiling %s: %v", side, err)
		}
		b.progress("%d CPU profile(s) of %s in %s: go tool pprof %s %s", len(files), side, b.o.ProfileDir, b.o.Exe, filepath.Join(b.o.ProfileDir, string(side)+"-run"+strconv.Itoa(b.runs)+"-*.pprof"))
	}
	redis1, err := b.redisCPU(ctx)
	if err != nil {
		return RunStats{}, err
	}
	if err := c.stop(ctx, stopTimeout, &u); err != nil {
		return RunStats{}, err
	}
	s := RunStats{
		Side: side, Events: n, Seconds: took.Seconds(), EventsPerSec: float64(n) / took.Seconds(),
		CPUSeconds: u.cpu.Seconds(), RedisCPUSeconds: math.Round((redis1-redis0)*1e6) / 1e6, PeakRSSBytes: u.peakRSS,
	}
	if s.Outputs, s.Pending, err = b.verify(ctx, r, outputs); err != nil {
		return s, err
	}
	if tally != nil {
		s.Windows, s.CloseSeconds = len(tally.windows), closeTook.Seconds()
		if err := b.verifyWindows(ctx, r, tally); err != nil {
			return s, err
		}
	}
	if side.stateStep() != "" {
		if err := b.verifyCounts(ctx, r, int64(n)); err != nil {
			return s, err
		}
	}
	return s, nil
}

// waitOutputs polls the length of stream every pollEvery until it reaches
// want. It fails if the side exits, or the length has not grown for stuck.
func (b *bencher) waitOutputs(ctx context.Context, c *child, stream string, want int64, stuck time.Duration) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last, lastGrew := int64(-1), time.Now()
	for {
		got, err := b.rdb.XLen(ctx, stream).Result()
		if err != nil {
			return fmt.Errorf("XLEN %s: %w", stream, err)
		}
		if got >= want {
			return nil
		}
		if got != last {
			last, lastGrew = got, time.Now()
		} else if time.Since(lastGrew) > stuck {
			return fmt.Errorf("stuck: output %s at %d of %d entries for %v%s", stream, got, want, stuck, c.log())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.failure()
		case <-tick.C:
		}
	}
}

// verify checks, after the side has exited, that the output holds exactly
// want entries and nothing is pending on any input, and returns both.
func (b *bencher) verify(ctx context.Context, r *sideRun, want int64) (outputs, pending int64, err error) {
	if outputs, err = b.rdb.XLen(ctx, r.names.output()).Result(); err != nil {
		return 0, 0, fmt.Errorf("XLEN %s: %w", r.names.output(), err)
	}
	for _, in := range r.inputs {
		p, err := b.rdb.XPending(ctx, in, r.group).Result()
		if err != nil {
			return outputs, pending, fmt.Errorf("XPENDING %s %s: %w", in, r.group, err)
		}
		pending += p.Count
	}
	switch {
	case outputs != want:
		return outputs, pending, fmt.Errorf("output %s has %d entries, want %d (one per event)", r.names.output(), outputs, want)
	case pending != 0:
		return outputs, pending, fmt.Errorf("%d entries still pending in group %s on %d input stream(s), want 0", pending, r.group, len(r.inputs))
	}
	return outputs, pending, nil
}

// memory runs each side once on a backlog of Options.Backlog events and
// keeps its peak RSS.
func (b *bencher) memory(ctx context.Context) (*Memory, error) {
	m := &Memory{Backlog: b.o.Backlog, TargetBytes: memoryTarget}
	for _, side := range []Side{SideEddy, SideBaseline} {
		s, err := b.backlogRun(ctx, side, b.o.Backlog, 0)
		if err != nil {
			return nil, fmt.Errorf("memory run, %s: %w", side, err)
		}
		b.progress("memory   %-8s %d events: peak rss %s, %.0f events/s", side, b.o.Backlog, megabytes(s.PeakRSSBytes), s.EventsPerSec)
		if side == SideEddy {
			m.Eddy = s
		} else {
			m.Baseline = s
		}
	}
	m.EddyWithinTarget = m.Eddy.PeakRSSBytes > 0 && m.Eddy.PeakRSSBytes < memoryTarget
	return m, nil
}

// memoryTarget is the bound on Eddy's peak RSS with the backlog.
const memoryTarget = 150_000_000

// Memory is the memory scenario: each side once through Backlog events.
type Memory struct {
	Backlog          int      `json:"backlog"`
	Baseline         RunStats `json:"baseline"`
	Eddy             RunStats `json:"eddy"`
	TargetBytes      int64    `json:"target_bytes"`
	EddyWithinTarget bool     `json:"eddy_within_target"`
}
