package processor

import (
	"context"
	"errors"
	"fmt"
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
}

// Stats reads each partition's length, lag and pending entries, in one
// round trip. A partition whose stream or group does not exist yet reports
// zeros.
func (p *Processor) Stats(ctx context.Context) ([]PartitionStats, error) {
	type cmds struct {
		info    *redis.XInfoStreamCmd
		groups  *redis.XInfoGroupsCmd
		pending *redis.XPendingCmd
	}
	cs := make([]cmds, len(p.parts))
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, pt := range p.parts {
			cs[i] = cmds{
				info:    pipe.XInfoStream(ctx, pt.stream),
				groups:  pipe.XInfoGroups(ctx, pt.stream),
				pending: pipe.XPending(ctx, pt.stream, p.o.Group),
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
