package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Event is one generated event on its way to a Sink.
type Event struct {
	// Key is the user or device the event belongs to, "" for a malformed
	// event. A Sink for a partitioned pipeline routes on it.
	Key string
	// Data is the event itself; see Generator.Next.
	Data []byte
}

// Sink receives the events a Feeder generates.
type Sink interface {
	// Send delivers one batch, in order. It may keep batch and its events:
	// the Feeder does not reuse them. It should return promptly once ctx is
	// done; an error stops the Feeder, except when ctx is done.
	Send(ctx context.Context, batch []Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, batch []Event) error

// Send calls f(ctx, batch).
func (f SinkFunc) Send(ctx context.Context, batch []Event) error { return f(ctx, batch) }

var _ Sink = SinkFunc(nil)

// DefaultInterval is the Feeder's default tick.
const DefaultInterval = 10 * time.Millisecond

// Feeder takes events from a Generator and sends them to a Sink at a target
// rate, one batch per tick.
type Feeder struct {
	// Generator makes the events. Required.
	Generator Generator
	// Sink receives them. Required.
	Sink Sink
	// Rate is the target rate in events per second. Required, above 0.
	Rate float64
	// Interval is the time between batches. Default DefaultInterval.
	Interval time.Duration
	// Limit stops the Feeder after this many events; 0 means no limit.
	Limit int64
	// Duration stops the Feeder once this long has passed since Run
	// started, after the batch in progress is sent; 0 means no limit.
	Duration time.Duration
}

// Run sends batches until ctx is done, Limit events have been sent or
// Duration has passed, and returns nil then. It returns an error if the Feeder is misconfigured or a
// Send fails while ctx is not done.
//
// Each tick sends the events that the rate allows for the time since the
// last one. If Send is slower than the rate, the Feeder falls behind by at
// most a few ticks' worth and then keeps the rate from there: it does not
// burst to make up for lost time.
func (f *Feeder) Run(ctx context.Context) error {
	if err := f.validate(); err != nil {
		return err
	}
	interval := f.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	// At most this many events in one batch, and so the largest burst.
	maxBatch := math.Max(1, math.Ceil(4*f.Rate*interval.Seconds()))

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var (
		sent   int64
		credit float64 // events the rate allows but not yet sent
		last   = time.Now()
		start  = last
	)
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return nil
		case now = <-ticker.C:
		}
		if ctx.Err() != nil { // both were ready and select chose the tick
			return nil
		}
		if f.Duration > 0 && now.Sub(start) >= f.Duration {
			return nil
		}
		credit = math.Min(maxBatch, credit+f.Rate*now.Sub(last).Seconds())
		last = now
		n := int64(credit)
		if f.Limit > 0 {
			n = min(n, f.Limit-sent)
		}
		if n <= 0 {
			continue
		}
		credit -= float64(n)
		batch := make([]Event, n)
		for i := range batch {
			batch[i].Data, batch[i].Key = f.Generator.Next()
		}
		if err := f.Sink.Send(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("simulate: a batch of %d events: %w", n, err)
		}
		sent += n
		if f.Limit > 0 && sent >= f.Limit {
			return nil
		}
	}
}

func (f *Feeder) validate() error {
	var errs []error
	if f.Generator == nil {
		errs = append(errs, errors.New("simulate: Feeder.Generator is required"))
	}
	if f.Sink == nil {
		errs = append(errs, errors.New("simulate: Feeder.Sink is required"))
	}
	if !(f.Rate > 0) || math.IsInf(f.Rate, 1) { // written so that NaN fails too
		errs = append(errs, fmt.Errorf("simulate: Feeder.Rate %v: must be a number of events per second above 0", f.Rate))
	}
	if f.Limit < 0 {
		errs = append(errs, fmt.Errorf("simulate: Feeder.Limit %d: must be 0 (no limit) or more", f.Limit))
	}
	if f.Duration < 0 {
		errs = append(errs, fmt.Errorf("simulate: Feeder.Duration %v: must be 0 (no limit) or more", f.Duration))
	}
	return errors.Join(errs...)
}
