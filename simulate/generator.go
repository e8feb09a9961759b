package simulate

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Generator produces events one at a time.
type Generator interface {
	// Next returns the next event, one compact JSON object (or, for a
	// malformed event, whatever bytes it is), and its key: the user or device
	// it belongs to, "" for a malformed event. A duplicate returns the bytes
	// of the earlier event again, so the caller must not modify them.
	Next() (event []byte, key string)
}

// Defaults for Options.
const (
	DefaultKeys = 1000
	// DefaultBurstSize is Options.BurstSize's default: events in a burst.
	DefaultBurstSize = 20
	// DefaultSilence is Options.Silence's default: the mean length of a
	// key's silence.
	DefaultSilence = 30 * time.Second
	// ringSize is how many recent events a duplicate is drawn from.
	ringSize = 1024
)

// Defaults of the analytics options, sized for configs/demo.yaml (10s
// windows with 2 to 3s of grace, a 5s session gap, a funnel within 20s, a
// temperature alert after 5s over 30 celsius, a silent device after 5s).
const (
	// DefaultPauses is Options.Pauses's default: the share of sessions
	// after which the user pauses.
	DefaultPauses = 0.8
	// DefaultPause is Options.Pause's default: the shortest pause.
	DefaultPause = 10 * time.Second
	// DefaultBuyers is Options.Buyers's default: the share of sessions
	// that add to the cart and then buy.
	DefaultBuyers = 0.25
	// DefaultCarts is Options.Carts's default: the share of sessions that
	// add to the cart and leave without buying.
	DefaultCarts = 0.25
	// DefaultOutages is Options.Outages's default: the probability that a
	// reading is a device's last before an outage.
	DefaultOutages = 0.001
	// DefaultOutage is Options.Outage's default: the shortest outage.
	DefaultOutage = 40 * time.Second
	// DefaultHeat is Options.Heat's default: the probability that a
	// temperature reading starts a heat episode.
	DefaultHeat = 0.001
	// DefaultHeatFor is Options.HeatFor's default: the shortest time an
	// episode holds at its peak.
	DefaultHeatFor = 45 * time.Second
	// DefaultHeatRise is Options.HeatRise's default, in celsius.
	DefaultHeatRise = 18.0
	// DefaultDisorder is Options.Disorder's default: the share of events
	// that come out of order.
	DefaultDisorder = 0.02
	// DefaultDisorderBy is Options.DisorderBy's default: how far back an
	// out-of-order event's ts lies at most.
	DefaultDisorderBy = time.Second
	// DefaultLate is Options.Late's default: the share of events that
	// come late.
	DefaultLate = 0.002
	// DefaultLateBy is Options.LateBy's default: how far back a late
	// event's ts lies at least.
	DefaultLateBy = 30 * time.Second
)

// Options shape a generator. A zero value gives DefaultKeys keys, seed 0,
// no duplicates, no malformed events, no bursts, silences or drift, the
// wall clock, and what the analytics steps of configs/demo.yaml need, each
// at its default and each switched off by a negative value: users who
// pause between sessions (Pauses), shopping journeys that buy or leave a
// cart (Buyers, Carts), devices that go quiet (Outages), temperatures that
// rise over 30 celsius and come back (Heat), and events out of order
// (Disorder) and late (Late).
type Options struct {
	// Seed makes the events reproducible: two generators of one kind with the
	// same Seed, Keys, fractions and clock produce the same events. Default 0.
	Seed uint64
	// Keys is how many distinct users (clickstream) or devices (IoT) there
	// are; each event belongs to one drawn uniformly. State is kept per key,
	// so memory grows with it. Default DefaultKeys.
	Keys int
	// Duplicates is the fraction of events, in [0, 1], that re-send one of the
	// last 1024 events verbatim (same id, same bytes). Default 0.
	Duplicates float64
	// Bad is the fraction of events, in [0, 1], that are malformed: half of
	// them are not JSON (cut-off events and garbage bytes), half are JSON
	// objects without the key field (user_id or device_id). Bad takes
	// precedence: Duplicates is lowered to 1 - Bad if they add up to more
	// than 1. Default 0.
	Bad float64
	// Bursts is the probability, in [0, 1], that a fresh event starts a
	// burst of its key: the key's next BurstSize - 1 events follow it back
	// to back, fresh and well-formed (a device flushing its buffer after a
	// reconnect, a user clicking through a gallery). Default 0.
	Bursts float64
	// BurstSize is how many events a burst has, the one that started it
	// included; at least 2 makes a burst visible. Default DefaultBurstSize.
	BurstSize int
	// Silences is the probability, in [0, 1], that a key goes quiet after
	// a fresh event that starts no burst: none of its fresh events comes
	// until the clock (Now) has moved on by a length drawn between half
	// and one and a half times Silence. A key stays active if it is the
	// only one left, so that there is always a key to draw. Duplicates,
	// which re-send old events with their old ts, still come. Default 0.
	Silences float64
	// Silence is the mean length of a silence. Default DefaultSilence.
	Silence time.Duration
	// Drift (IoT only) makes each device's readings wander away from their
	// sensor's typical reading, by Drift steps of the sensor's walk per
	// reading; see NewIoT. At least 0. Default 0: readings keep drifting
	// back towards the typical one.
	Drift float64
	// Now is the clock for the ts field, and for silences, pauses,
	// outages and heat episodes; nil means time.Now. Inject a fixed clock
	// for byte-for-byte reproducible events.
	Now func() time.Time

	// Analytics options: a zero value means the documented default, a
	// negative one switches the behaviour off. The draws of Pauses,
	// Outages, Heat, Disorder and Late come from random streams of their
	// own, so the events' other fields are those of the same seed without
	// them, until a pause or an outage changes which key is drawn.

	// Pauses (clickstream only) is the probability, in [0, 1], that a user
	// whose session ends pauses: none of their events comes until the
	// clock has moved on by a length drawn between Pause and twice Pause,
	// so that a session step's gap ends the session. Pauses, outages and
	// silences together never take more than half the keys away at once,
	// so that a generator run faster than its clock (eddy simulate
	// --count, benchmarks) still spreads its events over half of them.
	// Default DefaultPauses.
	Pauses float64
	// Pause is the shortest pause; longer than the session gap of the
	// config fed. Default DefaultPause.
	Pause time.Duration
	// Buyers (clickstream only) is the share of sessions, in [0, 1], that
	// go view, then add_to_cart, then purchase (the last event of the
	// session); Carts the share that add to the cart and end without a
	// purchase; the others only view and click. Buyers + Carts is at most
	// 1 (Carts is lowered). A purchase never comes without an add_to_cart
	// before it in its session. Defaults DefaultBuyers, DefaultCarts.
	Buyers, Carts float64
	// Outages (IoT only) is the probability, in [0, 1], that a reading is
	// its device's last for a while: none of its readings comes until the
	// clock has moved on by a length drawn between Outage and twice
	// Outage, so that an absence step's after passes. Default
	// DefaultOutages.
	Outages float64
	// Outage is the shortest outage; longer than the absence step's
	// after. Default DefaultOutage.
	Outage time.Duration
	// Heat (IoT only) is the probability, in [0, 1], that a temperature
	// reading of a device not in an episode starts a heat episode: over
	// HeatFor/5 its readings rise by HeatRise, hold there for a length
	// drawn between HeatFor and twice HeatFor, and fall back over
	// HeatFor/5 (all by the clock). With the defaults a device's
	// temperature, typically 17 to 25 celsius, goes over 30 for longer
	// than a threshold step's for and back below 27. Default DefaultHeat.
	Heat float64
	// HeatFor is the shortest time an episode holds at its peak. Default
	// DefaultHeatFor.
	HeatFor time.Duration
	// HeatRise is how far an episode raises a temperature, in celsius.
	// Default DefaultHeatRise.
	HeatRise float64
	// Disorder is the share of fresh events, in [0, 1], whose ts lies
	// before the clock by a length drawn up to DisorderBy: out of order,
	// and within the grace of a config whose grace exceeds DisorderBy.
	// Default DefaultDisorder.
	Disorder float64
	// DisorderBy is how far back an out-of-order event lies at most.
	// Default DefaultDisorderBy.
	DisorderBy time.Duration
	// Late is the share of fresh events, in [0, 1], whose ts lies before
	// the clock by a length drawn between LateBy and twice LateBy: late
	// for a config whose grace (and window) is shorter than LateBy.
	// Disorder + Late is at most 1 (Disorder is lowered). Default
	// DefaultLate.
	Late float64
	// LateBy is how far back a late event lies at least. Default
	// DefaultLateBy.
	LateBy time.Duration
}

func (o Options) withDefaults() Options {
	if o.Keys <= 0 {
		o.Keys = DefaultKeys
	}
	o.Bad = clamp01(o.Bad)
	o.Duplicates = min(clamp01(o.Duplicates), 1-o.Bad)
	o.Bursts = clamp01(o.Bursts)
	o.Silences = clamp01(o.Silences)
	if o.BurstSize <= 0 {
		o.BurstSize = DefaultBurstSize
	}
	if o.Silence <= 0 {
		o.Silence = DefaultSilence
	}
	if !(o.Drift > 0) || math.IsInf(o.Drift, 1) { // NaN, negative or infinite
		o.Drift = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Pauses = orDefault(o.Pauses, DefaultPauses)
	o.Pause = durationOrDefault(o.Pause, DefaultPause)
	o.Buyers = orDefault(o.Buyers, DefaultBuyers)
	o.Carts = min(orDefault(o.Carts, DefaultCarts), 1-o.Buyers)
	o.Outages = orDefault(o.Outages, DefaultOutages)
	o.Outage = durationOrDefault(o.Outage, DefaultOutage)
	o.Heat = orDefault(o.Heat, DefaultHeat)
	o.HeatFor = durationOrDefault(o.HeatFor, DefaultHeatFor)
	if !(o.HeatRise > 0) || math.IsInf(o.HeatRise, 1) { // zero, negative, NaN or infinite
		o.HeatRise = DefaultHeatRise
	}
	o.Late = orDefault(o.Late, DefaultLate)
	o.LateBy = durationOrDefault(o.LateBy, DefaultLateBy)
	o.Disorder = min(orDefault(o.Disorder, DefaultDisorder), 1-o.Late)
	o.DisorderBy = durationOrDefault(o.DisorderBy, DefaultDisorderBy)
	return o
}

// orDefault is an analytics fraction: def for 0 (or NaN), none for a
// negative value, at most 1.
func orDefault(f, def float64) float64 {
	if f == 0 || math.IsNaN(f) {
		return def
	}
	return clamp01(f)
}

// durationOrDefault is def for a length that is not positive.
func durationOrDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func clamp01(f float64) float64 {
	switch {
	case f > 1:
		return 1
	case f > 0:
		return f
	default: // negative or NaN
		return 0
	}
}

// source makes the events of one kind.
type source interface {
	// keys is how many keys (users, devices) there are.
	keys() int
	// fresh returns a new event of key k with sequence number n, and its
	// key. With keyless it leaves the key field out and returns key "".
	fresh(r *rand.Rand, n uint64, k int, ts int64, keyless bool) ([]byte, string)
	// away returns how long key k goes quiet after the fresh event it
	// just had (a pause, an outage), drawing from r; 0: it does not.
	away(r *rand.Rand, k int) time.Duration
}

// generator draws the key of each event, adds duplicates and malformed
// events to a source, and, with a schedule, bursts and silences.
type generator struct {
	src   source
	opts  Options
	rng   *rand.Rand
	shape *rand.Rand // draws of Disorder, Late, Pauses and Outages
	n     uint64     // sequence number of the next fresh event
	sched *schedule  // nil without bursts and silences

	ring     []remembered // recent well-formed events, for duplicates
	ringNext int
}

type remembered struct {
	event []byte
	key   string
}

func newGenerator(src source, opts Options, stream uint64) *generator {
	g := &generator{
		src:   src,
		opts:  opts,
		rng:   rand.New(rand.NewPCG(opts.Seed, stream)),
		shape: rand.New(rand.NewPCG(opts.Seed, stream^0x5a9e)),
		ring:  make([]remembered, 0, ringSize),
	}
	if opts.Bursts > 0 || opts.Silences > 0 || opts.Pauses > 0 || opts.Outages > 0 {
		g.sched = newSchedule(src.keys())
	}
	return g
}

// Next implements Generator.
func (g *generator) Next() ([]byte, string) {
	now := g.opts.Now()
	if g.sched != nil {
		g.sched.wake(now)
		if k, ok := g.sched.burst(); ok {
			return g.remember(g.fresh(k, now, false))
		}
	}
	u := g.rng.Float64()
	switch {
	case u < g.opts.Bad:
		return g.malformed(now), ""
	case u < g.opts.Bad+g.opts.Duplicates && len(g.ring) > 0:
		e := g.ring[g.rng.IntN(len(g.ring))]
		return e.event, e.key
	}
	k := g.pick()
	ev, key := g.remember(g.fresh(k, now, false))
	if g.sched != nil {
		g.sched.after(g.rng, g.opts, k, now)
		g.goAway(k, now)
	}
	return ev, key
}

// goAway takes key k away for the pause or outage its source draws, unless
// it is silent or bursting already or half the keys are away.
func (g *generator) goAway(k int, now time.Time) {
	if g.sched.silent(k) || (g.sched.burstLeft > 0 && g.sched.burstKey == k) {
		return
	}
	d := g.src.away(g.shape, k)
	if d <= 0 || 2*(len(g.sched.active)-1) < g.src.keys() {
		return
	}
	g.sched.silence(k, now.Add(d))
}

// pick draws the key of a fresh event: uniformly among those not silent.
func (g *generator) pick() int {
	if g.sched != nil {
		return g.sched.pick(g.rng)
	}
	return g.rng.IntN(g.src.keys())
}

// remember keeps a well-formed event for duplicates, and returns it.
func (g *generator) remember(ev []byte, key string) ([]byte, string) {
	if len(g.ring) < ringSize {
		g.ring = append(g.ring, remembered{ev, key})
	} else {
		g.ring[g.ringNext] = remembered{ev, key}
		g.ringNext = (g.ringNext + 1) % ringSize
	}
	return ev, key
}

func (g *generator) fresh(k int, now time.Time, keyless bool) ([]byte, string) {
	n := g.n
	g.n++
	return g.src.fresh(g.rng, n, k, g.eventTime(now), keyless)
}

// eventTime is the ts of a fresh event made at now: now, or for a share of
// Disorder events up to DisorderBy before it, or for a share of Late
// events LateBy to twice LateBy before it.
func (g *generator) eventTime(now time.Time) int64 {
	if g.opts.Late > 0 || g.opts.Disorder > 0 {
		switch u := g.shape.Float64(); {
		case u < g.opts.Late:
			now = now.Add(-g.opts.LateBy - time.Duration(g.shape.Float64()*float64(g.opts.LateBy)))
		case u < g.opts.Late+g.opts.Disorder:
			now = now.Add(-time.Duration((1 - g.shape.Float64()) * float64(g.opts.DisorderBy)))
		}
	}
	return now.UnixMilli()
}

// notJSONStart are bytes that no JSON text can begin with, even after
// whitespace, so garbage starting with one is never valid JSON.
const notJSONStart = "#%&*<>?@\\^|~\x00\x01\x7f\xfe\xff"

// malformed returns a bad event: valid JSON without the key field, a
// cut-off event, or garbage bytes.
func (g *generator) malformed(now time.Time) []byte {
	switch g.rng.IntN(4) {
	case 0, 1:
		ev, _ := g.fresh(g.pick(), now, true)
		return ev
	case 2:
		// A proper prefix of an object never closes it: not JSON.
		ev, _ := g.fresh(g.pick(), now, false)
		return ev[:1+g.rng.IntN(len(ev)-1)]
	default:
		b := make([]byte, 8+g.rng.IntN(56))
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		b[0] = notJSONStart[g.rng.IntN(len(notJSONStart))]
		return b
	}
}

// JSON writing helpers. The generators write JSON by hand: they run beside
// the engine during benchmarks, and reflection-based encoding would cost
// several times more. Tests decode every kind of event with encoding/json.

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendName appends ,"name": (or "name": for the first field of an object).
func appendName(b []byte, name string) []byte {
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = appendString(b, name)
	return append(b, ':')
}

func appendStringField(b []byte, name, v string) []byte {
	return appendString(appendName(b, name), v)
}

func appendIntField(b []byte, name string, v int64) []byte {
	return strconv.AppendInt(appendName(b, name), v, 10)
}

// appendFixedField appends v with two decimals, the precision of prices and
// sensor readings here.
func appendFixedField(b []byte, name string, v float64) []byte {
	return strconv.AppendFloat(appendName(b, name), v, 'f', 2, 64)
}

// id returns prefix-seed-n, e.g. "c-7-42".
func id(prefix string, seed, n uint64) string {
	b := make([]byte, 0, 24)
	b = append(b, prefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, seed, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, n, 10)
	return string(b)
}
