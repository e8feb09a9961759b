package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds every Redis command the engine sends, except the Lua
// scripts (scripts.go). Replies are parsed here, in both RESP2 and RESP3
// shapes, keeping each entry's fields in stream order.

// entry is one stream entry as read from Redis.
type entry struct {
	id         string
	fields     []string
	deliveries int64
}

// ensureGroup creates the consumer group (and the stream, MKSTREAM) unless
// it exists.
func ensureGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	id := "0"
	if start == StartNewest {
		id = "$"
	}
	err := rdb.XGroupCreateMkStream(ctx, stream, group, id).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", group, stream, err)
	}
	return nil
}

// isNoGroup reports whether err says the stream or group is gone.
func isNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// readNew reads up to count new entries (">") for consumer, blocking up to block.
func readNew(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, count int, block time.Duration) ([]entry, error) {
	v, err := rdb.Do(ctx, "XREADGROUP", "GROUP", group, consumer,
		"COUNT", count, "BLOCK", block.Milliseconds(), "STREAMS", stream, ">").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := parseReadReply(v)
	for i := range entries {
		entries[i].deliveries = 1
	}
	return entries, err
}

// pendingOf lists up to count entries pending for consumer after id start
// ("-" for the first), with their delivery counts.
func pendingOf(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer, start string, count int) ([]redis.XPendingExt, error) {
	return rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: group, Start: start, End: "+", Count: int64(count), Consumer: consumer,
	}).Result()
}

// touchOwn resets the idle time of those of ids that are still pending for
// consumer, atomically (XCLAIM … JUSTID leaves the delivery count alone).
func touchOwn(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, 2+len(ids))
	args = append(args, group, consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	return touchScript.Run(ctx, rdb, []string{stream}, args...).Err()
}

// autoclaim runs one XAUTOCLAIM round from cursor and returns the next
// cursor, the claimed entries with their delivery counts, and the ids that
// were pending but deleted from the stream (Redis drops them from the
// pending list).
func autoclaim(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, minIdle time.Duration, cursor string, count int) (string, []entry, []string, error) {
	v, err := rdb.Do(ctx, "XAUTOCLAIM", stream, group, consumer, minIdle.Milliseconds(), cursor, "COUNT", count).Result()
	if err != nil {
		return "", nil, nil, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return "", nil, nil, fmt.Errorf("XAUTOCLAIM: unexpected reply %T", v)
	}
	next, _ := arr[0].(string)
	entries, err := parseEntries(arr[1])
	if err != nil {
		return "", nil, nil, err
	}
	var deleted []string
	if len(arr) > 2 {
		if ids, ok := arr[2].([]any); ok {
			for _, id := range ids {
				if s, ok := id.(string); ok {
					deleted = append(deleted, s)
				}
			}
		}
	}
	if len(entries) == 0 {
		return next, nil, deleted, nil
	}
	// XAUTOCLAIM does not report delivery counts; the pending list does.
	pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: group, Start: entries[0].id, End: entries[len(entries)-1].id,
		Count: int64(len(entries)), Consumer: consumer,
	}).Result()
	if err != nil {
		return "", nil, nil, err
	}
	counts := make(map[string]int64, len(pend))
	for _, p := range pend {
		counts[p.ID] = p.RetryCount
	}
	kept := entries[:0]
	for _, e := range entries {
		if n, ok := counts[e.id]; ok { // else another worker took it meanwhile
			e.deliveries = n
			kept = append(kept, e)
		}
	}
	return next, kept, deleted, nil
}

// parseReadReply parses an XREADGROUP reply for a single stream: an array
// of [stream, entries] pairs (RESP2) or a map stream => entries (RESP3).
func parseReadReply(v any) ([]entry, error) {
	switch r := v.(type) {
	case nil:
		return nil, nil
	case []any:
		var out []entry
		for _, s := range r {
			pair, ok := s.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("XREADGROUP: unexpected stream reply %T", s)
			}
			es, err := parseEntries(pair[1])
			if err != nil {
				return nil, err
			}
			out = append(out, es...)
		}
		return out, nil
	case map[any]any:
		var out []entry
		for _, es := range r {
			parsed, err := parseEntries(es)
			if err != nil {
				return nil, err
			}
			out = append(out, parsed...)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("XREADGROUP: unexpected reply %T", v)
	}
}

// parseEntries parses an array of [id, [field, value, …]] entries. Entries
// whose fields are nil (deleted from the stream) are skipped.
func parseEntries(v any) ([]entry, error) {
	arr, ok := v.([]any)
	if !ok {
		if v == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("unexpected entries reply %T", v)
	}
	out := make([]entry, 0, len(arr))
	for _, e := range arr {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			continue // nil: an entry deleted from the stream
		}
		id, ok := pair[0].(string)
		if !ok {
			return nil, fmt.Errorf("unexpected entry id %T", pair[0])
		}
		raw, ok := pair[1].([]any)
		if !ok {
			continue
		}
		fields := make([]string, len(raw))
		for i, f := range raw {
			switch s := f.(type) {
			case string:
				fields[i] = s
			case []byte:
				fields[i] = string(s)
			default:
				fields[i] = fmt.Sprint(s)
			}
		}
		out = append(out, entry{id: id, fields: fields})
	}
	return out, nil
}

// IDAfter reports whether stream id a ("<ms>-<seq>") comes after b.
func IDAfter(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) > len(bm)
	}
	if am != bm {
		return am > bm
	}
	if len(as) != len(bs) {
		return len(as) > len(bs)
	}
	return as > bs
}

// idTime returns the time encoded in a stream id ("<ms>-<seq>").
func idTime(id string) time.Time {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, err := strconv.ParseInt(id[:i], 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.UnixMilli(ms)
		}
	}
	return time.Time{}
}

// consumerInfo is what the janitor needs to know of a consumer.
type consumerInfo struct {
	name    string
	pending int64
	idle    time.Duration
}

func consumers(ctx context.Context, rdb redis.UniversalClient, stream, group string) ([]consumerInfo, error) {
	cs, err := rdb.XInfoConsumers(ctx, stream, group).Result()
	if err != nil {
		return nil, err
	}
	out := make([]consumerInfo, len(cs))
	for i, c := range cs {
		out[i] = consumerInfo{name: c.Name, pending: c.Pending, idle: c.Idle}
	}
	return out, nil
}

// liveMembers returns the workers whose membership has not lapsed, by
// Redis's clock.
func liveMembers(ctx context.Context, rdb redis.UniversalClient, key string) (map[string]bool, error) {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return nil, err
	}
	ms, err := rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, err
	}
	live := make(map[string]bool, len(ms))
	for _, m := range ms {
		live[m] = true
	}
	return live, nil
}

// ReadDeadLetters reads up to count entries of stream dlq with ids after
// after ("" for the first), oldest first. It returns the dead letters among
// them, the id of the last entry read (to page on), and the ids of entries
// that are not Eddy's dead letters (skipped).
func ReadDeadLetters(ctx context.Context, rdb redis.UniversalClient, dlq, after string, count int) (dls []DeadLetter, last string, foreign []string, err error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	v, err := rdb.Do(ctx, "XRANGE", dlq, start, "+", "COUNT", count).Result()
	if err != nil {
		return nil, "", nil, fmt.Errorf("read %s: %w", dlq, err)
	}
	entries, err := parseEntries(v)
	if err != nil {
		return nil, "", nil, fmt.Errorf("read %s: %w", dlq, err)
	}
	dls = make([]DeadLetter, 0, len(entries))
	for _, e := range entries {
		last = e.id
		d, err := parseDeadLetter(e.id, e.fields)
		if err != nil {
			foreign = append(foreign, e.id)
			continue
		}
		dls = append(dls, d)
	}
	return dls, last, foreign, nil
}

// ErrDeadLetterGone is what Replay returns for a dead letter that is no
// longer in the dead-letter stream (replayed or deleted since it was read):
// nothing was appended.
var ErrDeadLetterGone = errors.New("processor: dead letter no longer in the dead-letter stream")

// replayScript deletes a dead letter and, only if that removed it, appends
// its original fields to the stream it came from: a dead letter replayed
// twice (two operators, a double click) is appended once.
//
//	KEYS[1]   the dead-letter stream
//	KEYS[2]   the partition stream to append to
//	ARGV[1]   the dead letter's id
//	ARGV[2..] the original entry's fields: name, value, …
//
// Reply: the new entry's id, or nil (redis.Nil) when the dead letter was
// not there, and nothing was written.
var replayScript = redis.NewScript(`
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
`)

// Replay appends a dead letter's original fields to the partition stream it
// came from and deletes it from the dead-letter stream, both or neither, in
// one script (replayScript) that appends only if the delete removed the dead
// letter: replays of the same dead letter that race (two operators, the
// console and eddy dlq replay) append it exactly once, and all but one
// return ErrDeadLetterGone. The replayed entry gets a new id, after
// everything already in the stream: it is processed again, behind later
// events of its key. An entry too wide for one Lua call (more than
// maxEffectStrings strings) is replayed by replayWatched, with the same
// guarantee.
//
// On Redis Cluster the two keys must hash to the same slot (a hash tag
// shared by the dead-letter stream and the input stream), as they had to
// when this was a MULTI/EXEC; otherwise Redis refuses with CROSSSLOT and
// nothing is written.
func Replay(ctx context.Context, rdb redis.UniversalClient, dlq string, d DeadLetter) (string, error) {
	if d.Timer != "" {
		return "", fmt.Errorf("replay %s from %s: a failed firing of timer %q, not a stream entry: nothing to replay", d.ID, dlq, d.Timer)
	}
	if len(d.Fields) == 0 || len(d.Fields)%2 != 0 {
		return "", fmt.Errorf("replay %s from %s: %d field names and values: want pairs", d.ID, dlq, len(d.Fields))
	}
	if 1+len(d.Fields) > maxEffectStrings { // too many for one Lua call (its stack holds about 8000)
		return replayWatched(ctx, rdb, dlq, d)
	}
	args := make([]any, 0, 1+len(d.Fields))
	args = append(args, d.ID)
	for _, f := range d.Fields {
		args = append(args, f)
	}
	id, err := replayScript.Run(ctx, rdb, []string{dlq, d.Stream}, args...).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return "", fmt.Errorf("replay %s from %s to %s: %w", d.ID, dlq, d.Stream, ErrDeadLetterGone)
	case err != nil:
		return "", fmt.Errorf("replay %s from %s to %s: %w", d.ID, dlq, d.Stream, err)
	}
	return id, nil
}

// replayWatchedTries bounds how often replayWatched retries when the
// dead-letter stream changed while it looked.
const replayWatchedTries = 20

// replayWatched is Replay for an entry too wide for replayScript: WATCH the
// dead-letter stream, check that the dead letter is there, then XADD and
// XDEL in MULTI/EXEC, which Redis refuses if the stream changed meanwhile
// (then it looks again). It gives the same guarantee: appended only if
// this call removed the dead letter.
func replayWatched(ctx context.Context, rdb redis.UniversalClient, dlq string, d DeadLetter) (string, error) {
	var add *redis.StringCmd
	watched := func(tx *redis.Tx) error {
		n, err := tx.XRange(ctx, dlq, d.ID, d.ID).Result()
		if err != nil {
			return err
		}
		if len(n) == 0 {
			return ErrDeadLetterGone
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			add = p.XAdd(ctx, &redis.XAddArgs{Stream: d.Stream, Values: d.Fields})
			p.XDel(ctx, dlq, d.ID)
			return nil
		})
		return err
	}
	var err error
	for range replayWatchedTries {
		if err = rdb.Watch(ctx, watched, dlq); !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("replay %s from %s to %s: %w", d.ID, dlq, d.Stream, err)
	}
	return add.Val(), nil
}

// ownedRead is what one read of an owned partition found.
type ownedRead struct {
	// entries are this consumer's entries after the last one it has seen
	// (those of a read whose reply was lost), then new ones, in stream order.
	entries []entry
	// fenced is set when the lease holds another fence: the partition is
	// another worker's, and entries is empty.
	fenced bool
	// foreign counts entries pending for other consumers. The owner's
	// takeover claimed them all, so these were read by a worker that had
	// lost its lease and had not yet noticed; those read before entries
	// come before them in the stream, so all are taken over, oldest first,
	// before entries are dispatched.
	foreign int64
}

// readOwned reads new entries of an owned partition in one MULTI/EXEC: the
// lease, this consumer's entries after seen, up to count new entries, and
// the consumers with entries pending.
//
// This consumer's entries after seen were delivered by a read whose reply
// was lost (go-redis does not retry a transaction whose reply was lost, but
// the loop's next read does the same). They come first; and if there were
// count of them, perhaps more, the new entries are left for later reads
// (they stay pending after seen), so that what is returned has no gap.
//
// Reading is not refused to a worker whose lease has gone, as a script could
// do: passing every entry through Lua doubled the cost of a read in Redis.
// What such a worker reads stays pending under its name (its commits are
// fenced), and the transaction lets the owner see it at its next read:
// everything pending for another consumer was delivered before that read.
func readOwned(ctx context.Context, rdb redis.UniversalClient, stream, lease, group, consumer string, count int, fence, seen string) (ownedRead, error) {
	var q ownedQuery
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		q.get = p.Get(ctx, lease)
		q.own = p.Do(ctx, "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, orStart(seen))
		q.fresh = p.Do(ctx, "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, ">")
		q.pend = p.XPending(ctx, stream, group)
		return nil
	})
	return q.result(err, fence, consumer, count, true)
}

// readOwnedWaiting is readOwned for an idle partition, in one round trip
// that waits up to block for new entries: a blocking XREADGROUP and one
// that does not wait (for the rest of a burst), then this
// consumer's entries after seen (the new ones, and any that a read whose
// reply was lost, or a same-named process that lost its lease, delivered to
// this name before them), the lease and the consumers with entries pending.
// Only the second read's entries are returned: a prefix of this consumer's
// unseen entries, without a gap. go-redis retries this pipeline after a
// lost reply, which is safe for that reason. Not being a transaction, the
// pending list may also show entries another worker read after this read;
// they are taken over all the same, which is safe, only slower.
func readOwnedWaiting(ctx context.Context, rdb redis.UniversalClient, stream, lease, group, consumer string, count int, block time.Duration, fence, seen string) (ownedRead, error) {
	var q ownedQuery
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		q.fresh = p.Do(ctx, "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", max(block.Milliseconds(), 1), "STREAMS", stream, ">")
		// Redis wakes the read at the first entry added; the rest of a
		// producer's burst is added before the commands after it run, and
		// this takes it in the same round trip.
		q.more = p.Do(ctx, "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, ">")
		q.own = p.Do(ctx, "XREADGROUP", "GROUP", group, consumer, "COUNT", 2*count, "STREAMS", stream, orStart(seen))
		q.get = p.Get(ctx, lease)
		q.pend = p.XPending(ctx, stream, group)
		return nil
	})
	return q.result(err, fence, consumer, 2*count, false)
}

// ownedQuery holds the replies of one owned read.
type ownedQuery struct {
	get              *redis.StringCmd
	own, fresh, more *redis.Cmd
	pend             *redis.XPendingCmd
}

// result turns the replies into an ownedRead. With withFresh, the new
// entries follow this consumer's unseen ones, unless those filled ownCount
// (there may be more of them after).
func (q *ownedQuery) result(err error, fence, consumer string, ownCount int, withFresh bool) (ownedRead, error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		return ownedRead{}, err
	}
	cmds := []redis.Cmder{q.own, q.fresh, q.pend}
	if q.more != nil {
		cmds = append(cmds, q.more)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return ownedRead{}, err // NOGROUP, say
		}
	}
	var r ownedRead
	if q.get.Val() != fence {
		r.fenced = true
		return r, nil
	}
	if r.entries, err = parseReadReply(q.own.Val()); err != nil {
		return ownedRead{}, err
	}
	if withFresh && len(r.entries) < ownCount {
		news, err := parseReadReply(q.fresh.Val())
		if err != nil {
			return ownedRead{}, err
		}
		r.entries = append(r.entries, news...)
	}
	for i := range r.entries {
		r.entries[i].deliveries = 1
	}
	for name, n := range q.pend.Val().Consumers {
		if name != consumer {
			r.foreign += n
		}
	}
	return r, nil
}

// orStart is id, or the stream's start for none.
func orStart(id string) string {
	if id == "" {
		return "0-0"
	}
	return id
}

// claimed is what one fenced claim found.
type claimed struct {
	fenced  bool
	next    string
	entries []entry
	deleted []string
}

// fencedClaim takes over the next pending entry from cursor, if the lease
// still holds fence.
func fencedClaim(ctx context.Context, rdb redis.UniversalClient, stream, lease, group, consumer, cursor, fence string) (claimed, error) {
	v, err := fencedClaimScript.Run(ctx, rdb, []string{stream, lease}, group, consumer, cursor, fence).Result()
	if err != nil {
		return claimed{}, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return claimed{}, fmt.Errorf("fenced claim: unexpected reply %T", v)
	}
	if arr[0] == "fenced" {
		return claimed{fenced: true}, nil
	}
	if len(arr) < 5 {
		return claimed{}, fmt.Errorf("fenced claim: short reply")
	}
	var c claimed
	c.next, _ = arr[1].(string)
	if c.entries, err = parseEntries(arr[2]); err != nil {
		return claimed{}, err
	}
	if ids, ok := arr[3].([]any); ok {
		for _, id := range ids {
			if s, ok := id.(string); ok {
				c.deleted = append(c.deleted, s)
			}
		}
	}
	count, _ := arr[4].(int64)
	for i := range c.entries {
		c.entries[i].deliveries = max(count, 1)
	}
	return c, nil
}

// dueTimer is a due timer as dueTimers found it.
type dueTimer struct {
	member string
	spec   TimerSpec
	err    error // malformed data
}

// dueTimers reads the partition's timers due by now, and event-time ones
// due by watermark (ms; below 0: none), at most limit of each.
func dueTimers(ctx context.Context, rdb redis.UniversalClient, k timerKeys, now time.Time, watermark int64, limit int) ([]dueTimer, error) {
	wm := ""
	if watermark >= 0 {
		wm = strconv.FormatInt(watermark, 10)
	}
	v, err := dueTimersScript.Run(ctx, rdb, []string{k.processing, k.event, k.data}, now.UnixMilli(), wm, limit).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]dueTimer, 0, len(v)/4)
	for i := 0; i+3 < len(v); i += 4 {
		member, _ := v[i].(string)
		data, _ := v[i+2].(string)
		spec, err := decodeTimer(member, data)
		if err != nil {
			// What is known of it, for its dead letter and its removal.
			score, _ := v[i+1].(string)
			due, _ := strconv.ParseFloat(score, 64)
			key, name, _ := strings.Cut(member, timerSep)
			spec = TimerSpec{Key: key, Name: name, At: time.UnixMilli(int64(due)), EventTime: v[i+3] == "e"}
		}
		out = append(out, dueTimer{member: member, spec: spec, err: err})
	}
	return out, nil
}

// loadWatermark reads the watermark a partition's earlier owner committed;
// 0 when none.
func loadWatermark(ctx context.Context, rdb redis.UniversalClient, meta string) (int64, error) {
	v, err := rdb.HGet(ctx, meta, "watermark").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// claimOwn takes back an entry pending for consumer (claimOwnScript). It
// returns the entry, or none with taken (another worker has it, or it was
// acked) or deleted (it is gone from the stream).
func claimOwn(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer, id string) (e entry, ok, deleted bool, err error) {
	v, err := claimOwnScript.Run(ctx, rdb, []string{stream}, group, consumer, id).Slice()
	if err != nil {
		return entry{}, false, false, err
	}
	if len(v) == 0 {
		return entry{}, false, false, fmt.Errorf("claim own: empty reply")
	}
	switch v[0] {
	case "taken":
		return entry{}, false, false, nil
	case "deleted":
		return entry{}, false, true, nil
	}
	if len(v) < 3 {
		return entry{}, false, false, fmt.Errorf("claim own: short reply")
	}
	es, err := parseEntries(v[1])
	if err != nil {
		return entry{}, false, false, fmt.Errorf("claim own: entries: %w", err)
	}
	if len(es) == 0 {
		return entry{}, false, false, errors.New("claim own: no entry in the reply")
	}
	n, _ := v[2].(int64)
	es[0].deliveries = n
	return es[0], true, false, nil
}

// trim runs trimScript on stream (a dry run when dry is set), measuring
// ages from now, or from Redis's clock when now is zero.
func trim(ctx context.Context, rdb redis.UniversalClient, stream string, r Retention, now time.Time, dry bool) (TrimReport, error) {
	flag := "0"
	if dry {
		flag = "1"
	}
	at := ""
	if !now.IsZero() {
		at = strconv.FormatInt(now.UnixMilli(), 10)
	}
	v, err := trimScript.Run(ctx, rdb, []string{stream}, at, r.MaxAge.Milliseconds(), r.MaxLen, trimChunk, flag).Slice()
	if err != nil {
		return TrimReport{}, fmt.Errorf("trim %s: %w", stream, err)
	}
	if len(v) != 8 {
		return TrimReport{}, fmt.Errorf("trim %s: a reply of %d values, want 8", stream, len(v))
	}
	num := func(x any) int64 { n, _ := x.(int64); return n }
	str := func(x any) string { s, _ := x.(string); return s }
	rep := TrimReport{
		Stream:    stream,
		Retention: r,
		Removed:   num(v[0]),
		Length:    num(v[1]),
		HeldFrom:  str(v[3]),
		HeldBy:    str(v[4]),
		Over:      num(v[6]),
	}
	if first := str(v[7]); first != "" {
		rep.Oldest = idTime(first)
	}
	rep.ConsumerIdle = -1
	if idle := num(v[5]); idle >= 0 {
		rep.ConsumerIdle = time.Duration(idle) * time.Millisecond
	}
	if rep.HeldBy != "" {
		after := r.AbandonedAfter
		if after <= 0 {
			after = DefaultAbandonedAfter
		}
		rep.Abandoned = rep.ConsumerIdle < 0 || rep.ConsumerIdle >= after
	}
	return rep, nil
}

// ReadVersion returns the version of pipeline's read model that readers
// read (processor.VersionKey; 1 when it is not set).
func ReadVersion(ctx context.Context, rdb redis.UniversalClient, pipeline string) (int, error) {
	v, err := rdb.Get(ctx, VersionKey(pipeline)).Result()
	if errors.Is(err, redis.Nil) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the version of %s's read model: %w", pipeline, err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s holds %q, not a version", VersionKey(pipeline), v)
	}
	return n, nil
}

// ErrVersionBehind is returned by SwitchVersion while the new version has
// not caught up with the old one.
var ErrVersionBehind = errors.New("processor: the new version has not caught up")

// SwitchVersion switches pipeline's read model (options o: stream,
// partitions and the version-1 group) from version from to version to,
// in one step, once version to has caught up with version from on every
// partition (switchVersionScript); until then it returns an error that
// wraps ErrVersionBehind and says where. On Redis Cluster, where the
// partitions are in other slots than the version key, the partitions are
// checked one by one before the switch: an event the old version commits
// in between may be missing from the new one for the moment it takes it
// to commit the same.
func SwitchVersion(ctx context.Context, rdb redis.UniversalClient, o Options, from, to int) error {
	group := o.Group
	if group == "" {
		group = o.Pipeline
	}
	oldGroup, newGroup := VersionGroup(group, from), VersionGroup(group, to)
	n := max(o.Partitions, 1)
	streams := make([]string, n)
	for p := range n {
		streams[p] = PartitionStream(o.Stream, p, n)
	}
	run := func(keys []string, withVersion bool) error {
		flag := "0"
		if withVersion {
			flag = "1"
		}
		v, err := switchVersionScript.Run(ctx, rdb, keys, from, to, oldGroup, newGroup, flag).StringSlice()
		if err != nil {
			return fmt.Errorf("switch %s to version %d: %w", o.Pipeline, to, err)
		}
		switch {
		case len(v) >= 1 && v[0] == "ok":
			return nil
		case len(v) >= 3 && v[0] == "behind":
			return fmt.Errorf("%w: %s: %s", ErrVersionBehind, v[1], v[2])
		case len(v) >= 1 && v[0] == "moved":
			now := "1"
			if len(v) > 1 && v[1] != "" {
				now = v[1]
			}
			return fmt.Errorf("switch %s to version %d: the version is now %s, not %d: another rebuild switched it", o.Pipeline, to, now, from)
		}
		return fmt.Errorf("switch %s to version %d: unexpected reply %q", o.Pipeline, to, v)
	}
	if !isCluster(rdb) {
		return run(append([]string{VersionKey(o.Pipeline)}, streams...), true)
	}
	for _, s := range streams {
		if err := run([]string{s}, false); err != nil {
			return err
		}
	}
	return run([]string{VersionKey(o.Pipeline)}, true)
}
