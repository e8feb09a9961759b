// Package pipetest runs a config's pipelines in-process, on an embedded
// in-memory Redis and a manual clock, for tests of pipelines: send events,
// move the clock, wait until everything is handled, and read what came out.
// `eddy test` is built on it, and so are the tests of the analytics steps.
//
// The engine runs as in production (the same processor, commit script,
// state and timers); only time is the test's: the clock moves when
// Advance moves it, and processing-time timers, backoff and the idle
// watermark follow it. Event time comes from the events, as always.
//
// It owns the embedded Redis it starts; it does not read files, start
// servers or listen on ports.
package pipetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// DefaultStart is where the clock starts unless Options.Start says.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultSettleTimeout bounds each wait of Settle in wall time.
const DefaultSettleTimeout = 30 * time.Second

// Options configures a Harness. The zero value is usable.
type Options struct {
	// Start is the clock's time at Start. Default DefaultStart.
	Start time.Time
	// Logger logs the engine; nil means none.
	Logger *zap.Logger
	// SettleTimeout bounds, in wall time, how long Settle waits for the
	// engine. Default DefaultSettleTimeout.
	SettleTimeout time.Duration
	// Redis, if set, is used instead of a new embedded Redis (to restart a
	// harness on the same data); Close does not close it.
	Redis *miniredis.Miniredis
}

// Entry is one stream entry.
type Entry struct {
	ID     string
	Fields map[string]string
}

// Harness runs a file's pipelines. Its methods are not safe for concurrent
// use.
type Harness struct {
	file    *pipelines.File
	opts    Options
	clock   *processor.ManualClock
	mr      *miniredis.Miniredis
	ownMR   bool
	rdb     *redis.Client
	procs   map[string]*processor.Processor
	ins     map[string]*processor.Inspector
	tick    time.Duration
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	runErrs []error
}

// Start runs every pipeline of f and returns once they have started. Call
// Close when done.
func Start(f *pipelines.File, opts Options) (*Harness, error) {
	if opts.Start.IsZero() {
		opts.Start = DefaultStart
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = DefaultSettleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	h := &Harness{file: f, opts: opts, clock: processor.NewManualClock(opts.Start), mr: opts.Redis,
		procs: map[string]*processor.Processor{}, ins: map[string]*processor.Inspector{}}
	if h.mr == nil {
		h.mr = miniredis.NewMiniRedis()
		if err := h.mr.Start(); err != nil {
			return nil, fmt.Errorf("pipetest: start embedded redis: %w", err)
		}
		h.ownMR = true
	}
	// The embedded Redis keeps the test's time, so that what the engine
	// expires (dedupe marks, keyed state with a ttl) lapses as the clock
	// moves, not by the wall clock.
	h.mr.SetTime(opts.Start)
	h.mr.ClockTTL(true)
	h.rdb = redis.NewClient(&redis.Options{Addr: h.mr.Addr(), ContextTimeoutEnabled: true})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for _, p := range f.Pipelines {
		o := p.Options()
		o.Consumer = "pipetest"
		o.Clock = h.clock
		o.Logger = opts.Logger.With(zap.String("pipeline", p.Name))
		// The engine's own waits for Redis stay short in wall time; its
		// pool timing is the clock's and never lapses while the test runs.
		o.Block = 5 * time.Millisecond
		o.Heartbeat, o.SessionTimeout = 24*time.Hour, 72*time.Hour
		proc, err := processor.New(h.rdb, o)
		if err != nil {
			_ = h.Close() // what failed is the error to report
			return nil, fmt.Errorf("pipetest: pipeline %s: %w", p.Name, err)
		}
		in, err := processor.NewInspector(h.rdb, o)
		if err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("pipetest: pipeline %s: %w", p.Name, err)
		}
		h.procs[p.Name], h.ins[p.Name] = proc, in
		tick := in.Options().TimerTick
		if h.tick == 0 || tick < h.tick {
			h.tick = tick
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := proc.Run(ctx); err != nil {
				h.mu.Lock()
				h.runErrs = append(h.runErrs, fmt.Errorf("pipeline %s: %w", p.Name, err))
				h.mu.Unlock()
			}
		}()
	}
	return h, nil
}

// Close stops the pipelines and the embedded Redis (unless it was given
// in Options.Redis), and returns any error a pipeline stopped with.
func (h *Harness) Close() error {
	if h.cancel != nil {
		h.cancel()
		// A stop waits on the clock for nothing: the shutdown bounds are
		// wall time.
		h.wg.Wait()
	}
	if h.rdb != nil {
		_ = h.rdb.Close()
	}
	if h.ownMR {
		h.mr.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return errors.Join(h.runErrs...)
}

// Now is the clock's time.
func (h *Harness) Now() time.Time { return h.clock.Now() }

// Clock is the harness's clock.
func (h *Harness) Clock() *processor.ManualClock { return h.clock }

// Client is a client of the embedded Redis.
func (h *Harness) Client() redis.UniversalClient { return h.rdb }

// Redis is the embedded Redis, to start another harness on the same data.
func (h *Harness) Redis() *miniredis.Miniredis { return h.mr }

// Send appends one event to the pipeline's input, to the partition of its
// key as a producer would. payload is the event as a JSON object; for a
// pipeline without input.payload its fields become the entry's fields
// (values as strings). An event whose key cannot be read goes to
// partition 0, where the engine dead-letters it. Send does not wait: call
// Settle (or Advance).
func (h *Harness) Send(pipeline, payload string) error {
	p := h.file.Pipeline(pipeline)
	if p == nil {
		return fmt.Errorf("pipetest: no pipeline %q in %s", pipeline, h.file.Name)
	}
	fields, err := entryFields(p, payload)
	if err != nil {
		return fmt.Errorf("pipetest: send to %s: %w", pipeline, err)
	}
	m := &processor.Message{Fields: fields}
	_ = p.Decoder().Decode(m) // a bad event still goes in, to be dead-lettered
	prod := processor.NewProducer(h.rdb, p.Input.Stream, p.Input.Partitions, 0)
	_, err = prod.Send(context.Background(), []processor.Record{{Key: m.Key, Fields: fields}})
	return err
}

// entryFields are the stream fields of an event.
func entryFields(p *pipelines.Pipeline, payload string) ([]string, error) {
	if p.Input.Payload != "" {
		return []string{p.Input.Payload, payload}, nil
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(payload), &obj); err != nil {
		return nil, fmt.Errorf("the pipeline reads an entry's own fields, so the event must be a JSON object: %w", err)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fields := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		v, ok := obj[k].(string)
		if !ok {
			b, _ := json.Marshal(obj[k])
			v = string(b)
		}
		fields = append(fields, k, v)
	}
	return fields, nil
}

// Advance moves the clock forward by d and after each move waits until the
// engine has handled what it made due (timers, retries, the idle
// watermark). It moves one timer tick at a time, or at once to the next
// time a timer can fall due when that is further off, so that timers fire
// in the order they are due.
func (h *Harness) Advance(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("pipetest: advance by %s: the clock does not go back", d)
	}
	if err := h.Settle(); err != nil {
		return err
	}
	for d > 0 {
		step := h.tick
		next, ok, err := h.nextDue()
		if err != nil {
			return err
		}
		if gap := next.Sub(h.clock.Now()); !ok || gap > step {
			step = max(gap, step)
			if !ok {
				step = d
			}
		}
		step = min(step, d)
		h.clock.Advance(step)
		h.mr.SetTime(h.clock.Now())
		d -= step
		if err := h.Settle(); err != nil {
			return err
		}
	}
	return nil
}

// nextDue is the earliest clock time at which a timer of any pipeline can
// fall due: a processing-time timer's due time, or an event-time timer's
// plus the pipeline's allowed lateness (when the idle watermark reaches
// it, if no event moves the watermark first).
func (h *Harness) nextDue() (time.Time, bool, error) {
	var next time.Time
	for name, in := range h.ins {
		ts, err := in.Timers(context.Background())
		if err != nil {
			return time.Time{}, false, fmt.Errorf("pipetest: pipeline %s: %w", name, err)
		}
		late := in.Options().AllowedLateness
		for _, t := range ts {
			for _, at := range []time.Time{t.NextProcessing, t.NextEvent.Add(late)} {
				if at.Unix() > 0 && (next.IsZero() || at.Before(next)) {
					next = at
				}
			}
		}
	}
	return next, !next.IsZero(), nil
}

// Settle waits until every pipeline has read and committed everything
// sent, has nothing in flight, and has no timer due by the clock or the
// watermark. It fails after Options.SettleTimeout of wall time, naming
// what was still in hand, or when a pipeline has stopped with an error.
func (h *Harness) Settle() error {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.SettleTimeout)
	defer cancel()
	var busy string
	quiet := 0 // consecutive looks that found nothing in hand
	for {
		h.mu.Lock()
		err := errors.Join(h.runErrs...)
		h.mu.Unlock()
		if err != nil {
			return fmt.Errorf("pipetest: %w", err)
		}
		b, err := h.busy(ctx)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("pipetest: %w", err)
		}
		// Twice in a row, a moment apart: a firing read just before the
		// first look is in flight by the second.
		if busy = b; busy == "" {
			if quiet++; quiet == 2 {
				return nil
			}
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pipetest: not settled after %s: %s", h.opts.SettleTimeout, busy)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// busy says what a pipeline still has in hand, or "".
func (h *Harness) busy(ctx context.Context) (string, error) {
	for _, p := range h.file.Pipelines {
		stats, err := h.ins[p.Name].Stats(ctx)
		if err != nil {
			return p.Name + ": stats", err
		}
		for _, s := range stats {
			if s.Length > 0 && (!s.GroupExists || s.Lag != 0 || s.Pending > 0) {
				return fmt.Sprintf("pipeline %s partition %d: lag %d, pending %d", p.Name, s.Partition, s.Lag, s.Pending), nil
			}
		}
		quiet, err := h.procs[p.Name].Quiet(ctx)
		if err != nil {
			return p.Name + ": timers", err
		}
		if !quiet {
			return fmt.Sprintf("pipeline %s: entries or timers in hand", p.Name), nil
		}
	}
	return "", nil
}

// Entries reads a whole stream, oldest first; none when it does not exist.
func (h *Harness) Entries(stream string) ([]Entry, error) {
	msgs, err := h.rdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("pipetest: read %s: %w", stream, err)
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		fields := make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			fields[k] = fmt.Sprint(v)
		}
		out[i] = Entry{ID: m.ID, Fields: fields}
	}
	return out, nil
}

// State reads the keyed state name of key in pipeline (a state step's or
// an analytics step's); empty when it has none.
func (h *Harness) State(pipeline, name, key string) (map[string]string, error) {
	p := h.file.Pipeline(pipeline)
	if p == nil {
		return nil, fmt.Errorf("pipetest: no pipeline %q in %s", pipeline, h.file.Name)
	}
	o := h.ins[pipeline].Options()
	part := processor.PartitionOf(key, o.Partitions)
	v, err := h.rdb.HGetAll(context.Background(), processor.StateKey(o.Stream, part, o.Partitions, o.Group, name, key)).Result()
	if err != nil {
		return nil, fmt.Errorf("pipetest: state %s of %q: %w", name, key, err)
	}
	return v, nil
}

// DeadLetters reads the pipeline's dead-letter stream.
func (h *Harness) DeadLetters(pipeline string) ([]Entry, error) {
	in, ok := h.ins[pipeline]
	if !ok {
		return nil, fmt.Errorf("pipetest: no pipeline %q in %s", pipeline, h.file.Name)
	}
	return h.Entries(in.Options().DeadLetterStream)
}

// Streams lists the streams in Redis other than the engine's own keys,
// sorted: the pipelines' inputs and what they wrote.
func (h *Harness) Streams() ([]string, error) {
	keys, err := h.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if strings.Contains(k, ":eddy:") {
			continue
		}
		if t, _ := h.rdb.Type(context.Background(), k).Result(); t == "stream" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}
