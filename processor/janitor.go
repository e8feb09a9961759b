package processor

import (
	"context"

	"go.uber.org/zap"
)

// Liveness has one mechanism: the members sorted set of the group
// (membersKey), scored by when each worker's membership lapses, renewed
// every Heartbeat by coordinate, by Redis's clock. A worker is alive while
// its score is in the future. Partition leases say who owns what, not who
// is alive: an owner renews its leases on the same beat, and a lease
// lapses SessionTimeout after its last renewal.

// janitor deletes, every SessionTimeout, consumers of the group that are
// not alive, have been idle for SessionTimeout and have nothing pending. A
// consumer with pending entries is never deleted: its entries wait for
// the partition's next owner, or for reclaim.
func (p *Processor) janitor(soft context.Context) {
	for p.wait(soft, p.o.SessionTimeout) {
		p.sweep(soft)
	}
}

// sweep deletes dead consumers with nothing pending. A consumer deleted
// just as it came alive loses nothing (deletion checks, atomically, that it
// has nothing pending); its next read creates it again.
func (p *Processor) sweep(ctx context.Context) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	live, err := liveMembers(ctx, p.rdb, membersKey(p.o.Stream, p.o.Group))
	if err != nil {
		return
	}
	for _, pt := range p.parts {
		cs, err := consumers(ctx, p.rdb, pt.stream, p.o.Group)
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.name == p.o.Consumer || live[c.name] || c.pending > 0 || c.idle < p.o.SessionTimeout {
				continue
			}
			n, err := deleteConsumerScript.Run(ctx, p.rdb, []string{pt.stream}, p.o.Group, c.name).Int()
			if err == nil && n == 1 {
				pt.log.Info("consumer_removed", zap.String("removed_consumer", c.name), zap.Duration("idle", c.idle))
			}
		}
	}
}

// leave is the last step of a stop: this consumer leaves each partition's
// group where nothing is left pending for it (its membership is dropped by
// coordinate).
func (p *Processor) leave(ctx context.Context) {
	for _, pt := range p.parts {
		if err := deleteConsumerScript.Run(ctx, p.rdb, []string{pt.stream}, p.o.Group, p.o.Consumer).Err(); err != nil && !isNoGroup(err) {
			p.log.Warn("leave_failed", zap.Error(err))
			return
		}
	}
}
