// Package dedupe owns Eddy's dedupe store: event ids kept in time-bucketed
// Redis sets that expire after a window. It decides which sets an id is
// looked up in and marked in, and answers "seen before?" for a batch in one
// round trip.
//
// It does not mark ids itself on the engine's path: the processor's commit
// script adds the marks in the same atomic step as the outputs and the XACK,
// using the keys and expiry that Window.Mark returns. Mark here is for tools
// and tests that need to mark outside a commit.
//
// Delivery guarantees: an id marked at time t is remembered at least Window
// and at most Window + Bucket. Ids are scoped to the key prefix the caller
// gives (the engine uses one prefix per partition and consumer group).
//
// Cost: an id is looked up in Window/Bucket + 1 sets (Check), every one of
// them once the window has run its length, while the sets themselves hold
// between Window and Window + Bucket of ids. Wider buckets make each
// look-up cheaper and keep ids longer: in the engine's commit script, 3
// sets (Bucket = Window/2) instead of 9 (Window/8) took about a seventh
// off its Redis CPU per entry (BenchmarkCommitScript in processor).
// A set's name holds its bucket's index, not its width: changing Bucket
// for a running pipeline would forget, for one window, the ids marked
// before, unless the former width is given as Former: its sets are then
// looked up too until they expire.
package dedupe

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Window describes the bucketing. The zero Window disables dedupe.
type Window struct {
	// Window is how long an id is remembered.
	Window time.Duration
	// Bucket is the time span one set covers. Default Window / 8.
	Bucket time.Duration
	// Former is a bucket width used before (by an earlier version or
	// config) whose sets are looked up too, so that a change of width
	// forgets no id: they are checked until they expire, a window after
	// the change, and after that each costs one EXISTS per look-up.
	// 0, or equal to Bucket: none.
	Former time.Duration
}

// Enabled reports whether the window dedupes at all.
func (w Window) Enabled() bool { return w.Window > 0 }

func (w Window) bucketMs() int64 {
	b := w.Bucket
	if b <= 0 {
		b = w.Window / 8
	}
	return widthMs(b)
}

func widthMs(b time.Duration) int64 {
	return max(b, time.Millisecond).Milliseconds()
}

// bucketKey names the set of bucket index i under prefix.
func bucketKey(prefix string, i int64) string {
	return prefix + ":" + strconv.FormatInt(i, 10)
}

// Check returns the keys of every set that may hold an id marked within
// the window before now, newest first, then those of the Former width.
func (w Window) Check(prefix string, now time.Time) []string {
	if !w.Enabled() {
		return nil
	}
	b := w.bucketMs()
	keys := w.span(nil, prefix, now, b)
	if w.Former > 0 {
		if f := widthMs(w.Former); f != b {
			keys = w.span(keys, prefix, now, f)
		}
	}
	return keys
}

// span appends to keys the sets of width b ms that cover the window
// before now, newest first.
func (w Window) span(keys []string, prefix string, now time.Time, b int64) []string {
	ms := now.UnixMilli()
	last := ms / b
	first := (ms - w.Window.Milliseconds()) / b
	for i := last; i >= first; i-- {
		keys = append(keys, bucketKey(prefix, i))
	}
	return keys
}

// Mark returns the set to add an id marked at now to, and when that set
// expires: the end of its bucket plus the window.
func (w Window) Mark(prefix string, now time.Time) (key string, expireAt time.Time) {
	b := w.bucketMs()
	i := now.UnixMilli() / b
	return bucketKey(prefix, i), time.UnixMilli((i+1)*b + w.Window.Milliseconds())
}

// seenScript looks ids up in the sets of a window, skipping sets that do
// not exist. One script instead of a pipeline of SMISMEMBER per set: Redis
// parses the ids once, and sets not created yet (all but one in a young
// window) cost nothing.
//
//	KEYS    the sets to look up in
//	ARGV    the ids
//
// Returns a string with one character per id: "1" seen, "0" not.
var seenScript = redis.NewScript(`
local n = #ARGV
local hit = {}
for b = 1, #KEYS do
  if redis.call('EXISTS', KEYS[b]) == 1 then
    for s = 1, n, 4000 do
      local r = redis.call('SMISMEMBER', KEYS[b], unpack(ARGV, s, math.min(s + 3999, n)))
      for j = 1, #r do if r[j] == 1 then hit[s + j - 1] = true end end
    end
  end
end
local out = {}
for i = 1, n do if hit[i] then out[i] = '1' else out[i] = '0' end end
return table.concat(out)
`)

// Seen reports, for each id, whether it is in any of the sets Check names.
// Empty ids are never seen. It costs one round trip (seenScript).
func (w Window) Seen(ctx context.Context, c redis.Scripter, prefix string, now time.Time, ids []string) ([]bool, error) {
	seen := make([]bool, len(ids))
	if !w.Enabled() || len(ids) == 0 {
		return seen, nil
	}
	members := make([]any, 0, len(ids))
	idx := make([]int, 0, len(ids))
	for i, id := range ids {
		if id != "" {
			members = append(members, id)
			idx = append(idx, i)
		}
	}
	if len(members) == 0 {
		return seen, nil
	}
	hits, err := seenScript.Run(ctx, c, w.Check(prefix, now), members...).Text()
	if err != nil {
		return nil, fmt.Errorf("dedupe: look up %d ids: %w", len(members), err)
	}
	if len(hits) != len(members) {
		return nil, fmt.Errorf("dedupe: look up %d ids: %d answers", len(members), len(hits))
	}
	for j := range hits {
		if hits[j] == '1' {
			seen[idx[j]] = true
		}
	}
	return seen, nil
}

// MarkIDs adds ids to the current set and sets its expiry, in one round trip.
func (w Window) MarkIDs(ctx context.Context, c redis.Cmdable, prefix string, now time.Time, ids ...string) error {
	if !w.Enabled() || len(ids) == 0 {
		return nil
	}
	key, exp := w.Mark(prefix, now)
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, key, members...)
		p.PExpireAt(ctx, key, exp)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dedupe: mark %d ids in %s: %w", len(ids), key, err)
	}
	return nil
}
