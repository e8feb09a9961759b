package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/processor"
)

// observers sends every observation to each of its members.
type observers []processor.Observer

func (os observers) Committed(c processor.Commit) {
	for _, o := range os {
		o.Committed(c)
	}
}

func (os observers) Retried(pipeline string, partition int, err error) {
	for _, o := range os {
		o.Retried(pipeline, partition, err)
	}
}

func (os observers) Handled(pipeline string, d time.Duration) {
	for _, o := range os {
		o.Handled(pipeline, d)
	}
}

func (os observers) Owned(pipeline string, partition int, owned bool) {
	for _, o := range os {
		if oo, ok := o.(processor.OwnershipObserver); ok {
			oo.Owned(pipeline, partition, owned)
		}
	}
}

func (os observers) LeaseLost(pipeline string, partition int) {
	for _, o := range os {
		if oo, ok := o.(processor.OwnershipObserver); ok {
			oo.LeaseLost(pipeline, partition)
		}
	}
}

func (os observers) Trimmed(r processor.TrimReport) {
	for _, o := range os {
		if ro, ok := o.(processor.RetentionObserver); ok {
			ro.Trimmed(r)
		}
	}
}

// tally counts what every pipeline of this process did, for the summary
// line: entries, and the analytics steps' results by kind (window results
// closed, sessions, funnel results, alerts raised) from the commits' step
// counts ("<step>/emitted/<kind>", pipelines.CountName).
type tally struct {
	processed, duplicates, deadLetters, retries atomic.Int64
	windows, sessions, funnels, alerts          atomic.Int64
}

func (t *tally) Committed(c processor.Commit) {
	t.processed.Add(int64(c.Processed))
	t.duplicates.Add(int64(c.Duplicates))
	n := 0
	for _, d := range c.DeadLetters {
		n += d
	}
	t.deadLetters.Add(int64(n))
	for name, n := range c.Counts {
		if c := t.resultCounter(name); c != nil {
			c.Add(int64(n))
		}
	}
}

// resultCounter is the counter of a step count named
// "<step>/emitted/<kind>", nil for any other count or kind.
func (t *tally) resultCounter(name string) *atomic.Int64 {
	rest, kind, ok := cutLast(name)
	if !ok {
		return nil
	}
	if _, what, ok := cutLast(rest); !ok || what != "emitted" {
		return nil
	}
	switch kind {
	case "window":
		return &t.windows
	case "session":
		return &t.sessions
	case "funnel":
		return &t.funnels
	case "alert":
		return &t.alerts
	}
	return nil
}

// cutLast cuts s around its last "/".
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func (t *tally) Retried(string, int, error)    { t.retries.Add(1) }
func (t *tally) Handled(string, time.Duration) {}

// reporter samples lag and pending into the metrics every 2s and logs a
// one-line summary every 5s.
type reporter struct {
	procs    []*liveProc
	m        *metrics.Metrics
	t        *tally
	log      *zap.Logger
	inMemory bool

	lastAt        time.Time
	lastProcessed int64
	lag, pending  int64
	open          int64 // the analytics steps' open windows, sessions, funnels and alerts
}

func (r *reporter) Run(ctx context.Context) error {
	r.lastAt = time.Now()
	sample := time.NewTicker(2 * time.Second)
	defer sample.Stop()
	sum := time.NewTicker(5 * time.Second)
	defer sum.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sample.C:
			r.sample(ctx)
		case <-sum.C:
			r.summary(ctx, "summary")
		}
	}
}

func (r *reporter) sample(ctx context.Context) {
	r.sampleHealth(ctx)
	var lag, pending, open int64
	for _, p := range r.procs {
		stats, err := p.Stats(ctx)
		if err != nil {
			continue
		}
		name := p.Options().Pipeline
		if gauges, err := p.Gauges(ctx); err == nil {
			for part, g := range gauges {
				r.m.SetStepGauges(name, part, g)
				open += openGauges(g)
			}
		}
		for _, s := range stats {
			r.m.SetPartitionStats(name, s.Partition, s.Lag, s.Pending, s.OldestPending)
			lag += max(s.Lag, 0)
			pending += s.Pending
		}
	}
	r.lag, r.pending, r.open = lag, pending, open
}

// openGauges sums a partition's "<step>/open" gauges (pipelines.GaugeOpen).
func openGauges(g map[string]int64) int64 {
	var n int64
	for name, v := range g {
		if strings.HasSuffix(name, "/open") {
			n += v
		}
	}
	return n
}

func (r *reporter) summary(ctx context.Context, msg string) {
	r.sample(ctx)
	now := time.Now()
	processed := r.t.processed.Load()
	rate := float64(processed-r.lastProcessed) / now.Sub(r.lastAt).Seconds()
	r.lastAt, r.lastProcessed = now, processed
	fields := []zap.Field{
		zap.Int64("events_per_sec", int64(rate+0.5)),
		zap.Int64("processed", processed),
		zap.Int64("duplicates", r.t.duplicates.Load()),
		zap.Int64("dead_letters", r.t.deadLetters.Load()),
		zap.Int64("retries", r.t.retries.Load()),
		zap.Int64("lag", r.lag),
		zap.Int64("pending", r.pending),
		zap.Int64("windows", r.t.windows.Load()),
		zap.Int64("sessions", r.t.sessions.Load()),
		zap.Int64("funnels", r.t.funnels.Load()),
		zap.Int64("alerts", r.t.alerts.Load()),
		zap.Int64("open", r.open),
	}
	if r.inMemory {
		fields = append(fields, zap.Bool("in_memory_only", true))
	}
	r.log.Info(msg, fields...)
}
