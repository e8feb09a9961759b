package processor

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// timerLoop fires the partition's due timers while this worker owns it:
// every TimerTick it reads the timers due by the clock and, for event-time
// timers, by the watermark, and dispatches each one not already in flight
// to its key's lane like an entry. A firing commits with its timer's
// removal (commitScript, kind "t"), so a timer fires once even if two
// owners in a row see it due: the second one finds it gone.
//
// The watermark starts where the partition's last owner committed it. On a
// partition that reads nothing for IdleWatermark it advances with the
// clock, so event-time timers still fire when input stops.
func (pt *partition) timerLoop(soft, hard context.Context, lanes []*lane) {
	o := pt.p.o
	for attempt := 1; soft.Err() == nil; attempt++ {
		cctx, cancel := pt.timerCtx(hard)
		w, err := loadWatermark(cctx, pt.p.rdb, pt.meta)
		cancel()
		if err == nil {
			pt.storedWatermark.Store(w)
			pt.raiseWatermark(w)
			break
		}
		pt.logReadError("watermark_load_failed", err)
		if !pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, attempt)) {
			return
		}
	}
	// Timers wait for the takeover of the partition's pending entries: a
	// firing must not overtake an older entry of its key.
	select {
	case <-pt.takenOver:
	case <-soft.Done():
		return
	}
	limit := o.BatchSize
	for soft.Err() == nil {
		now := o.Clock.Now()
		if w, idle := pt.idleWatermark(now); idle {
			pt.raiseWatermark(w)
		}
		wm := pt.watermark.Load()
		if wm <= 0 {
			wm = -1
		}
		// Firings committed from here on are recorded, so that one this
		// read lists just before its commit is not fired again.
		pt.mu.Lock()
		clear(pt.firedSince)
		pt.mu.Unlock()
		cctx, cancel := pt.timerCtx(hard)
		due, err := dueTimers(cctx, pt.p.rdb, pt.timers, now, wm, limit)
		cancel()
		if err != nil {
			pt.logReadError("timers_read_failed", err)
		}
		if pt.fire(hard, lanes, due, now) > 0 && len(due) >= limit {
			continue // more may be due: look again at once
		}
		if !pt.waitTick(soft) {
			return
		}
	}
}

// fire dispatches due timers that are neither in flight nor committed since
// they were read, and returns how many it dispatched.
func (pt *partition) fire(hard context.Context, lanes []*lane, due []dueTimer, now time.Time) int {
	if len(due) == 0 {
		return 0
	}
	var tasks []*task
	defer func() {
		if len(tasks) > 0 && pt.pinState(hard, hard, tasks) {
			for _, t := range tasks {
				pt.handling.Add(1)
				lanes[laneOf(t.m.Key, len(lanes))].push(t)
			}
		}
	}()
	for _, d := range due {
		spec := d.spec
		m := &Message{Stream: pt.stream, Partition: pt.n, Key: spec.Key, Timer: &spec, Attempt: 1, received: now, ks: pt.ks, pt: pt}
		t := &task{m: m, part: pt, ctx: hard, results: pt.results}
		id := t.inflightID()
		pt.mu.Lock()
		_, busy := pt.inflight[id]
		_, fired := pt.firedSince[d.member]
		pt.mu.Unlock()
		if busy || fired {
			continue
		}
		if !pt.sem.TryAcquire(1) {
			break
		}
		pt.mu.Lock()
		pt.inflight[id] = time.Now()
		pt.mu.Unlock()
		if d.err != nil {
			// Its data is gone or broken (edited by hand, evicted): it
			// cannot fire; it is removed and dead-lettered with what is
			// known of it, rather than block the timers behind it.
			if ok, n := pt.readLog.allow(time.Now(), 5*time.Second); ok {
				pt.log.Error("timer_malformed", zap.String("timer", d.member), zap.Error(d.err), zap.Int("suppressed", n))
			}
			t.deadLetter(ReasonInvalid, d.err)
			select {
			case pt.results <- t:
			case <-hard.Done():
			}
			continue
		}
		tasks = append(tasks, t)
	}
	return len(tasks)
}

// timerCtx bounds one Redis call of the timer loop: by the hard stop once
// a stop has begun, and by a second in any case, so that a call begun
// before a stop never holds the stop up for the client's read timeout.
func (pt *partition) timerCtx(hard context.Context) (context.Context, context.CancelFunc) {
	cctx, cancel := pt.p.bounded(hard)
	tctx, tcancel := context.WithTimeout(cctx, time.Second)
	return tctx, func() { tcancel(); cancel() }
}

// Quiet reports whether the processor has nothing in hand: no entry or
// timer firing of its partitions dispatched and not yet committed, and no
// timer due, by the clock or by the watermark as the next look for due
// timers will see it. It does not look at entries not yet read (the
// Inspector's Lag and Pending do). With a manual Clock, a test (or `eddy
// test`) that moves the clock waits for Quiet, and for no lag and nothing
// pending, to know that what the clock made due has been handled.
func (p *Processor) Quiet(ctx context.Context) (bool, error) {
	now := p.o.Clock.Now()
	for _, pt := range p.parts {
		if pt.inflightCount() > 0 {
			return false, nil
		}
		wm := pt.watermark.Load()
		if w, idle := pt.idleWatermark(now); idle {
			wm = max(wm, w)
		}
		if wm <= 0 {
			wm = -1
		}
		due, err := dueTimers(ctx, p.rdb, pt.timers, now, wm, 1)
		if err != nil {
			return false, fmt.Errorf("timers of %s: %w", pt.stream, err)
		}
		if len(due) > 0 {
			return false, nil
		}
	}
	return true, nil
}
