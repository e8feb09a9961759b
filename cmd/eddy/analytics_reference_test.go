package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// The reference of the analytics exactness tests: plain Go over the
// generated events, written from the steps' documented rules (the doc
// comments of pipelines/steps_window.go, steps_session.go,
// steps_funnel.go, steps_threshold.go and steps_absence.go), sharing no
// code with them. It computes every result the test's config
// (analyticsConfig) must emit, by id.
//
// The watermark of a partition is modelled as the highest event time
// delivered to it so far (allowed_lateness 0). The engine's own watermark
// is ahead of that by what it has read ahead (at most max_inflight
// entries), or behind it while a batch is being dispatched or after a
// takeover; every decision taken against the watermark is checked to come
// out the same for any watermark between that of spec.readAhead entries
// before the event and that of spec.readAhead entries after it, in its
// partition (see analytics_gen_test.go); one that does not is a problem of
// the input, reported by the test.

// Durations of the test config, in units u (genSpec.unit).
const (
	refGrace      = 20
	refWindow     = 60  // cw and rw: tumbling
	refHopSize    = 120 // ch: hopping, hop refWindow
	refGap        = 60  // cs
	refMaxLength  = 600 // cs
	refMaxPages   = 5   // cs
	refWithin     = 300 // cf, cg
	refFor        = 100 // rt
	refKeepFiring = 60  // rt
	refAfter      = 100 // ra
	refHot        = 80  // rt: when value > 80
	refCool       = 60  // rt: clear value < 60
)

// refResult is one expected result.
type refResult struct {
	stream, key, kind string
	data              map[string]any
	// due is when a timer emits it (unix ms, event time); timed is set when
	// only a timer can (no later event of its partition came by then).
	due       int64
	timed     bool
	pipeline  string
	partition int
}

// reference computes the expected results of events.
type reference struct {
	s       genSpec
	u       int64
	results map[string]*refResult
	// problems are decisions too close to the watermark (the input breaks
	// the generator's margins) and results emitted twice by the reference.
	problems []string
	wm       map[string][]int64 // pipeline → partition → watermark
	lo, hi   []int64            // per event: the lowest and highest watermark the engine may have
	seen     map[string]bool    // pipeline/id
	late     map[string]int     // pipeline → late events dropped
	dups     int
	seq      int // arrivals of pages, for ties

	cw, ch, rw map[string]map[int64]*refWin // key → start → window
	cs         map[string][]*refSession
	cf, cg     map[string][]int64 // key → times of the funnel's steps
	rt         map[string]*refAlert
	ra         map[string]*refSilence
}

func newReference(s genSpec) *reference {
	r := &reference{s: s, u: s.unit, results: map[string]*refResult{}, wm: map[string][]int64{},
		seen: map[string]bool{}, late: map[string]int{},
		cw: map[string]map[int64]*refWin{}, ch: map[string]map[int64]*refWin{}, rw: map[string]map[int64]*refWin{},
		cs: map[string][]*refSession{}, cf: map[string][]int64{}, cg: map[string][]int64{},
		rt: map[string]*refAlert{}, ra: map[string]*refSilence{}}
	for _, p := range []string{"clicks", "readings"} {
		r.wm[p] = make([]int64, s.partitions)
		for i := range r.wm[p] {
			r.wm[p][i] = math.MinInt64
		}
	}
	return r
}

// evCtx is what the steps see of one event.
type evCtx struct {
	ev     genEvent
	p      int
	w      int64 // the watermark
	lo, hi int64 // the range the engine's may be in
}

func isoMS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// check records a problem when the decision "border <= watermark" is not
// the same for every watermark the engine may have.
func (r *reference) check(what string, c evCtx, border int64) {
	if (border <= c.lo) != (border <= c.hi) && len(r.problems) < 50 {
		r.problems = append(r.problems, fmt.Sprintf("%s: event %s (t %d): the border %d lies between the watermarks %d and %d (read-ahead %d entries)",
			what, c.ev.id, c.ev.t, border, c.lo, c.hi, r.s.readAhead))
	}
}

// bounds sets r.lo and r.hi: for each event, the watermark of its
// partition readAhead entries before it and after it (the flush events,
// produced once all else is handled, aside).
func (r *reference) bounds(events []genEvent) {
	r.lo, r.hi = make([]int64, len(events)), make([]int64, len(events))
	type entry struct {
		i int
		t int64
	}
	parts := map[string][]entry{}
	for i, ev := range events {
		if ev.flush {
			r.lo[i], r.hi[i] = ev.t, ev.t
			continue
		}
		k := fmt.Sprintf("%s/%d", ev.pipeline, processor.PartitionOf(ev.key, r.s.partitions))
		parts[k] = append(parts[k], entry{i, ev.t})
	}
	for _, es := range parts {
		pm := make([]int64, len(es))
		for j, e := range es {
			pm[j] = e.t
			if j > 0 {
				pm[j] = max(pm[j], pm[j-1])
			}
		}
		for j, e := range es {
			r.lo[e.i] = math.MinInt64
			if j >= r.s.readAhead {
				r.lo[e.i] = pm[j-r.s.readAhead]
			}
			r.hi[e.i] = pm[min(len(es)-1, j+r.s.readAhead)]
		}
	}
}

// run takes the events in delivery order and closes what is due at the
// end: by the final watermarks, or with all by the end of time.
func (r *reference) run(events []genEvent, all bool) {
	r.bounds(events)
	for i, ev := range events {
		r.add(i, ev)
	}
	r.finish(all)
}

func (r *reference) emit(c evCtx, stream, kind, id string, data map[string]any, due int64) {
	if _, dup := r.results[id]; dup {
		r.problems = append(r.problems, "the reference emits "+id+" twice")
	}
	r.results[id] = &refResult{stream: stream, key: c.ev.key, kind: kind, data: data, due: due, pipeline: c.ev.pipeline, partition: c.p}
}

// add takes the next delivered event, the i-th.
func (r *reference) add(i int, ev genEvent) {
	p := processor.PartitionOf(ev.key, r.s.partitions)
	w := &r.wm[ev.pipeline][p]
	*w = max(*w, ev.t)
	if r.seen[ev.pipeline+"/"+ev.id] {
		r.dups++
		return
	}
	r.seen[ev.pipeline+"/"+ev.id] = true
	c := evCtx{ev: ev, p: p, w: *w, lo: r.lo[i], hi: r.hi[i]}
	if ev.pipeline == "clicks" {
		if !r.window(c, r.cw, "cw", refWindow, refWindow) || !r.window(c, r.ch, "ch", refHopSize, refWindow) {
			r.late["clicks"]++
			return
		}
		if !r.session(c) {
			return
		}
		r.funnel(c, "cf", r.cf, false)
		r.funnel(c, "cg", r.cg, true)
		return
	}
	if !r.window(c, r.rw, "rw", refWindow, refWindow) {
		r.late["readings"]++
		return
	}
	r.threshold(c)
	r.absence(c)
}

// finish closes what the final watermarks (or, with all, the end of time)
// have made due, as the timers do.
func (r *reference) finish(all bool) {
	final := func(pl string, key string) (int64, int64, int) {
		p := processor.PartitionOf(key, r.s.partitions)
		if all {
			return math.MaxInt64 / 4, r.wm[pl][p], p
		}
		return r.wm[pl][p], r.wm[pl][p], p
	}
	for _, name := range []string{"cw", "ch", "rw"} {
		m, pl := map[string]map[string]map[int64]*refWin{"cw": r.cw, "ch": r.ch, "rw": r.rw}[name], "clicks"
		if name == "rw" {
			pl = "readings"
		}
		for key, ws := range m {
			w, last, p := final(pl, key)
			for _, win := range ws {
				if due := win.end + refGrace*r.u; due <= w {
					r.closeWindow(evCtx{ev: genEvent{pipeline: pl, key: key}, p: p}, name, win, due, due > last)
				}
			}
		}
	}
	for key, open := range r.cs {
		w, last, p := final("clicks", key)
		c := evCtx{ev: genEvent{pipeline: "clicks", key: key}, p: p, w: w}
		for _, o := range open {
			if due := r.sessionClose(o); due <= w {
				r.emitSession(c, o, due > last)
			}
		}
	}
	for name, m := range map[string]map[string][]int64{"cf": r.cf, "cg": r.cg} {
		for key, times := range m {
			w, last, p := final("clicks", key)
			c := evCtx{ev: genEvent{pipeline: "clicks", key: key}, p: p, w: w}
			if due := times[0] + (refWithin+refGrace)*r.u; due <= w {
				r.funnelResult(c, name, times, "dropped", "timeout", due, due > last)
			}
		}
	}
	for key, a := range r.rt {
		w, last, p := final("readings", key)
		c := evCtx{ev: genEvent{pipeline: "readings", key: key}, p: p, w: w}
		for a != nil {
			due := a.due(r.u)
			if due < 0 || due > w {
				break
			}
			a = r.advance(c, a, w, due > last)
		}
	}
	for key, a := range r.ra {
		w, last, p := final("readings", key)
		c := evCtx{ev: genEvent{pipeline: "readings", key: key}, p: p, w: w}
		if due := a.last + refAfter*r.u; a.raised == 0 && due <= w {
			r.raiseSilence(c, a, due > last)
		}
	}
}

// refWin is one open window of a key.
type refWin struct {
	start, end int64
	n          int64
	// amount (cw, ch) or value (rw): integers
	vn, sum, lo, hi int64
	pages           map[string]bool
	first, last     string
	firstT, lastT   int64
	pn              int64
}

// window adds the event to its windows of size (ms = u × size) starting
// every hop; false when every one has closed (the event is late).
func (r *reference) window(c evCtx, m map[string]map[int64]*refWin, name string, size, hop int64) bool {
	size, hop = size*r.u, hop*r.u
	t := c.ev.t
	lastStart := floorDivInt(t, hop) * hop
	took := false
	for start := lastStart - size + hop; start <= lastStart; start += hop {
		end := start + size
		r.check(name+" window close", c, end+refGrace*r.u)
		if end+refGrace*r.u <= c.w {
			continue
		}
		ws := m[c.ev.key]
		if ws == nil {
			ws = map[int64]*refWin{}
			m[c.ev.key] = ws
		}
		w := ws[start]
		if w == nil {
			w = &refWin{start: start, end: end, pages: map[string]bool{}}
			ws[start] = w
		}
		w.n++
		v, has := c.ev.amount, c.ev.hasAmount
		if c.ev.pipeline == "readings" {
			v, has = c.ev.value, true
		}
		if has {
			if w.vn == 0 || v < w.lo {
				w.lo = v
			}
			if w.vn == 0 || v > w.hi {
				w.hi = v
			}
			w.sum += v
			w.vn++
		}
		if c.ev.page != "" {
			w.pages[c.ev.page] = true
			if w.pn == 0 || t < w.firstT {
				w.first, w.firstT = c.ev.page, t
			}
			if w.pn == 0 || t >= w.lastT {
				w.last, w.lastT = c.ev.page, t
			}
			w.pn++
		}
		took = true
	}
	return took
}

func floorDivInt(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (r *reference) closeWindow(c evCtx, name string, w *refWin, due int64, timed bool) {
	d := map[string]any{"start": w.start, "end": w.end, "count": w.n, "key": c.ev.key}
	num := func(x int64) any {
		if w.vn == 0 {
			return nil
		}
		return float64(x)
	}
	var sum, avg any
	if w.vn > 0 {
		sum, avg = w.sum, float64(w.sum)/float64(w.vn)
	}
	switch name {
	case "cw":
		d["views"], d["amount_sum"], d["amount_min"], d["amount_max"], d["amount_avg"] = w.n, sum, num(w.lo), num(w.hi), avg
		d["pages"] = int64(len(w.pages))
	case "ch":
		d["events"], d["priced"] = w.n, w.vn
		d["first_page"], d["last_page"] = nil, nil
		if w.pn > 0 {
			d["first_page"], d["last_page"] = w.first, w.last
		}
	case "rw":
		d["readings"], d["lo"], d["hi"], d["mean"], d["total"] = w.n, num(w.lo), num(w.hi), avg, sum
	}
	id := fmt.Sprintf("%s:%s:%d:%d", name, c.ev.key, w.start, w.end)
	r.emit(c, "out:"+name, "window", id, d, due)
	r.results[id].timed = timed
}

// refSession is an open session of the session step.
type refSession struct {
	start, last, events int64
	entry, exit         *refPage
	pages               map[string]*refPage // page → first seen
	converted           bool
}

type refPage struct {
	page string
	at   int64
	seq  int // arrival, to break ties
}

func (r *reference) sessionReach(o *refSession) int64 {
	return min(o.last+refGap*r.u, o.start+refMaxLength*r.u)
}

func (r *reference) sessionClose(o *refSession) int64 { return r.sessionReach(o) + refGrace*r.u }

func (r *reference) accepts(o *refSession, t int64) bool {
	if t >= o.start {
		return t < r.sessionReach(o)
	}
	return o.start-t < refGap*r.u && o.last-t < refMaxLength*r.u
}

// session takes the event into the key's sessions; false when it is late.
func (r *reference) session(c evCtx) bool {
	t, key := c.ev.t, c.ev.key
	r.check("cs lateness", c, t+refGrace*r.u+1)
	if t+refGrace*r.u < c.w {
		r.late["cs"]++
		return false
	}
	open := r.cs[key][:0:0]
	for _, o := range r.cs[key] {
		if due := r.sessionClose(o); due <= c.w {
			r.emitSession(c, o, false)
			continue
		}
		open = append(open, o)
	}
	base := -1
	for i := 0; i < len(open); i++ {
		if !r.accepts(open[i], t) {
			continue
		}
		if base < 0 {
			base = i
			continue
		}
		b, o := open[base], open[i]
		if max(b.last, o.last, t)-min(b.start, o.start, t) >= refMaxLength*r.u {
			break
		}
		b.start, b.last = min(b.start, o.start), max(b.last, o.last)
		b.events += o.events
		b.converted = b.converted || o.converted
		if o.entry != nil && (b.entry == nil || o.entry.at < b.entry.at) {
			b.entry = o.entry
		}
		if o.exit != nil && (b.exit == nil || o.exit.at > b.exit.at) {
			b.exit = o.exit
		}
		for pg, at := range o.pages {
			if cur := b.pages[pg]; cur == nil || at.at < cur.at {
				b.pages[pg] = at
			}
		}
		open = append(open[:i], open[i+1:]...)
		i--
	}
	if base < 0 {
		open = append(open, &refSession{start: t, last: t, pages: map[string]*refPage{}})
		base = len(open) - 1
	}
	o := open[base]
	o.start, o.last = min(o.start, t), max(o.last, t)
	o.events++
	o.converted = o.converted || c.ev.typ == "purchase"
	if c.ev.page != "" {
		r.seq++
		pg := &refPage{page: c.ev.page, at: t, seq: r.seq}
		if o.entry == nil || t < o.entry.at {
			o.entry = pg
		}
		if o.exit == nil || t >= o.exit.at {
			o.exit = pg
		}
		if cur := o.pages[pg.page]; cur == nil || t < cur.at {
			o.pages[pg.page] = pg
		}
	}
	sort.SliceStable(open, func(i, j int) bool { return open[i].start < open[j].start })
	r.cs[key] = open
	return true
}

func (r *reference) emitSession(c evCtx, o *refSession, timed bool) {
	ps := make([]*refPage, 0, len(o.pages))
	for _, p := range o.pages {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].at != ps[j].at {
			return ps[i].at < ps[j].at
		}
		return ps[i].seq < ps[j].seq
	})
	pages := []string{}
	for i := 0; i < len(ps) && i < refMaxPages; i++ {
		pages = append(pages, ps[i].page)
	}
	d := map[string]any{"start": o.start, "end": o.last, "start_iso": isoMS(o.start), "end_iso": isoMS(o.last),
		"duration_ms": o.last - o.start, "events": o.events, "entry_page": nil, "exit_page": nil,
		"pages": pages, "pages_truncated": len(ps) > refMaxPages, "converted": o.converted}
	if o.entry != nil {
		d["entry_page"] = o.entry.page
	}
	if o.exit != nil {
		d["exit_page"] = o.exit.page
	}
	id := fmt.Sprintf("cs:%s:%d", c.ev.key, o.start)
	r.emit(c, "out:cs", "session", id, d, r.sessionClose(o))
	r.results[id].timed = timed
}

// refFunnelSteps are the steps of each funnel: cf view, cart, buy
// (relaxed); cg cart, buy (strict).
var refFunnelSteps = map[string][]struct{ name, typ string }{
	"cf": {{"view", "view"}, {"cart", "add_to_cart"}, {"buy", "purchase"}},
	"cg": {{"cart", "add_to_cart"}, {"buy", "purchase"}},
}

// funnel moves the key's funnel of step name (cf relaxed, cg strict).
func (r *reference) funnel(c evCtx, name string, m map[string][]int64, strict bool) {
	t, key := c.ev.t, c.ev.key
	r.check(name+" lateness", c, t+refGrace*r.u+1)
	if t+refGrace*r.u < c.w {
		r.late[name]++
		return
	}
	f := m[key]
	steps := refFunnelSteps[name]
	meets := func(i int) bool { return c.ev.typ == steps[i].typ }
	if f != nil {
		deadline := f[0] + refWithin*r.u
		if deadline+refGrace*r.u <= c.w || t >= deadline {
			r.funnelResult(c, name, f, "dropped", "timeout", deadline+refGrace*r.u, false)
			f = nil
			delete(m, key)
		}
	}
	if f != nil {
		if t < f[len(f)-1] {
			return
		}
		next := len(f)
		if meets(next) {
			f = append(f, t)
			if len(f) == len(steps) {
				r.funnelResult(c, name, f, "completed", "", -1, false)
				delete(m, key)
				return
			}
			r.funnelResult(c, name, f, "progress", "", -1, false)
			m[key] = f
			return
		}
		if !strict {
			return
		}
		other := false
		for i := range steps {
			other = other || i != next && meets(i)
		}
		if !other {
			return
		}
		r.funnelResult(c, name, f, "dropped", "order", -1, false)
		delete(m, key)
	}
	if !meets(0) {
		return
	}
	f = []int64{t}
	r.funnelResult(c, name, f, "progress", "", -1, false)
	m[key] = f
}

func (r *reference) funnelResult(c evCtx, name string, f []int64, status, reason string, due int64, timed bool) {
	idx := len(f) - 1
	steps := make([]any, len(f))
	for i, at := range f {
		steps[i] = map[string]any{"name": refFunnelSteps[name][i].name, "at": at}
	}
	d := map[string]any{"status": status, "step": map[string]any{"name": refFunnelSteps[name][idx].name, "index": idx},
		"steps": steps, "started": f[0], "started_iso": isoMS(f[0]), "duration_ms": f[idx] - f[0],
		"deadline": f[0] + refWithin*r.u}
	if reason != "" {
		d["reason"] = reason
	}
	id := fmt.Sprintf("%s:%s:%d:%s", name, c.ev.key, f[0], status)
	if status == "progress" {
		id += fmt.Sprintf(":%d", idx)
	}
	r.emit(c, "out:"+name, "funnel", id, d, due)
	r.results[id].timed = timed
}

// refAlert is a device's threshold alert: pending, raised or clearing.
type refAlert struct {
	phase                string
	since, raised, clear int64
	latest               int64
	first, last, cleared map[string]any
}

func (a *refAlert) due(u int64) int64 {
	switch a.phase {
	case "pending":
		return a.since + refFor*u
	case "clearing":
		return a.clear + refKeepFiring*u
	}
	return -1
}

func refValues(ev genEvent) map[string]any { return map[string]any{"value": ev.value, "seq": ev.seq} }

// advance raises or resolves a if due by now; nil when resolved.
func (r *reference) advance(c evCtx, a *refAlert, now int64, timed bool) *refAlert {
	due := a.due(r.u)
	if due < 0 || due > now {
		return a
	}
	d := map[string]any{"since": a.since, "since_iso": isoMS(a.since), "first": a.first, "last": a.last}
	if a.phase == "pending" {
		a.phase, a.raised, a.latest = "raised", due, max(a.latest, due)
		d["raised_at"], d["raised_at_iso"] = a.raised, isoMS(a.raised)
		id := fmt.Sprintf("rt:%s:%d:alert", c.ev.key, a.since)
		r.emit(c, "out:rt", "alert", id, d, due)
		r.results[id].timed = timed
		return a
	}
	d["raised_at"], d["raised_at_iso"] = a.raised, isoMS(a.raised)
	d["cleared_at"], d["cleared_at_iso"] = a.clear, isoMS(a.clear)
	d["resolved_at"], d["resolved_at_iso"] = due, isoMS(due)
	d["duration_ms"] = due - a.raised
	d["clear"] = a.cleared
	id := fmt.Sprintf("rt:%s:%d:resolve", c.ev.key, a.since)
	r.emit(c, "out:rt", "resolve", id, d, due)
	r.results[id].timed = timed
	return nil
}

func (r *reference) threshold(c evCtx) {
	t, key := c.ev.t, c.ev.key
	a := r.rt[key]
	now := max(c.w, t)
	step := func() {
		if a != nil {
			if due := a.due(r.u); due > t {
				r.check("rt due", c, due)
			}
			a = r.advance(c, a, now, false)
		}
	}
	step()
	defer func() {
		if a == nil {
			delete(r.rt, key)
		} else {
			r.rt[key] = a
		}
	}()
	if a != nil && t < a.latest {
		r.late["rt"]++
		return
	}
	clears := c.ev.value < refCool
	holds := c.ev.value > refHot && !clears
	vals := refValues(c.ev)
	switch {
	case a == nil && holds:
		a = &refAlert{phase: "pending", since: t, first: vals, last: vals}
	case a == nil:
	case a.phase == "pending" && !holds:
		a = nil
	case a.phase == "pending":
		a.last = vals
	case clears && a.phase == "raised":
		a.phase, a.clear, a.cleared = "clearing", t, vals
	case clears:
	default:
		if a.phase == "clearing" {
			a.phase, a.clear, a.cleared = "raised", 0, nil
		}
		if holds {
			a.last = vals
		}
	}
	if a != nil {
		a.latest = max(a.latest, t)
	}
	step()
}

// refSilence is what the absence step keeps of a device.
type refSilence struct {
	last, raised int64
	v            map[string]any
}

func (r *reference) raiseSilence(c evCtx, a *refSilence, timed bool) {
	a.raised = a.last + refAfter*r.u
	d := map[string]any{"last_seen": a.last, "last_seen_iso": isoMS(a.last), "raised_at": a.raised,
		"raised_at_iso": isoMS(a.raised), "last": a.v}
	id := fmt.Sprintf("ra:%s:%d:alert", c.ev.key, a.last)
	r.emit(c, "out:ra", "alert", id, d, a.raised)
	r.results[id].timed = timed
}

func (r *reference) absence(c evCtx) {
	t, key := c.ev.t, c.ev.key
	vals := map[string]any{"value": c.ev.value}
	if a := r.ra[key]; a != nil {
		due := a.last + refAfter*r.u
		if a.raised == 0 && due > t {
			r.check("ra due", c, due)
		}
		if a.raised == 0 && due <= max(c.w, t) {
			r.raiseSilence(c, a, false)
		}
		if t < a.last {
			r.late["ra"]++
			return
		}
		if a.raised != 0 {
			d := map[string]any{"last_seen": a.last, "last_seen_iso": isoMS(a.last), "raised_at": a.raised,
				"raised_at_iso": isoMS(a.raised), "last": a.v, "returned_at": t, "returned_at_iso": isoMS(t),
				"duration_ms": t - a.last, "returned": vals}
			r.emit(c, "out:ra", "resolve", fmt.Sprintf("ra:%s:%d:resolve", key, a.last), d, -1)
		}
	}
	r.ra[key] = &refSilence{last: t, v: vals}
}

// normalized is v as JSON decodes it (numbers as float64), for comparing
// the reference's data with the engine's.
func normalized(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}
