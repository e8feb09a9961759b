package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/eddy-streams/eddy/processor"
)

// The seeded input of the analytics exactness tests (issue 11, done-when
// 1 to 3): clicks of users (sessions with gaps, funnels that complete and
// drop) and readings of devices (sensors over a threshold and back,
// devices that go quiet), with out-of-order events within grace, late
// events beyond it and 2% duplicates.
//
// Determinism. A step decides lateness, and the threshold and absence
// steps decide what is due, against the partition's watermark as the step
// runs, and that depends on how far the engine has read (its batches and
// in-flight entries: up to batch_size + max_inflight entries of the
// partition ahead of the event, and after a takeover as far behind as the
// last committed watermark). So the generator keeps every such decision
// far from its border, in units u (genSpec.unit ms), with nominal event
// times advancing about 1 ms per event across all keys:
//
//   - out-of-order events are delivered at most 4u after their time, and
//     grace is 20u: an out-of-order event is 16u inside grace;
//   - late events are delivered 200u to 300u after their time: their
//     windows (at most 120u long) closed 60u or more before;
//   - a device reads every 40u (±u/2): the threshold's for (100u) and
//     keep_firing_for (60u) and the absence's after (100u) fall due 20u
//     from any reading, and a silence is at least 160u;
//   - users and devices are active from the first nominal time on, so the
//     density of events is even (about one per ms in all);
//   - the reference (analytics_reference_test.go) checks that each
//     decision it makes against the watermark comes out the same for any
//     watermark between those genSpec.readAhead entries of the partition
//     before and after the event, which must exceed the engine's read-ahead
//     (max_inflight), so that a change to this generator or to the config
//     cannot quietly make a decision borderline.
//
// Users' events are 1u to 20u apart within a session and sessions 90u to
// 400u apart (the session gap is 60u, max_length 600u: some long sessions
// are split).

// genSpec says what to generate.
type genSpec struct {
	seed       uint64
	events     int   // about this many events, duplicates aside
	unit       int64 // u, ms
	readAhead  int   // entries: no decision may depend on a watermark this far off
	t0         int64 // unix ms of the first nominal time
	partitions int   // per pipeline
	flush      bool  // end each partition with an event far in the future
}

// span is the nominal time the events cover, ms.
func (s genSpec) span() int64 { return int64(s.events) }

// flushAfter is how far after the span the flush events are.
const flushAfter = 10_000_000

// genEvent is one produced event as the reference reads it.
type genEvent struct {
	pipeline string // "clicks" or "readings"
	key      string
	id       string
	t        int64 // event time, unix ms
	data     string
	// clicks
	typ, page string
	amount    int64
	hasAmount bool
	// readings
	value, seq int64
	flush      bool
}

type genQueued struct {
	ev       genEvent
	delivery int64
	order    int
}

// generate makes the events in delivery (production) order.
func generate(s genSpec) []genEvent {
	r := rand.New(rand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15))
	u, span := s.unit, s.span()
	var all []genEvent
	// Devices: 45% of the events.
	period := 40 * u
	perDevice := max(1, int(span/period))
	for d := 0; len(all) < s.events*45/100; d++ {
		all = append(all, genDevice(r, s, d, perDevice)...)
	}
	for c := 0; len(all) < s.events; c++ {
		all = append(all, genUser(r, s, c)...)
	}
	slices.SortStableFunc(all, func(a, b genEvent) int { return cmpInt(a.t, b.t) })
	q := make([]genQueued, 0, len(all)*103/100)
	for i, ev := range all {
		delay := int64(0)
		switch x := r.Float64(); {
		case x < 0.03:
			delay = 1 + r.Int64N(4*u)
		case x < 0.036 && ev.t-s.t0+300*u < span:
			delay = 200*u + r.Int64N(100*u+1)
		}
		q = append(q, genQueued{ev: ev, delivery: ev.t + delay, order: 2 * i})
		if r.Float64() < 0.02 { // the same id sent again, later
			q = append(q, genQueued{ev: ev, delivery: ev.t + delay + r.Int64N(50*u+1), order: 2*i + 1})
		}
	}
	slices.SortStableFunc(q, func(a, b genQueued) int {
		if c := cmpInt(a.delivery, b.delivery); c != 0 {
			return c
		}
		return a.order - b.order
	})
	out := make([]genEvent, 0, len(q)+2*s.partitions)
	for _, e := range q {
		out = append(out, e.ev)
	}
	if s.flush {
		at := s.t0 + span + flushAfter
		for p := 0; p < s.partitions; p++ {
			k := keyOnPartition("flush-c", p, s.partitions)
			out = append(out, clickEvent(fmt.Sprintf("flush-c%d", p), k, at, "flush", "", 0, false))
			k = keyOnPartition("flush-r", p, s.partitions)
			out = append(out, readingEvent(fmt.Sprintf("flush-r%d", p), k, at, 0, 0))
		}
		for i := len(out) - 2*s.partitions; i < len(out); i++ {
			out[i].flush = true
		}
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// keyOnPartition is a key of prefix that routes to partition p.
func keyOnPartition(prefix string, p, n int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if processor.PartitionOf(k, n) == p {
			return k
		}
	}
}

// genDevice makes one device's readings: normal values (30 to 59: below
// clear), hot spells (81 to 99: over the threshold) of 1 to 6 readings,
// each followed by 0 to 3 readings between the bounds (60 to 80), and now
// and then a silence of 3 to 6 missed readings.
func genDevice(r *rand.Rand, s genSpec, d, n int) []genEvent {
	u := s.unit
	key := fmt.Sprintf("d%d", d)
	t := r.Int64N(40 * u)
	hot, warm := 0, 0
	var out []genEvent
	for k := 0; k < n; k++ {
		if t >= s.span() {
			break
		}
		var v int64
		switch {
		case hot > 0:
			hot--
			v = 81 + r.Int64N(19)
			if hot == 0 {
				warm = r.IntN(4)
			}
		case warm > 0:
			warm--
			v = 60 + r.Int64N(21)
		case r.Float64() < 0.1:
			hot = 1 + r.IntN(6)
			v = 81 + r.Int64N(19)
			hot--
			if hot == 0 {
				warm = r.IntN(4)
			}
		default:
			v = 30 + r.Int64N(30)
		}
		jitter := r.Int64N(u+1) - u/2
		out = append(out, readingEvent(fmt.Sprintf("r%d-%d", d, k), key, s.t0+t+jitter, v, int64(k)))
		t += 40 * u
		if r.Float64() < 0.03 {
			t += int64(3+r.IntN(4)) * 40 * u
		}
	}
	return out
}

var genPages = []string{"home", "search", "list", "item-1", "item-2", "item-3", "item-4", "cart", "checkout", "help", "about", "deals"}

// genUser makes one user's sessions: 1 to 15 events 1u to 20u apart (or,
// one in twenty, 40 to 70 events 8u to 16u apart: longer than
// max_length), 90u to 400u between sessions. A session is a shopper's
// (one in three) or a browser's: shoppers add to the cart and buy more.
func genUser(r *rand.Rand, s genSpec, c int) []genEvent {
	u := s.unit
	key := fmt.Sprintf("u%d", c)
	t := -r.Int64N(600 * u) // already active at the start: events before 0 are not kept
	var out []genEvent
	for t < s.span() {
		n, lo, hi := 1+r.IntN(15), u, 20*u
		if r.Float64() < 0.05 {
			n, lo, hi = 40+r.IntN(31), 8*u, 16*u
		}
		shopper := r.Float64() < 0.35
		for i := 0; i < n && t < s.span(); i, t = i+1, t+lo+r.Int64N(hi-lo+1) {
			if t < 0 {
				continue
			}
			typ := "view"
			if i > 0 {
				x := r.Float64()
				cart, buy := 0.05, 0.02
				if shopper {
					cart, buy = 0.25, 0.2
				}
				switch {
				case x < buy:
					typ = "purchase"
				case x < buy+cart:
					typ = "add_to_cart"
				case x < buy+cart+0.2:
					typ = "click"
				}
			}
			amount, has := int64(0), typ == "add_to_cart" || typ == "purchase"
			if has {
				amount = 100 + r.Int64N(9900)
			}
			page := genPages[r.IntN(len(genPages))]
			out = append(out, clickEvent(fmt.Sprintf("c%d-%d", c, len(out)), key, s.t0+t, typ, page, amount, has))
		}
		t += 90*u + r.Int64N(310*u+1)
	}
	return out
}

func clickEvent(id, key string, t int64, typ, page string, amount int64, has bool) genEvent {
	m := map[string]any{"id": id, "user": key, "ts": t, "type": typ}
	if page != "" {
		m["page"] = page
	}
	if has {
		m["amount"] = amount
	}
	b, _ := json.Marshal(m)
	return genEvent{pipeline: "clicks", key: key, id: id, t: t, data: string(b), typ: typ, page: page, amount: amount, hasAmount: has}
}

func readingEvent(id, key string, t, v, seq int64) genEvent {
	b, _ := json.Marshal(map[string]any{"id": id, "device": key, "ts": t, "value": v, "seq": seq})
	return genEvent{pipeline: "readings", key: key, id: id, t: t, data: string(b), value: v, seq: seq}
}
