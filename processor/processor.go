package processor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/dedupe"
)

// Processor runs one pipeline: a reader and a committer per partition, and
// a pool of key lanes shared by the partitions.
type Processor struct {
	rdb   redis.UniversalClient
	o     Options
	log   *zap.Logger
	dd    dedupe.Window
	parts []*partition
	// hardAt is when the hard stop comes (unix ns), 0 until a stop begins.
	hardAt atomic.Int64
	// instance tells this process's leases from those of an earlier process
	// with the same consumer name.
	instance string
	// cluster is set on Redis Cluster, where a script reaches one slot.
	cluster bool
	// leftBehind counts handler calls still running past StepTimeout.
	leftBehind atomic.Int64
}

// New checks opts and returns a Processor that uses rdb. It does not close
// rdb: whoever created the client closes it, after Run has returned. Create
// the client with ContextTimeoutEnabled so that the hard stop also bounds
// calls to a Redis that has stopped answering; otherwise they wait for the
// client's read timeout and retries.
func New(rdb redis.UniversalClient, opts Options) (*Processor, error) {
	if rdb == nil {
		return nil, errors.New("processor: nil Redis client")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	p := &Processor{
		rdb:      rdb,
		o:        opts,
		instance: hex.EncodeToString(id[:]),
		cluster:  isCluster(rdb),
		dd:       dedupeWindow(opts),
		log: opts.Logger.With(zap.String("pipeline", opts.Pipeline), zap.String("group", opts.Group),
			zap.String("consumer", opts.Consumer)),
	}
	if rt := readTimeout(rdb); rt > 0 && p.o.Block+500*time.Millisecond > rt {
		// A blocking read longer than the client's read timeout would time
		// out with entries delivered and the reply lost.
		p.log.Warn("block_clamped_to_read_timeout", zap.Duration("block", p.o.Block), zap.Duration("read_timeout", rt))
		p.o.Block = rt / 2
	}
	for i := 0; i < opts.Partitions; i++ {
		p.parts = append(p.parts, newPartition(p, i))
	}
	return p, nil
}

func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// readTimeout is the client's read timeout; 0 when there is none or it is
// not known.
func readTimeout(rdb redis.UniversalClient) time.Duration {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ReadTimeout
	case *redis.ClusterClient:
		return c.Options().ReadTimeout
	}
	return 0
}

// Options returns the options with every default filled in.
func (p *Processor) Options() Options { return p.o }

// Run processes the pipeline until ctx is done, then shuts down in two
// phases. Soft: stop reading, finish the entries in flight and commit them.
// Hard, once ShutdownTimeout has passed since ctx was done: abandon what is
// still in flight; those entries stay pending and are re-read on restart or
// reclaimed by another worker, so nothing is lost either way.
//
// Run may be called again after it returns, but not concurrently.
//
// Run returns nil after a shutdown, or the error that stopped the pipeline
// (a Redis key of the wrong type, say). Connection errors are retried, not
// returned. Run returns only after every goroutine it started has exited.
func (p *Processor) Run(ctx context.Context) error {
	hard, stopHard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHard()
	soft, stopSoft := context.WithCancel(ctx)
	defer stopSoft()

	var (
		fatalMu sync.Mutex
		fatal   error
	)
	fail := func(err error) {
		fatalMu.Lock()
		if fatal == nil {
			fatal = err
			p.failing(err)
		}
		fatalMu.Unlock()
		stopSoft()
	}

	finished := make(chan struct{})
	var timer sync.WaitGroup
	timer.Add(1)
	go func() { // turns the soft stop into a hard one after ShutdownTimeout
		defer timer.Done()
		select {
		case <-soft.Done():
		case <-finished:
			return
		}
		p.hardAt.Store(time.Now().Add(p.o.ShutdownTimeout).UnixNano())
		t := time.NewTimer(p.o.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			stopHard()
		case <-finished:
		}
	}()

	lanes := make([]*lane, p.o.Lanes)
	for i := range lanes {
		lanes[i] = newLane(p)
	}
	var supervisors, workers, background sync.WaitGroup
	for _, l := range lanes {
		workers.Add(1)
		go func() {
			if l.run() {
				workers.Done()
			} // else the watchdog's new goroutine runs the lane, and calls Done
		}()
	}
	stopWatch := make(chan struct{})
	var watchdog sync.WaitGroup
	watchdog.Add(1)
	go func() { defer watchdog.Done(); p.watch(lanes, &workers, stopWatch) }()
	background.Add(1)
	go func() { defer background.Done(); p.coordinate(soft, fail) }()
	for _, pt := range p.parts {
		supervisors.Add(1)
		go func() { defer supervisors.Done(); pt.supervise(soft, hard, lanes, fail) }()
	}
	background.Add(1)
	go func() { defer background.Done(); p.janitor(soft) }()
	background.Add(1)
	go func() { defer background.Done(); p.retention(soft) }()
	p.log.Info("pipeline_started", zap.String("stream", p.o.Stream), zap.Int("partitions", p.o.Partitions),
		zap.String("ordering", p.o.Ordering), zap.Int("lanes", p.o.Lanes), zap.Int("batch_size", p.o.BatchSize))

	supervisors.Wait()
	for _, l := range lanes {
		l.close()
	}
	workers.Wait()
	close(stopWatch)
	watchdog.Wait()
	background.Wait()
	close(finished)
	timer.Wait()

	abandoned := 0
	for _, pt := range p.parts {
		abandoned += pt.inflightCount()
	}
	if abandoned > 0 {
		p.log.Warn("shutdown_timeout_passed", zap.Duration("shutdown_timeout", p.o.ShutdownTimeout),
			zap.Int("left_pending", abandoned))
	}
	if hard.Err() == nil { // leaving is a courtesy; never past the hard stop
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		lctx, lcancel := p.bounded(cctx)
		p.leave(lctx)
		lcancel()
		cancel()
	}
	p.log.Info("pipeline_stopped")
	p.hardAt.Store(0)
	fatalMu.Lock()
	defer fatalMu.Unlock()
	return fatal
}

// bounded gives a Redis call a deadline at the hard stop once a stop has
// begun. Cancelling a context does not interrupt a call go-redis is waiting
// on; a deadline does, when the client has ContextTimeoutEnabled. Without a
// stop under way, the client's own timeouts apply.
func (p *Processor) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if at := p.hardAt.Load(); at != 0 {
		return context.WithDeadline(ctx, time.Unix(0, at))
	}
	return ctx, func() {}
}

// wait waits d on the engine's clock or until ctx is done; it reports
// whether the full wait passed.
func (p *Processor) wait(ctx context.Context, d time.Duration) bool {
	t := p.o.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// throttle lets one log line through per interval and counts the rest.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttle) allow(now time.Time, every time.Duration) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.last) < every {
		t.suppressed++
		return false, 0
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	return true, n
}
