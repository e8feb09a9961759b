package processor

import (
	"context"
	"time"
)

// The partition's event-time watermark: raised by the event times it reads
// (less AllowedLateness), or by the clock once it has read nothing for
// IdleWatermark; it fires the event-time timers (firing.go) and each entry
// is handed the watermark as of its place in the stream (dispatch).

// sawEventTime raises the partition's highest event time, and with it the
// watermark.
func (pt *partition) sawEventTime(ms int64) {
	for {
		cur := pt.maxEventTime.Load()
		if ms <= cur {
			return
		}
		if pt.maxEventTime.CompareAndSwap(cur, ms) {
			break
		}
	}
	pt.raiseWatermark(ms - pt.p.o.AllowedLateness.Milliseconds())
	select {
	case pt.eventTimeMoved <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// raiseWatermark sets the watermark to w unless it is higher already.
func (pt *partition) raiseWatermark(w int64) {
	for {
		cur := pt.watermark.Load()
		if w <= cur || pt.watermark.CompareAndSwap(cur, w) {
			return
		}
	}
}

// waitTick waits for the next look for due timers: a TimerTick, or less
// when a read raises the partition's event time (so that an event-time
// timer fires as soon as the watermark passes it). false: soft is done.
func (pt *partition) waitTick(soft context.Context) bool {
	t := pt.p.o.Clock.NewTimer(pt.p.o.TimerTick)
	defer t.Stop()
	select {
	case <-t.C():
	case <-pt.eventTimeMoved:
	case <-soft.Done():
		return false
	}
	return true
}

// idleWatermark is the watermark the clock gives a partition that has read
// nothing for IdleWatermark, and whether it has been idle that long.
func (pt *partition) idleWatermark(now time.Time) (int64, bool) {
	o := pt.p.o
	if o.IdleWatermark > 0 && now.Sub(time.Unix(0, pt.lastRead.Load())) >= o.IdleWatermark {
		return now.UnixMilli() - o.AllowedLateness.Milliseconds(), true
	}
	return 0, false
}
