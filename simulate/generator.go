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

// Options shape a generator. A zero value gives DefaultKeys keys, seed 0,
// no duplicates, no malformed events, no bursts, silences or drift, and the
// wall clock.
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
	// Now is the clock for the ts field, and for silences; nil means
	// time.Now. Inject a fixed clock for byte-for-byte reproducible
	// events.
	Now func() time.Time
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
	return o
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
}

// generator draws the key of each event, adds duplicates and malformed
// events to a source, and, with a schedule, bursts and silences.
type generator struct {
	src   source
	opts  Options
	rng   *rand.Rand
	n     uint64    // sequence number of the next fresh event
	sched *schedule // nil without bursts and silences

	ring     []remembered // recent well-formed events, for duplicates
	ringNext int
}

type remembered struct {
	event []byte
	key   string
}

func newGenerator(src source, opts Options, stream uint64) *generator {
	g := &generator{
		src:  src,
		opts: opts,
		rng:  rand.New(rand.NewPCG(opts.Seed, stream)),
		ring: make([]remembered, 0, ringSize),
	}
	if opts.Bursts > 0 || opts.Silences > 0 {
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
	}
	return ev, key
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
	return g.src.fresh(g.rng, n, k, now.UnixMilli(), keyless)
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
