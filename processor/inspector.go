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

// Inspector is a read-only view of one pipeline as Redis holds it: each
// partition's length, lag and pending entries, the live workers, and the
// dead letters (which it can also replay). It needs no Handler or Decoder
// and starts nothing: `eddy status` and `eddy dlq` use it instead of a
// Processor.
//
// Keys, streams or groups that do not exist yet (nothing has run, nothing
// was produced) read as zeros and empty lists, never as errors.
type Inspector struct {
	rdb redis.UniversalClient
	o   Options
	// streams, leases and gauges are each partition's stream, lease key
	// and gauges hash.
	streams, leases, gauges []string
}

// PartitionStats describes one partition of a pipeline as Redis sees it.
type PartitionStats struct {
	Partition int
	Stream    string
	// Length is the number of entries in the stream.
	Length int64
	// GroupExists is set when the stream has the pipeline's consumer group.
	// No worker has read the partition yet when it is not.
	GroupExists bool
	// Lag is the number of entries not yet delivered to the group; -1 when
	// Redis cannot tell (after deletions or trimming past the group). With
	// no group yet it is Length: the whole stream is backlog (a group that
	// starts at the newest entry will skip it).
	Lag int64
	// Pending is the number of entries delivered but not acked.
	Pending int64
	// OldestPending is the age of the oldest pending entry (by its id).
	OldestPending time.Duration
	// Consumers is the number of consumers in the group.
	Consumers int64
	// Owner is the consumer holding the partition's lease and Fence its
	// full lease value ("<consumer>/<instance>/<token>"); empty when none
	// (or with ordering none). LeaseTTL is what is left of the lease.
	Owner, Fence string
	Token        int64
	LeaseTTL     time.Duration
}

// Member is a live worker of the pipeline's group.
type Member struct {
	Consumer string
	// Expires is when its membership lapses unless renewed.
	Expires time.Time
}

// PendingEntry is an entry delivered to a consumer of the group and not
// yet acked.
type PendingEntry struct {
	ID string
	// Consumer is the consumer it was last delivered to.
	Consumer string
	// Idle is the time since it was last delivered.
	Idle time.Duration
	// Deliveries is how many times it has been delivered; the engine
	// counts each as an attempt.
	Deliveries int64
}

// NewInspector checks opts (Pipeline and Stream are required; Handler and
// Decoder are not looked at), fills in their defaults and returns an
// Inspector that reads through rdb. It does not close rdb.
func NewInspector(rdb redis.UniversalClient, opts Options) (*Inspector, error) {
	if rdb == nil {
		return nil, errors.New("processor: nil Redis client")
	}
	if err := opts.check(false); err != nil {
		return nil, err
	}
	opts.fillDefaults()
	return newInspector(rdb, opts), nil
}

// newInspector returns an Inspector for options whose defaults are filled
// in (a Processor's).
func newInspector(rdb redis.UniversalClient, o Options) *Inspector {
	in := &Inspector{rdb: rdb, o: o}
	for n := 0; n < o.Partitions; n++ {
		in.streams = append(in.streams, PartitionStream(o.Stream, n, o.Partitions))
		in.leases = append(in.leases, leaseKey(o.Stream, n, o.Partitions, o.Group))
		in.gauges = append(in.gauges, GaugesKey(o.Stream, n, o.Partitions, o.Group))
	}
	return in
}

// Options returns the options with every default filled in.
func (in *Inspector) Options() Options { return in.o }

// NoSuchKey reports the error of a stream command (XINFO, XGROUP) on a
// key that does not exist. The server says "ERR no such key";
// HasErrorPrefix drops the "ERR ".
func NoSuchKey(err error) bool { return redis.HasErrorPrefix(err, "no such key") }

// isReply reports whether err is an error reply of Redis, as opposed to a
// failure to reach it or a cancelled context.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Stats reads each partition's length, group, lag, pending entries and
// lease, in one round trip. A partition whose stream or group does not
// exist yet reports zeros, with GroupExists false.
func (in *Inspector) Stats(ctx context.Context) ([]PartitionStats, error) {
	type cmds struct {
		info    *redis.XInfoStreamCmd
		groups  *redis.XInfoGroupsCmd
		pending *redis.XPendingCmd
		lease   *redis.StringCmd
		ttl     *redis.DurationCmd
	}
	cs := make([]cmds, len(in.streams))
	_, err := in.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, stream := range in.streams {
			cs[i] = cmds{
				info:    pipe.XInfoStream(ctx, stream),
				groups:  pipe.XInfoGroups(ctx, stream),
				pending: pipe.XPending(ctx, stream, in.o.Group),
				lease:   pipe.Get(ctx, in.leases[i]),
				ttl:     pipe.PTTL(ctx, in.leases[i]),
			}
		}
		return nil
	})
	// The pipeline's error is only its first command's; each command's own
	// is classified below. One that is no reply at all failed them all.
	if err != nil && !isReply(err) {
		return nil, fmt.Errorf("stats of %s: %w", in.o.Pipeline, err)
	}
	fail := func(stream string, err error) ([]PartitionStats, error) {
		return nil, fmt.Errorf("stats of %s: %s: %w", in.o.Pipeline, stream, err)
	}
	now := in.o.Now()
	out := make([]PartitionStats, len(in.streams))
	for i, stream := range in.streams {
		c := cs[i]
		s := PartitionStats{Partition: i, Stream: stream}
		var info *redis.XInfoStream
		switch err := c.info.Err(); {
		case err == nil:
			info = c.info.Val()
			s.Length = info.Length
		case !NoSuchKey(err):
			return fail(stream, err)
		}
		if err := c.groups.Err(); err != nil && !NoSuchKey(err) {
			return fail(stream, err)
		}
		for _, g := range c.groups.Val() {
			if g.Name != in.o.Group {
				continue
			}
			s.GroupExists = true
			s.Lag, s.Consumers = g.Lag, g.Consumers
			// A group that has been handed the stream's last entry has no
			// lag, whatever the server's estimate (servers that do not
			// track entries-read, like the embedded one, overstate it).
			if info != nil && g.LastDeliveredID == info.LastGeneratedID {
				s.Lag = 0
			}
		}
		if !s.GroupExists {
			s.Lag = s.Length // no group yet: everything is backlog
		}
		switch err := c.pending.Err(); {
		case err == nil:
			if pend := c.pending.Val(); pend.Count > 0 {
				s.Pending = pend.Count
				if at := idTime(pend.Lower); !at.IsZero() {
					s.OldestPending = max(now.Sub(at), 0)
				}
			}
		case !isNoGroup(err): // NOGROUP: no stream or no group yet
			return fail(stream, err)
		}
		switch err := c.lease.Err(); {
		case err == nil:
			f := c.lease.Val()
			s.Fence, s.LeaseTTL = f, max(c.ttl.Val(), 0)
			parts := strings.Split(f, "/")
			s.Owner = strings.Join(parts[:max(len(parts)-2, 1)], "/")
			s.Token, _ = strconv.ParseInt(parts[len(parts)-1], 10, 64)
		case !errors.Is(err, redis.Nil): // Nil: no owner
			return fail(stream, err)
		}

		if err := c.ttl.Err(); err != nil {
			return fail(stream, err)
		}
		out[i] = s
	}
	return out, nil
}

// Unrouted counts the entries of the bare stream name (Options.Stream) of
// a partitioned pipeline: entries a producer added there instead of to
// PartitionStream(Stream, PartitionOf(key, n), n). The engine never reads
// them. It is 0 with one partition (the bare name is the partition) and
// when the key does not exist or is not a stream.
func (in *Inspector) Unrouted(ctx context.Context) (int64, error) {
	if in.o.Partitions <= 1 {
		return 0, nil
	}
	n, err := in.rdb.XLen(ctx, in.o.Stream).Result()
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return 0, nil // some other key of that name: not entries of ours
	}
	if err != nil {
		return 0, fmt.Errorf("unrouted entries of %s: %s: %w", in.o.Pipeline, in.o.Stream, err)
	}
	return n, nil
}

// Members lists the live workers of the pipeline's group (ordering key).
// Expiry times are Redis's clock, as membership is, moved to this
// machine's (Options.Now).
func (in *Inspector) Members(ctx context.Context) ([]Member, error) {
	now, err := in.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", in.o.Pipeline, err)
	}
	zs, err := in.rdb.ZRangeByScoreWithScores(ctx, membersKey(in.o.Stream, in.o.Group), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", in.o.Pipeline, err)
	}
	here := in.o.Now()
	out := make([]Member, len(zs))
	for i, z := range zs {
		left := time.Duration(int64(z.Score)-now.UnixMilli()) * time.Millisecond
		out[i] = Member{Consumer: fmt.Sprint(z.Member), Expires: here.Add(left)}
	}
	return out, nil
}

// Pending lists up to count entries pending in the group on partition,
// oldest first, with the consumer each was delivered to, its idle time and
// its delivery count. A partition whose stream or group does not exist yet
// has none.
func (in *Inspector) Pending(ctx context.Context, partition, count int) ([]PendingEntry, error) {
	if partition < 0 || partition >= len(in.streams) {
		return nil, fmt.Errorf("pending of %s: partition %d: want 0 to %d", in.o.Pipeline, partition, len(in.streams)-1)
	}
	if count < 1 {
		return nil, fmt.Errorf("pending of %s: count %d: must be at least 1", in.o.Pipeline, count)
	}
	stream := in.streams[partition]
	xs, err := in.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: in.o.Group, Start: "-", End: "+", Count: int64(count),
	}).Result()
	if isNoGroup(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pending of %s: %s: %w", in.o.Pipeline, stream, err)
	}
	out := make([]PendingEntry, len(xs))
	for i, x := range xs {
		out[i] = PendingEntry{ID: x.ID, Consumer: x.Consumer, Idle: x.Idle, Deliveries: x.RetryCount}
	}
	return out, nil
}

// DeadLetterSpan returns how many entries the pipeline's dead-letter
// stream holds and the id of its last one ("" when it is empty or does not
// exist), in one round trip.
func (in *Inspector) DeadLetterSpan(ctx context.Context) (n int64, last string, err error) {
	var (
		xlen *redis.IntCmd
		tail *redis.XMessageSliceCmd
	)
	_, err = in.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		xlen = pipe.XLen(ctx, in.o.DeadLetterStream)
		tail = pipe.XRevRangeN(ctx, in.o.DeadLetterStream, "+", "-", 1)
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("dead letters of %s: %s: %w", in.o.Pipeline, in.o.DeadLetterStream, err)
	}
	if ms := tail.Val(); len(ms) > 0 {
		last = ms[0].ID
	}
	return xlen.Val(), last, nil
}

// DeadLetters reads up to count entries of the pipeline's dead-letter
// stream after id after ("" for the first), oldest first, as
// ReadDeadLetters does: the dead letters, the id of the last entry read (to
// page on) and the ids of entries that are not Eddy's dead letters.
func (in *Inspector) DeadLetters(ctx context.Context, after string, count int) (dls []DeadLetter, last string, foreign []string, err error) {
	return ReadDeadLetters(ctx, in.rdb, in.o.DeadLetterStream, after, count)
}

// Replay puts dead letter d back on the partition stream it came from and
// deletes it from the pipeline's dead-letter stream, as Replay does, and
// returns the new entry's id. It appends only if it removed the dead
// letter: one already replayed or deleted gives ErrDeadLetterGone.
func (in *Inspector) Replay(ctx context.Context, d DeadLetter) (string, error) {
	return Replay(ctx, in.rdb, in.o.DeadLetterStream, d)
}

// TimerStats describes the timers of one partition.
type TimerStats struct {
	Partition int
	// Processing and EventTime count the processing-time and event-time
	// timers set; NextProcessing and NextEvent are the earliest due of
	// each (zero when none). An event-time timer is due when the
	// partition's watermark reaches it.
	Processing, EventTime     int64
	NextProcessing, NextEvent time.Time
	// Watermark is the watermark the partition's owner last committed;
	// zero when none.
	Watermark time.Time
}

// Timers reads each partition's timers and committed watermark, in one
// round trip. Partitions without any read as zeros.
func (in *Inspector) Timers(ctx context.Context) ([]TimerStats, error) {
	type cmds struct {
		pn, en     *redis.IntCmd
		pmin, emin *redis.ZSliceCmd
		wm         *redis.StringCmd
	}
	cs := make([]cmds, in.o.Partitions)
	_, err := in.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for n := range cs {
			ks := keyspace{stream: in.o.Stream, p: n, n: in.o.Partitions, group: in.o.Group}
			k := timerKeysOf(ks)
			cs[n] = cmds{
				pn: pipe.ZCard(ctx, k.processing), en: pipe.ZCard(ctx, k.event),
				pmin: pipe.ZRangeWithScores(ctx, k.processing, 0, 0), emin: pipe.ZRangeWithScores(ctx, k.event, 0, 0),
				wm: pipe.HGet(ctx, metaKey(in.o.Stream, n, in.o.Partitions, in.o.Group), "watermark"),
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("timers of %s: %w", in.o.Pipeline, err)
	}
	out := make([]TimerStats, len(cs))
	for n, c := range cs {
		s := TimerStats{Partition: n, Processing: c.pn.Val(), EventTime: c.en.Val()}
		if z := c.pmin.Val(); len(z) > 0 {
			s.NextProcessing = time.UnixMilli(int64(z[0].Score))
		}
		if z := c.emin.Val(); len(z) > 0 {
			s.NextEvent = time.UnixMilli(int64(z[0].Score))
		}
		if w, err := c.wm.Int64(); err == nil && w > 0 {
			s.Watermark = time.UnixMilli(w)
		}
		out[n] = s
	}
	return out, nil
}

// Gauges reads each partition's levels kept by Message.GaugeAdd (open
// windows, sessions, funnels and active alerts of the analytics steps),
// by name, in one round trip; a partition without any reads as an empty
// map. (Apart from Stats, which an ingest user may call without the right
// to read the engine's hashes.)
func (in *Inspector) Gauges(ctx context.Context) ([]map[string]int64, error) {
	cmds := make([]*redis.MapStringStringCmd, len(in.gauges))
	_, err := in.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range in.gauges {
			cmds[i] = pipe.HGetAll(ctx, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gauges of %s: %w", in.o.Pipeline, err)
	}
	out := make([]map[string]int64, len(cmds))
	for i, c := range cmds {
		out[i] = make(map[string]int64, len(c.Val()))
		for name, v := range c.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("gauges of %s: %s: field %q holds %q, not an integer", in.o.Pipeline, in.gauges[i], name, v)
			}
			out[i][name] = n
		}
	}
	return out, nil
}
