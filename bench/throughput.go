package bench

import (
	"context"
	"fmt"
	"math"
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
	// Pending the entries left pending on its inputs: Events and 0, or the
	// run is an error.
	Outputs int64 `json:"outputs"`
	Pending int64 `json:"pending"`
}

// Pair is one paired throughput run: both sides on fresh data of the same size.
type Pair struct {
	First    Side     `json:"first"`
	Baseline RunStats `json:"baseline"`
	Eddy     RunStats `json:"eddy"`
	// Ratio is Eddy's events/s over the baseline's.
	Ratio float64 `json:"ratio"`
}

// SideSummary is one side's medians over the paired runs.
type SideSummary struct {
	EventsPerSec float64 `json:"events_per_sec"`
	// CPUPerMillion is the side's CPU seconds per million events;
	// RedisCPUPerMillion redis-server's while that side ran.
	CPUPerMillion      float64 `json:"cpu_seconds_per_million"`
	RedisCPUPerMillion float64 `json:"redis_cpu_seconds_per_million"`
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
}

// Throughput is the throughput scenario: Runs pairs over Events each.
type Throughput struct {
	Events   int         `json:"events"`
	Pairs    []Pair      `json:"pairs"`
	Baseline SideSummary `json:"baseline"`
	Eddy     SideSummary `json:"eddy"`
	// Ratio is the median of the pairs' ratios (not the ratio of medians).
	Ratio float64 `json:"ratio"`
}

// throughput runs the paired throughput runs, alternating which side goes first.
func (b *bencher) throughput(ctx context.Context) (*Throughput, error) {
	t := &Throughput{Events: b.o.Events}
	var ratios []float64
	for i := range b.o.Runs {
		first := SideBaseline
		if i%2 == 1 {
			first = SideEddy
		}
		p := Pair{First: first}
		for _, side := range []Side{first, first.other()} {
			s, err := b.backlogRun(ctx, side, b.o.Events)
			if err != nil {
				return nil, fmt.Errorf("throughput run %d of %d, %s: %w", i+1, b.o.Runs, side, err)
			}
			b.progress("throughput %d/%d %-8s %9.0f events/s  cpu %5.2fs  redis cpu %5.2fs  rss %s",
				i+1, b.o.Runs, side, s.EventsPerSec, s.CPUSeconds, s.RedisCPUSeconds, megabytes(s.PeakRSSBytes))
			if side == SideEddy {
				p.Eddy = s
			} else {
				p.Baseline = s
			}
		}
		p.Ratio = ratio(p.Eddy.EventsPerSec, p.Baseline.EventsPerSec)
		ratios = append(ratios, p.Ratio)
		t.Pairs = append(t.Pairs, p)
	}
	t.Ratio = Median(ratios)
	t.Baseline = summarizeRuns(t.Pairs, func(p Pair) RunStats { return p.Baseline })
	t.Eddy = summarizeRuns(t.Pairs, func(p Pair) RunStats { return p.Eddy })
	return t, nil
}

// summarizeRuns returns the medians of one side's runs.
func summarizeRuns(pairs []Pair, side func(Pair) RunStats) SideSummary {
	var eps, cpu, rcpu, rss []float64
	for _, p := range pairs {
		s := side(p)
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

// backlogRun pre-fills n events, starts side, and measures it from its
// process start until the output holds n entries; then stops it with
// SIGTERM and verifies the output length and that nothing is pending.
func (b *bencher) backlogRun(ctx context.Context, side Side, n int) (RunStats, error) {
	keys := b.next()
	defer func() { _ = b.clean(ctx, keys) }() // an error here shows on the next run
	r, err := b.prepare(side, keys)
	if err != nil {
		return RunStats{}, err
	}
	ev := newEvents("t"+strconv.Itoa(b.runs), uint64(b.runs))
	if err := prefill(ctx, r.prod, ev, n, func() int64 { return time.Now().UnixNano() }); err != nil {
		return RunStats{}, fmt.Errorf("pre-fill: %w", err)
	}
	redis0, err := b.redisCPU(ctx)
	if err != nil {
		return RunStats{}, err
	}
	c, err := startChild(string(side), b.o.Exe, r.args)
	if err != nil {
		return RunStats{}, err
	}
	defer c.kill()
	if err := b.waitOutputs(ctx, c, keys.output(), int64(n), stuckAfter); err != nil {
		return RunStats{}, err
	}
	took := time.Since(c.started)
	u := c.sample()
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
	if s.Outputs, s.Pending, err = b.verify(ctx, r, int64(n)); err != nil {
		return s, err
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
		s, err := b.backlogRun(ctx, side, b.o.Backlog)
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
