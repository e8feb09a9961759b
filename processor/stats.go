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

// PartitionStats describes one partition of a pipeline as Redis sees it.
type PartitionStats struct {
	Partition int
	Stream    string
	// Length is the number of entries in the stream.
	Length int64
	// Lag is the number of entries not yet delivered to the group; -1 when
	// Redis cannot tell (after deletions or trimming past the group).
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

// Stats reads each partition's length, lag and pending entries, in one
// round trip. A partition whose stream or group does not exist yet reports
// zeros.
func (p *Processor) Stats(ctx context.Context) ([]PartitionStats, error) {
	type cmds struct {
		info    *redis.XInfoStreamCmd
		groups  *redis.XInfoGroupsCmd
		pending *redis.XPendingCmd
		lease   *redis.StringCmd
		ttl     *redis.DurationCmd
	}
	cs := make([]cmds, len(p.parts))
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, pt := range p.parts {
			cs[i] = cmds{
				info:    pipe.XInfoStream(ctx, pt.stream),
				groups:  pipe.XInfoGroups(ctx, pt.stream),
				pending: pipe.XPending(ctx, pt.stream, p.o.Group),
				lease:   pipe.Get(ctx, pt.lease),
				ttl:     pipe.PTTL(ctx, pt.lease),
			}
		}
		return nil
	})
	if err != nil && !isNoGroup(err) && !redis.HasErrorPrefix(err, "ERR no such key") && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("stats of %s: %w", p.o.Pipeline, err)
	}
	now := p.o.Now()
	out := make([]PartitionStats, len(p.parts))
	for i, pt := range p.parts {
		info := cs[i].info.Val()
		s := PartitionStats{Partition: pt.n, Stream: pt.stream}
		if info != nil {
			s.Length = info.Length
		}
		for _, g := range cs[i].groups.Val() {
			if g.Name != p.o.Group {
				continue
			}
			s.Lag, s.Consumers = g.Lag, g.Consumers
			// A group that has been handed the stream's last entry has no
			// lag, whatever the server's estimate (servers that do not
			// track entries-read, like the embedded one, overstate it).
			if info != nil && g.LastDeliveredID == info.LastGeneratedID {
				s.Lag = 0
			}
		}
		if f := cs[i].lease.Val(); f != "" {
			s.Fence, s.LeaseTTL = f, max(cs[i].ttl.Val(), 0)
			parts := strings.Split(f, "/")
			s.Owner = strings.Join(parts[:max(len(parts)-2, 1)], "/")
			s.Token, _ = strconv.ParseInt(parts[len(parts)-1], 10, 64)
		}
		if pend := cs[i].pending.Val(); pend != nil && pend.Count > 0 {
			s.Pending = pend.Count
			if at := idTime(pend.Lower); !at.IsZero() {
				s.OldestPending = max(now.Sub(at), 0)
			}
		}
		out[i] = s
	}
	return out, nil
}

// Members lists the live workers of the pipeline's group (ordering key).
// Expiry times are Redis's clock, as membership is.
func (p *Processor) Members(ctx context.Context) ([]Member, error) {
	now, err := p.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", p.o.Pipeline, err)
	}
	zs, err := p.rdb.ZRangeByScoreWithScores(ctx, membersKey(p.o.Stream, p.o.Group), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", p.o.Pipeline, err)
	}
	out := make([]Member, len(zs))
	for i, z := range zs {
		// Expires in this machine's clock: now plus what is left by Redis's.
		left := time.Duration(int64(z.Score)-now.UnixMilli()) * time.Millisecond
		out[i] = Member{Consumer: fmt.Sprint(z.Member), Expires: time.Now().Add(left)}
	}
	return out, nil
}
