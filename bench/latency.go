package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/processor"
)

const (
	// paceTick is how often the latency producer sends what is due.
	paceTick = time.Millisecond
	// readerBlock is the BLOCK of the latency reader's XREAD.
	readerBlock = 100 * time.Millisecond
	// readerCount is the COUNT of the latency reader's XREAD.
	readerCount = 1000
	// readyTimeout bounds the wait for a side to pass the probes through.
	readyTimeout = 30 * time.Second
	// catchUpFixed is how long after the producer stops a fixed-rate run
	// waits for the last outputs; catchUpSearch is the max-rate search's
	// criterion, with maxRateP99.
	catchUpFixed  = 5 * time.Second
	catchUpSearch = time.Second
	maxRateP99    = 50.0 // ms
	// searchStart and searchStep: the search for the highest sustained
	// rate starts at searchStart × Eddy's median throughput and goes down
	// by searchStep a try.
	searchStart = 0.9
	searchStep  = 0.8
)

// LatencyRun is one side's run at one producer rate.
type LatencyRun struct {
	Side Side `json:"side"`
	Rate int  `json:"rate"`
	// Sent is the events produced (warm-up included); Read those read
	// back from the output before the run ended.
	Sent int `json:"sent"`
	Read int `json:"read"`
	// SentRate is Sent over the time the producer took: below Rate when
	// the bench process itself could not keep up.
	SentRate float64 `json:"sent_rate"`
	// CaughtUp says whether every event was read back within the catch-up
	// time after the producer stopped; CatchUpMs is how long after.
	CaughtUp  bool    `json:"caught_up"`
	CatchUpMs float64 `json:"catch_up_ms"`
	// Latency is over the events stamped after the warm-up that were read.
	Latency
}

// RateLatency is both sides at one rate: the medians of LatencyRuns pairs.
type RateLatency struct {
	Rate     int     `json:"rate"`
	Max      bool    `json:"max,omitempty"` // the highest rate Eddy sustained
	Baseline Latency `json:"baseline"`
	Eddy     Latency `json:"eddy"`
	// P99Ratio is the median of the pairs' Eddy p99 over baseline p99.
	P99Ratio float64 `json:"p99_ratio"`
	// BehindBaseline and BehindEddy count the runs that did not catch up.
	BehindBaseline int          `json:"behind_baseline"`
	BehindEddy     int          `json:"behind_eddy"`
	Runs           []LatencyRun `json:"runs"`
}

// SearchTry is one try of the search for the highest rate Eddy sustains.
type SearchTry struct {
	Rate     int     `json:"rate"`
	CaughtUp bool    `json:"caught_up"`
	P99      float64 `json:"p99_ms"`
	OK       bool    `json:"ok"`
}

// MaxRate is the search for the highest rate Eddy sustains: output caught
// up within catchUpSearch of the producer stopping and p99 under maxRateP99.
type MaxRate struct {
	Found bool        `json:"found"`
	Rate  int         `json:"rate"`
	Tries []SearchTry `json:"tries"`
}

// LatencyReport is the latency scenario.
type LatencyReport struct {
	Rates   []RateLatency `json:"rates"` // the fixed rates, then the max rate if found
	MaxRate *MaxRate      `json:"max_rate,omitempty"`
}

// latency runs the fixed rates, then searches for the highest rate Eddy
// sustains, starting from its median throughput, and runs both sides there.
func (b *bencher) latency(ctx context.Context, eddyThroughput float64) (*LatencyReport, error) {
	rep := &LatencyReport{}
	for _, rate := range b.o.Rates {
		rl, err := b.ratePairs(ctx, rate)
		if err != nil {
			return nil, err
		}
		rep.Rates = append(rep.Rates, rl)
	}
	if b.o.MaxRateTries == 0 {
		return rep, nil
	}
	mr := &MaxRate{}
	rep.MaxRate = mr
	rate := roundRate(searchStart * eddyThroughput)
	for range b.o.MaxRateTries {
		run, err := b.latencyRun(ctx, SideEddy, rate, b.o.SearchDuration, catchUpSearch)
		if err != nil {
			return nil, fmt.Errorf("max-rate search at %d events/s, eddy: %w", rate, err)
		}
		try := SearchTry{Rate: rate, CaughtUp: run.CaughtUp, P99: run.P99, OK: run.CaughtUp && run.P99 < maxRateP99}
		mr.Tries = append(mr.Tries, try)
		b.progress("max-rate eddy     %7d/s  caught up %-5v  p99 %8.2fms  %s", rate, run.CaughtUp, run.P99, map[bool]string{true: "sustained", false: "not sustained"}[try.OK])
		if try.OK {
			mr.Found, mr.Rate = true, rate
			break
		}
		rate = roundRate(searchStep * float64(rate))
	}
	if mr.Found {
		rl, err := b.ratePairs(ctx, mr.Rate)
		if err != nil {
			return nil, err
		}
		rl.Max = true
		rep.Rates = append(rep.Rates, rl)
	}
	return rep, nil
}

// roundRate rounds a rate to a multiple of 100 events/s, at least 100.
func roundRate(r float64) int {
	return max(100, int(math.Round(r/100))*100)
}

// ratePairs runs LatencyRuns pairs at rate, alternating which side goes first.
func (b *bencher) ratePairs(ctx context.Context, rate int) (RateLatency, error) {
	rl := RateLatency{Rate: rate}
	var ratios []float64
	var base, eddy []Latency
	for i := range b.o.LatencyRuns {
		first := SideEddy
		if i%2 == 1 {
			first = SideBaseline
		}
		var p99 [2]float64
		for _, side := range []Side{first, first.other()} {
			run, err := b.latencyRun(ctx, side, rate, b.o.Duration, catchUpFixed)
			if err != nil {
				return rl, fmt.Errorf("latency at %d events/s, run %d of %d, %s: %w", rate, i+1, b.o.LatencyRuns, side, err)
			}
			behind := ""
			if !run.CaughtUp {
				behind = fmt.Sprintf("  BEHIND: %d of %d events unread %v after the producer stopped", run.Sent-run.Read, run.Sent, catchUpFixed)
			}
			b.progress("latency  %-8s %7d/s  p50 %7.2fms  p99 %7.2fms  p999 %7.2fms  max %7.2fms  (sent %.0f/s)%s", side, rate, run.P50, run.P99, run.P999, run.Max, run.SentRate, behind)
			rl.Runs = append(rl.Runs, run)
			if side == SideEddy {
				eddy, p99[1] = append(eddy, run.Latency), run.P99
				if !run.CaughtUp {
					rl.BehindEddy++
				}
			} else {
				base, p99[0] = append(base, run.Latency), run.P99
				if !run.CaughtUp {
					rl.BehindBaseline++
				}
			}
		}
		ratios = append(ratios, ratio(p99[1], p99[0]))
	}
	rl.Baseline, rl.Eddy, rl.P99Ratio = medianLatency(base), medianLatency(eddy), Median(ratios)
	return rl, nil
}

// medianLatency is the median of each figure over runs.
func medianLatency(runs []Latency) Latency {
	pick := func(f func(Latency) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return Median(xs)
	}
	return Latency{
		Samples: int(pick(func(l Latency) float64 { return float64(l.Samples) })),
		P50:     pick(func(l Latency) float64 { return l.P50 }),
		P99:     pick(func(l Latency) float64 { return l.P99 }),
		P999:    pick(func(l Latency) float64 { return l.P999 }),
		Max:     pick(func(l Latency) float64 { return l.Max }),
	}
}

// latencyRun starts side on empty streams, waits until probe events have
// passed through every input, then produces at rate for Warmup + measure
// while a reader takes the events back from the output and records, for
// those stamped after the warm-up, the time from their stamp to being
// read. It then waits up to catchUp for the rest, stops the side and, if
// it caught up, verifies the output count and that nothing is pending.
func (b *bencher) latencyRun(ctx context.Context, side Side, rate int, measure, catchUp time.Duration) (LatencyRun, error) {
	keys := b.next()
	defer func() { _ = b.clean(ctx, keys) }()
	run := LatencyRun{Side: side, Rate: rate}
	r, err := b.prepare(side, keys)
	if err != nil {
		return run, err
	}
	c, err := startChild(string(side), b.o.Exe, b.url, r.args)
	if err != nil {
		return run, err
	}
	defer c.kill()

	ev := newEvents("l"+strconv.Itoa(b.runs), uint64(b.runs))
	probes := r.probes(ev, time.Now().UnixNano())
	if _, err := r.prod.Send(ctx, probes); err != nil {
		return run, fmt.Errorf("send probes: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	err = b.waitOutputs(rctx, c, keys.output(), int64(len(probes)), readyTimeout)
	cancel()
	if err != nil {
		return run, fmt.Errorf("waiting for %d probe event(s) to come out: %w", len(probes), err)
	}
	from, err := lastID(ctx, b.rdb, keys.output())
	if err != nil {
		return run, err
	}

	start := time.Now()
	measureFrom, stopAt := start.Add(b.o.Warmup), start.Add(b.o.Warmup+measure)
	rd := &reader{rdb: b.rdb, stream: keys.output(), from: from, measureFrom: measureFrom.UnixNano()}
	rdctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	var rg errgroup.Group
	rg.Go(func() error { return rd.Run(rdctx) })

	sent, err := pace(ctx, r.prod, ev, rate, start, stopAt)
	stopped := time.Now()
	if err == nil {
		err = rd.waitFor(ctx, c, int64(sent), stopped.Add(catchUp))
	}
	stopReader()
	if rerr := rg.Wait(); err == nil {
		err = rerr
	}
	if err != nil && !errors.Is(err, errBehind) {
		return run, err
	}
	run.Sent, run.Read, run.CaughtUp = sent, int(rd.count.Load()), err == nil
	run.SentRate = math.Round(float64(sent) / stopped.Sub(start).Seconds())
	if run.CaughtUp {
		run.CatchUpMs = ms(max(0, time.Unix(0, rd.lastRead.Load()).Sub(stopped)))
	}
	run.Latency = summarize(rd.samples)

	if err := c.stop(ctx, stopTimeout, nil); err != nil {
		return run, err
	}
	if run.CaughtUp {
		if _, _, err := b.verify(ctx, r, int64(len(probes)+sent)); err != nil {
			return run, err
		}
	}
	return run, nil
}

// lastID returns the id of stream's last entry.
func lastID(ctx context.Context, rdb redis.UniversalClient, stream string) (string, error) {
	msgs, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	switch {
	case err != nil:
		return "", fmt.Errorf("last entry of %s: %w", stream, err)
	case len(msgs) == 0:
		return "", fmt.Errorf("last entry of %s: the stream is empty", stream)
	}
	return msgs[0].ID, nil
}

// due returns how many events a producer at rate events/s has to have sent
// elapsed after it started. The schedule is by absolute time: a late tick
// sends more, so the rate does not drift with the ticker.
func due(rate int, elapsed time.Duration) int64 {
	if elapsed <= 0 {
		return 0
	}
	sec, frac := int64(elapsed/time.Second), int64(elapsed%time.Second)
	return int64(rate)*sec + int64(rate)*frac/int64(time.Second)
}

// pace sends events through prod at rate from start until stop: every
// paceTick, what is due by then, in one pipelined round trip, each event
// stamped with the time it is sent. It returns how many it sent.
func pace(ctx context.Context, prod *processor.Producer, ev *events, rate int, start, stop time.Time) (int, error) {
	total := due(rate, stop.Sub(start))
	tick := time.NewTicker(paceTick)
	defer tick.Stop()
	var recs []processor.Record
	sent := int64(0)
	for {
		if n := min(due(rate, time.Since(start)), total) - sent; n > 0 {
			recs = recs[:0]
			for range n {
				recs = append(recs, ev.next(time.Now().UnixNano()))
			}
			if _, err := prod.Send(ctx, recs); err != nil {
				return int(sent), err
			}
			sent += n
		}
		if sent >= total {
			return int(sent), nil
		}
		select {
		case <-ctx.Done():
			return int(sent), ctx.Err()
		case <-tick.C:
		}
	}
}

// errBehind reports a side that did not output every event in time.
var errBehind = errors.New("output behind the producer")

// reader reads a side's output from an id on and records, for events
// stamped at or after measureFrom, the time from stamp to being read.
type reader struct {
	rdb         redis.UniversalClient
	stream      string
	from        string
	measureFrom int64 // unix ns

	count    atomic.Int64 // entries read
	lastRead atomic.Int64 // unix ns of the last read that returned entries

	mu      sync.Mutex // guards samples until Run returns
	samples []time.Duration
}

// Run reads until ctx is done (XREAD COUNT 1000 BLOCK 100ms, so it returns
// within 100ms of that).
func (rd *reader) Run(ctx context.Context) error {
	last := rd.from
	for ctx.Err() == nil {
		res, err := rd.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{rd.stream, last}, Count: readerCount, Block: readerBlock}).Result()
		now := time.Now().UnixNano()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && ctx.Err() != nil:
			return nil //nolint:nilerr // a read cut short by the stop is how the loop ends
		case err != nil:
			return fmt.Errorf("read %s: %w", rd.stream, err)
		}
		rd.mu.Lock()
		for _, s := range res {
			for _, m := range s.Messages {
				data, _ := m.Values[payloadField].(string)
				ts, err := stampOf(data)
				if err != nil {
					rd.mu.Unlock()
					return fmt.Errorf("output entry %s of %s: %w", m.ID, rd.stream, err)
				}
				if ts >= rd.measureFrom {
					rd.samples = append(rd.samples, time.Duration(now-ts))
				}
				last = m.ID
			}
			rd.count.Add(int64(len(s.Messages)))
		}
		rd.mu.Unlock()
		rd.lastRead.Store(now)
	}
	return nil
}

// waitFor polls until the reader has read want entries (nil), deadline
// passes (errBehind), or the side exits.
func (rd *reader) waitFor(ctx context.Context, c *child, want int64, deadline time.Time) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for rd.count.Load() < want {
		if time.Now().After(deadline) {
			return errBehind
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.failure()
		case <-tick.C:
		}
	}
	return nil
}

// stampOf returns the "ts" (unix ns) of an event's JSON: by a scan for
// `"ts":` (what both sides write), else by decoding it.
func stampOf(data string) (int64, error) {
	if _, rest, ok := strings.Cut(data, `"ts":`); ok {
		end := strings.IndexAny(rest, ",}")
		if end > 0 {
			if ts, err := strconv.ParseInt(strings.TrimSpace(rest[:end]), 10, 64); err == nil {
				return ts, nil
			}
		}
	}
	var ev struct {
		TS json.Number `json:"ts"`
	}
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return 0, fmt.Errorf("field %q: not a JSON event: %w", payloadField, err)
	}
	if ts, err := ev.TS.Int64(); err == nil {
		return ts, nil
	}
	f, err := ev.TS.Float64()
	if err != nil {
		return 0, fmt.Errorf("field %q: ts %q: not a number", payloadField, ev.TS)
	}
	return int64(f), nil
}
