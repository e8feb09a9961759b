package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// followEvery is how often a worker of a pipeline with a read model reads
// its version (processor.VersionKey), to follow an eddy rebuild's switch.
const followEvery = time.Second

// liveProc is the processor of one pipeline in eddy run: the one of the
// read model's current version, replaced when a rebuild switches it. The
// reporter reads it through these methods.
type liveProc struct {
	p atomic.Pointer[processor.Processor]
}

func newLiveProc(p *processor.Processor) *liveProc {
	l := &liveProc{}
	l.p.Store(p)
	return l
}

func (l *liveProc) Options() processor.Options { return l.p.Load().Options() }

func (l *liveProc) Stats(ctx context.Context) ([]processor.PartitionStats, error) {
	return l.p.Load().Stats(ctx)
}

func (l *liveProc) Gauges(ctx context.Context) ([]map[string]int64, error) {
	return l.p.Load().Gauges(ctx)
}

func (l *liveProc) Members(ctx context.Context) ([]processor.Member, error) {
	return l.p.Load().Members(ctx)
}

// follower runs a pipeline at the current version of its read model and,
// when eddy rebuild switches the version, stops that processor (draining
// what it has in flight, as on shutdown) and starts one at the new
// version, whose group the rebuild has brought up to date.
type follower struct {
	base    *pipelines.Pipeline // version 1
	version int
	live    *liveProc
	rdb     redis.UniversalClient
	build   func(*pipelines.Pipeline) (*processor.Processor, error)
	log     *zap.Logger
}

func (f *follower) Run(ctx context.Context) error {
	for {
		runCtx, stop := context.WithCancel(ctx)
		next := make(chan int, 1)
		go f.watch(runCtx, stop, next)
		err := f.live.p.Load().Run(runCtx)
		stop()
		if ctx.Err() != nil || err != nil {
			return err
		}
		v, ok := <-next
		if !ok {
			return nil
		}
		proc, err := f.build(f.base.AtVersion(v))
		if err != nil {
			return err
		}
		f.log.Info("read_model_version_followed", zap.String("pipeline", f.base.Name), zap.Int("from", f.version), zap.Int("to", v),
			zap.String("group", proc.Options().Group))
		f.version = v
		f.live.p.Store(proc)
	}
}

// watch reads the version every followEvery until ctx ends; a version
// other than the running one is sent on next and stops the run. next is
// closed when watch returns without one.
func (f *follower) watch(ctx context.Context, stop context.CancelFunc, next chan<- int) {
	defer close(next)
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := processor.ReadVersion(ctx, f.rdb, f.base.Name)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn("read_model_version_unreadable", zap.String("pipeline", f.base.Name), zap.Error(err))
			}
			continue
		}
		if v != f.version {
			next <- v
			stop()
			return
		}
	}
}

// atCurrentVersion returns p at the version of its read model readers read
// now, and that version (1 for a pipeline no rebuild can version).
//
// A pipeline that cannot be rebuilt is at version 1 unless a rebuild made
// it another when it could (its steps changed since): that is an error,
// since running it at version 1 would write a read model nobody reads and
// emit its history again, and at version N would emit what version N
// never did. A user who may not read the version key (a pipeline that was
// never rebuildable needs no such rule) is taken at version 1.
func atCurrentVersion(ctx context.Context, rdb redis.UniversalClient, p *pipelines.Pipeline) (*pipelines.Pipeline, int, error) {
	v, err := processor.ReadVersion(ctx, rdb, p.Name)
	notRebuildable := p.Rebuildable()
	switch {
	case err != nil && notRebuildable != nil && redis.HasErrorPrefix(errors.Unwrap(err), "NOPERM"):
		return p, 1, nil
	case err != nil:
		return nil, 0, err
	case notRebuildable != nil && v > 1:
		return nil, 0, fmt.Errorf("pipeline %s: its read model is at version %d (eddy rebuild set %s), but it can no longer be versioned: %w; restore its steps, or delete %s once its readers read version 1 again",
			p.Name, v, processor.VersionKey(p.Name), notRebuildable, processor.VersionKey(p.Name))
	}
	return p.AtVersion(v), v, nil
}
