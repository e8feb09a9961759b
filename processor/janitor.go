package processor

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// janitor announces this consumer on every partition (a heartbeat key that
// expires after SessionTimeout) and deletes consumers of the group that have
// neither a heartbeat nor pending entries. A consumer with pending entries
// is never deleted: its entries wait for reclaim.
func (p *Processor) janitor(soft context.Context) {
	keys := make([]string, len(p.parts))
	for i, pt := range p.parts {
		keys[i] = pt.hbKey
	}
	var logs throttle
	beat := func() {
		ctx, cancel := p.bounded(soft)
		defer cancel()
		if err := heartbeat(ctx, p.rdb, keys, p.o.SessionTimeout); err != nil && soft.Err() == nil {
			if ok, n := logs.allow(time.Now(), 10*time.Second); ok {
				p.log.Warn("heartbeat_failed", zap.Error(err), zap.Int("suppressed", n))
			}
		}
	}
	beat()
	hb := time.NewTicker(p.o.Heartbeat)
	defer hb.Stop()
	sweep := time.NewTicker(p.o.SessionTimeout)
	defer sweep.Stop()
	for {
		select {
		case <-soft.Done():
			return
		case <-hb.C:
			beat()
		case <-sweep.C:
			p.sweep(soft)
		}
	}
}

// sweep deletes dead consumers with nothing pending.
func (p *Processor) sweep(ctx context.Context) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	for _, pt := range p.parts {
		cs, err := consumers(ctx, p.rdb, pt.stream, p.o.Group)
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.name == p.o.Consumer || c.pending > 0 || c.idle < p.o.SessionTimeout {
				continue
			}
			hb := heartbeatKey(p.o.Stream, pt.n, p.o.Partitions, p.o.Group, c.name)
			n, err := deleteConsumerScript.Run(ctx, p.rdb, []string{pt.stream, hb}, p.o.Group, c.name).Int()
			if err == nil && n == 1 {
				pt.log.Info("consumer_removed", zap.String("removed_consumer", c.name), zap.Duration("idle", c.idle))
			}
		}
	}
}

// leave is the last step of a stop: drop the heartbeats and, where nothing
// is left pending, this consumer itself.
func (p *Processor) leave(ctx context.Context) {
	keys := make([]string, len(p.parts))
	for i, pt := range p.parts {
		keys[i] = pt.hbKey
	}
	if err := deleteKeys(ctx, p.rdb, keys); err != nil {
		p.log.Warn("leave_failed", zap.Error(err))
		return
	}
	for _, pt := range p.parts {
		_ = deleteConsumerScript.Run(ctx, p.rdb, []string{pt.stream, pt.hbKey}, p.o.Group, p.o.Consumer).Err()
	}
}
