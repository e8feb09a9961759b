package processor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// supervise runs the partition's sessions until soft is done. With
// ordering "none" that is one session for the whole Run. With "key" it
// waits until the assignment gives the partition to this worker, takes the
// lease, and runs a session until the lease is lost, the assignment moves
// the partition elsewhere (it drains, commits and releases the lease at
// once, so the next owner need not wait for it to expire) or the Run stops.
func (pt *partition) supervise(soft, hard context.Context, lanes []*lane, fail func(error)) {
	o := pt.p.o
	if o.Ordering == OrderingNone {
		pt.session(soft, hard, lanes, fail, "")
		return
	}
	owned := false // by this process yet: until then a same-name holder is an earlier incarnation
	for soft.Err() == nil {
		if !pt.desired.Load() {
			pt.idle(soft)
			continue
		}
		cctx, cancel := pt.p.bounded(soft)
		fence, holder, err := acquireLease(cctx, pt.p.rdb, pt.lease, pt.token, o.Consumer, pt.p.instance, o.SessionTimeout, !owned)
		cancel()
		if err != nil {
			if isNoPerm(err) { // waiting cannot fix it: stop, and say why
				fail(fmt.Errorf("partition %d: acquire lease: %w", pt.n, err))
				return
			}
			pt.logReadError("lease_acquire_failed", err)
			pt.idle(soft)
			continue
		}
		if fence == "" { // still held: its owner releases it or it expires
			if name, _, _ := strings.Cut(holder, "/"); name == o.Consumer && owned {
				if ok, n := pt.readLog.allow(time.Now(), 10*time.Second); ok {
					pt.log.Error("duplicate_consumer_name", zap.String("holder", holder), zap.Int("suppressed", n),
						zap.String("note", "another live process uses this consumer name; give each worker its own --consumer"))
				}
			}
			pt.idle(soft)
			continue
		}
		owned = true
		pt.log.Info("partition_acquired", zap.String("fence", fence))
		if ob, ok := o.Observer.(OwnershipObserver); ok {
			ob.Owned(o.Pipeline, pt.n, true)
		}
		pt.session(soft, hard, lanes, fail, fence)
		if ob, ok := o.Observer.(OwnershipObserver); ok {
			ob.Owned(o.Pipeline, pt.n, false)
		}
	}
}

// idle waits for a change of assignment, a heartbeat or the stop.
func (pt *partition) idle(soft context.Context) {
	t := pt.p.o.Clock.NewTimer(pt.p.o.Heartbeat)
	defer t.Stop()
	select {
	case <-soft.Done():
	case <-pt.wake:
	case <-t.C():
	}
}

// session reads and commits the partition until parent soft is done or,
// with a fence, the lease is lost or the partition is assigned elsewhere.
// A soft end drains: reading stops, entries in flight are finished and
// committed for at most ShutdownTimeout, then the lease is released.
func (pt *partition) session(parentSoft, parentHard context.Context, lanes []*lane, fail func(error), fence string) {
	defer func() { // after stopHard below: the lanes drop this session's parked tasks
		for _, l := range lanes {
			l.purge()
		}
	}()
	soft, stopSoft := context.WithCancel(parentSoft)
	defer stopSoft()
	hard, stopHard := context.WithCancel(parentHard)
	defer stopHard()
	var lostOnce sync.Once
	lost := make(chan struct{})
	pt.start(fence, func(where string) {
		lostOnce.Do(func() {
			pt.log.Warn("partition_lease_lost", zap.String("fence", fence), zap.String("noticed_at", where))
			if ob, ok := pt.p.o.Observer.(OwnershipObserver); ok {
				ob.LeaseLost(pt.p.o.Pipeline, pt.n)
			}
			close(lost)
			stopSoft()
			stopHard()
		})
	})
	readerDone, committerDone := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	if fence != "" {
		wg.Add(1)
		go func() { defer wg.Done(); pt.timerLoop(soft, hard, lanes) }()
	}
	wg.Add(3)
	go func() { defer wg.Done(); defer close(readerDone); pt.readLoop(soft, hard, lanes, fail) }()
	go func() { defer wg.Done(); defer close(committerDone); pt.commitLoop(hard, readerDone, fail) }()
	go func() { defer wg.Done(); pt.tend(soft, hard, stopSoft, stopHard, committerDone) }()
	wg.Wait()

	select {
	case <-lost:
		return
	default:
	}
	if fence == "" || parentHard.Err() != nil { // past the hard stop the lease just expires
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parentHard), 2*time.Second)
	defer cancel()
	bctx, bcancel := pt.p.bounded(ctx)
	defer bcancel()
	if err := releaseLease(bctx, pt.p.rdb, pt.lease, fence); err != nil {
		pt.log.Warn("lease_release_failed", zap.Error(err))
		return
	}
	pt.log.Info("partition_released", zap.String("fence", fence), zap.Int("left_pending", pt.inflightCount()))
}

// tend keeps a session going until its committer is done: it renews the
// lease every Heartbeat (losing it ends the session at once), drains the
// session when the partition is assigned elsewhere, and turns a drain into
// a hard stop after ShutdownTimeout. With ordering "none" it keeps the
// entries in flight from looking idle instead (see keepAlive).
func (pt *partition) tend(soft, hard context.Context, stopSoft, stopHard func(), committerDone <-chan struct{}) {
	o := pt.p.o
	beat := o.Heartbeat
	if pt.fence == "" {
		beat = max(o.ReclaimAfter/3, 10*time.Millisecond)
	}
	clock := o.Clock
	tick := clock.NewTimer(beat)
	defer func() { tick.Stop() }()
	var drain <-chan time.Time
	softDone := soft.Done()
	renewed := clock.Now()
	for {
		select {
		case <-committerDone:
			return
		case <-hard.Done():
			return
		case <-softDone:
			softDone = nil
			t := time.NewTimer(o.ShutdownTimeout)
			defer t.Stop()
			drain = t.C
		case <-drain:
			pt.log.Warn("drain_timeout_passed", zap.Int("left_pending", pt.inflightCount()))
			stopHard()
			return
		case <-tick.C():
			tick = clock.NewTimer(beat)
			if pt.fence == "" {
				pt.touchInflight(hard, beat)
				continue
			}
			sent := clock.Now() // the lease runs from when Redis renews it, at or after this
			cctx, cancel := pt.p.bounded(hard)
			ok, err := renewLease(cctx, pt.p.rdb, pt.lease, pt.fence, o.SessionTimeout)
			cancel()
			switch {
			case err == nil && !ok:
				pt.lose("renew")
				return
			case err == nil:
				renewed = sent
			case clock.Now().Sub(renewed) >= o.SessionTimeout:
				// The lease has surely expired: another worker may own it.
				pt.lose("renew_timeout")
				return
			default:
				pt.logReadError("lease_renew_failed", err)
			}
			if !pt.desired.Load() && soft.Err() == nil {
				pt.log.Info("partition_reassigned_draining")
				stopSoft()
			}
		}
	}
}

// coordinate keeps this worker a member of the group (a sorted set scored
// by membership expiry, renewed every Heartbeat), reads the live members
// and marks which partitions the shared assignment gives to this worker.
// On its way out it leaves the set, so the others rebalance at once. A
// membership refused with NOPERM fails the Run: without it the worker
// would own nothing and wait forever.
func (p *Processor) coordinate(soft context.Context, fail func(error)) {
	o := p.o
	key := membersKey(o.Stream, o.Group)
	var last string
	var logs throttle
	round := func() {
		ctx, cancel := p.bounded(soft)
		defer cancel()
		members, err := heartbeatMember(ctx, p.rdb, key, o.Consumer, o.SessionTimeout, 3*o.Heartbeat)
		if isNoPerm(err) {
			fail(fmt.Errorf("membership of consumer %s in %s: %w", o.Consumer, key, err))
			return
		}
		if err != nil {
			if ok, n := logs.allow(time.Now(), 10*time.Second); ok && soft.Err() == nil {
				p.log.Warn("membership_failed", zap.Error(err), zap.Int("suppressed", n))
			}
			return
		}
		mine := len(p.parts) // with ordering none every worker reads every partition
		if o.Ordering == OrderingKey {
			mine = p.assignPartitions(members)
		}
		if s := fmt.Sprint(members); s != last {
			last = s
			p.log.Info("membership_changed", zap.Strings("members", members), zap.Int("assigned_partitions", mine))
		}
	}
	round()
	for {
		t := o.Clock.NewTimer(o.Heartbeat)
		select {
		case <-soft.Done():
			t.Stop()
			for _, pt := range p.parts {
				pt.desired.Store(false)
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(soft), time.Second)
			bctx, bcancel := p.bounded(ctx)
			_ = p.rdb.ZRem(bctx, key, o.Consumer).Err()
			bcancel()
			cancel()
			return
		case <-t.C():
			round()
		}
	}
}

// assignPartitions marks which partitions the shared assignment gives
// this worker, waking those whose assignment changed, and returns how many.
func (p *Processor) assignPartitions(members []string) int {
	owners := assign(members, len(p.parts))
	mine := 0
	for i, pt := range p.parts {
		want := owners[i] == p.o.Consumer
		if pt.desired.Swap(want) != want {
			select {
			case pt.wake <- struct{}{}:
			default:
			}
		}
		if want {
			mine++
		}
	}
	return mine
}

// acquireLease takes the lease if free; it returns the new fence, or "" and
// the current holder's fence.
func acquireLease(ctx context.Context, rdb redis.UniversalClient, lease, token, consumer, instance string, ttl time.Duration, replaceSameName bool) (fence, holder string, err error) {
	replace := "0"
	if replaceSameName {
		replace = "1"
	}
	v, err := leaseAcquireScript.Run(ctx, rdb, []string{lease, token}, consumer, instance, ttl.Milliseconds(), replace).Slice()
	if err != nil {
		return "", "", err
	}
	if len(v) != 2 {
		return "", "", fmt.Errorf("lease acquire: unexpected reply %v", v)
	}
	got, _ := v[0].(int64)
	s, _ := v[1].(string)
	if got == 1 {
		return s, "", nil
	}
	return "", s, nil
}

func renewLease(ctx context.Context, rdb redis.UniversalClient, lease, fence string, ttl time.Duration) (bool, error) {
	n, err := leaseRenewScript.Run(ctx, rdb, []string{lease}, fence, ttl.Milliseconds()).Int()
	return n == 1, err
}

func releaseLease(ctx context.Context, rdb redis.UniversalClient, lease, fence string) error {
	return leaseReleaseScript.Run(ctx, rdb, []string{lease}, fence).Err()
}

// heartbeatMember renews consumer's membership, drops expired members and
// returns those that renewed within the last suspect, in one round trip, by
// Redis's clock (membershipScript).
//
// Two clocks: a member's leases last ttl after its last renewal (that is
// what keeps ownership safe), but a member silent for suspect (a few
// heartbeats) is left out of the assignment at once, so that a second
// failure soon after a first does not hand partitions to a worker that is
// already dead, doubling the time they go unowned.
func heartbeatMember(ctx context.Context, rdb redis.UniversalClient, key, consumer string, ttl, suspect time.Duration) ([]string, error) {
	return membershipScript.Run(ctx, rdb, []string{key}, consumer, ttl.Milliseconds(), suspect.Milliseconds()).StringSlice()
}
