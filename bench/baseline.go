package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// Baseline is the consumer "you could write in an afternoon" that eddy
// bench measures the engine against: Consumers goroutines, each one
// consumer of Group on Stream, each looping
//
//	XREADGROUP COUNT Batch BLOCK 100ms >
//	for each entry: decode the JSON in field "data" for its event_id
//	one pipeline: SADD Seen event_id and XADD Output * <the entry's fields>
//	              per entry, then one XACK of the batch
//
// It does the same Redis work per event as an Eddy pipeline with dedupe and
// one output, without what makes the engine's version safe: the SADD's
// answer is not used (duplicates are output again), the pipeline is not
// atomic (a crash between its commands can output an entry and not ack it),
// and there is no ordering per key across consumers, no retry and no
// dead letter.
type Baseline struct {
	// Client is the Redis client; Run does not close it. Its pool needs a
	// connection per consumer on top of the others.
	Client redis.UniversalClient
	// Stream is the input stream; Group its consumer group, created at the
	// stream's start ("0", MKSTREAM) if it does not exist.
	Stream, Group string
	// Output is the stream each entry is copied to; Seen the set of event
	// ids.
	Output, Seen string
	// MaxLen caps Output with MAXLEN ~ (as the engine's output step does);
	// 0 means no cap.
	MaxLen int64
	// Consumers is how many consumers read in parallel; default 1.
	Consumers int
	// Batch is the XREADGROUP COUNT; default 256.
	Batch int
	// Name prefixes the consumer names "<Name>-<i>"; default "baseline".
	Name string
}

// baselineBlock is the XREADGROUP BLOCK time of the baseline.
const baselineBlock = 100 * time.Millisecond

// Run consumes until ctx is done. A batch that was read is always finished
// (output and acked) before Run returns; there is no harder stop, since a
// batch is one round trip. Run returns the first Redis or decoding error
// of any consumer, after stopping the others.
func (b Baseline) Run(ctx context.Context) error {
	if b.Consumers < 1 {
		b.Consumers = 1
	}
	if b.Batch < 1 {
		b.Batch = 256
	}
	if b.Name == "" {
		b.Name = "baseline"
	}
	err := b.Client.XGroupCreateMkStream(ctx, b.Stream, b.Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("baseline: create group %s on %s: %w", b.Group, b.Stream, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := range b.Consumers {
		consumer := b.Name + "-" + strconv.Itoa(i+1)
		g.Go(func() error { return b.consume(gctx, consumer) })
	}
	return g.Wait()
}

// consume is one consumer's loop.
func (b Baseline) consume(ctx context.Context, consumer string) error {
	for ctx.Err() == nil {
		res, err := b.Client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: b.Group, Consumer: consumer, Streams: []string{b.Stream, ">"},
			Count: int64(b.Batch), Block: baselineBlock,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // nothing new within the block time
		case err != nil && ctx.Err() != nil:
			return nil //nolint:nilerr // a read cut short by the stop is how the loop ends
		case err != nil:
			return fmt.Errorf("baseline %s: read %s: %w", consumer, b.Stream, err)
		}
		for _, s := range res {
			// Finish what was read even when ctx is done meanwhile.
			if err := b.handle(context.WithoutCancel(ctx), s.Messages); err != nil {
				return fmt.Errorf("baseline %s: %w", consumer, err)
			}
		}
	}
	return nil
}

// handle marks, outputs and acks one batch in one pipelined round trip.
func (b Baseline) handle(ctx context.Context, msgs []redis.XMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	pipe := b.Client.Pipeline()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		data, _ := m.Values[payloadField].(string)
		var ev struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return fmt.Errorf("entry %s of %s: field %q: no event_id: %w", m.ID, b.Stream, payloadField, err)
		}
		if ev.EventID == "" {
			return fmt.Errorf("entry %s of %s: field %q: no event_id", m.ID, b.Stream, payloadField)
		}
		pipe.SAdd(ctx, b.Seen, ev.EventID)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.Output, MaxLen: b.MaxLen, Approx: b.MaxLen > 0, Values: m.Values})
		ids[i] = m.ID
	}
	pipe.XAck(ctx, b.Stream, b.Group, ids...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("commit %d entries of %s: %w", len(msgs), b.Stream, err)
	}
	return nil
}
