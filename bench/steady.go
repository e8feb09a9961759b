package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/dedupe"
	"github.com/eddy-streams/eddy/processor"
)

// dedupeWindow is the dedupe window of Eddy's pipeline in the bench; its
// buckets are the engine's default (Window / processor.DefaultDedupeBuckets).
const dedupeWindow = time.Hour

// premarkBatch is ids per SADD of the pre-marking.
const premarkBatch = 1000

// premark brings a run to the dedupe steady state before its side starts:
// a pipeline that has run for a whole window has every bucket set of it,
// so each commit looks every id up in all of them (a young one skips the
// sets not made yet). For Eddy it adds total ids, none of them an id of
// the run's events, spread evenly over every set the commit will look in,
// of every partition, each set with the expiry the engine gives it. The
// baseline keeps one set without expiry: to be fair to it, that set gets
// the same total number of ids, so that both sides' sets are as large
// together, and its SADDs land in a set of that size.
func (b *bencher) premark(ctx context.Context, r *sideRun, total int) error {
	type bucket struct {
		key      string
		expireAt time.Time // zero: no expiry
	}
	var buckets []bucket
	if r.side.isEddy() {
		w := dedupe.Window{Window: dedupeWindow, Bucket: dedupeWindow / processor.DefaultDedupeBuckets}
		now := time.Now()
		for p := range b.o.Consumers {
			prefix := processor.DedupePrefix(r.names.input(), p, b.o.Consumers, r.group)
			// Check names the sets newest first, one bucket apart.
			for i := range w.Check(prefix, now) {
				key, exp := w.Mark(prefix, now.Add(-time.Duration(i)*w.Bucket))
				buckets = append(buckets, bucket{key, exp})
			}
		}
	} else {
		buckets = []bucket{{key: r.names.seen()}}
	}
	per := (total + len(buckets) - 1) / len(buckets)
	n := 0
	for bi, bk := range buckets {
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for done := 0; done < per && n < total; {
				k := min(premarkBatch, per-done, total-n)
				ids := make([]any, k)
				for j := range ids {
					ids[j] = "pre-" + strconv.Itoa(bi) + "-" + strconv.Itoa(done+j)
				}
				p.SAdd(ctx, bk.key, ids...)
				done, n = done+k, n+k
			}
			if !bk.expireAt.IsZero() {
				p.PExpireAt(ctx, bk.key, bk.expireAt)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("mark ids in %s: %w", bk.key, err)
		}
	}
	return nil
}

// verifyCounts checks, after a stateful side has exited, that its
// counters over every key of every partition add up to want: each event
// counted exactly once.
func (b *bencher) verifyCounts(ctx context.Context, r *sideRun, want int64) error {
	var keys []string
	for p := range b.o.Consumers {
		prefix := processor.StateKey(r.names.input(), p, b.o.Consumers, r.group, stateName, "")
		var cursor uint64
		for {
			ks, next, err := b.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				return fmt.Errorf("scan %s*: %w", prefix, err)
			}
			keys = append(keys, ks...)
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	cmds, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.HGet(ctx, k, stateField)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %d counters: %w", len(keys), err)
	}
	var sum int64
	for _, c := range cmds {
		v, err := strconv.ParseInt(strings.TrimSpace(c.(*redis.StringCmd).Val()), 10, 64)
		if err != nil {
			return fmt.Errorf("counter %v: %w", c.Args()[1], err)
		}
		sum += v
	}
	if sum != want {
		return fmt.Errorf("the %s counters of %d keys add up to %d, want %d (each event counted once)", stateName, len(keys), sum, want)
	}
	return nil
}
