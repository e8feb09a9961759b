package simulate

import (
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
	// ringSize is how many recent events a duplicate is drawn from.
	ringSize = 1024
)

// Options shape a generator. A zero value gives DefaultKeys keys, seed 0,
// no duplicates, no malformed events and the wall clock.
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
	// Now is the clock for the ts field; nil means time.Now. Inject a fixed
	// clock for byte-for-byte reproducible events.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Keys <= 0 {
		o.Keys = DefaultKeys
	}
	o.Bad = clamp01(o.Bad)
	o.Duplicates = min(clamp01(o.Duplicates), 1-o.Bad)
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
	// fresh returns a new event with sequence number n, and its key. With
	// keyless it leaves the key field out and returns key "".
	fresh(r *rand.Rand, n uint64, ts int64, keyless bool) ([]byte, string)
}

// generator adds duplicates and malformed events to a source.
type generator struct {
	src  source
	opts Options
	rng  *rand.Rand
	n    uint64 // sequence number of the next fresh event

	ring     []remembered // recent well-formed events, for duplicates
	ringNext int
}

type remembered struct {
	event []byte
	key   string
}

func newGenerator(src source, opts Options, stream uint64) *generator {
	return &generator{
		src:  src,
		opts: opts,
		rng:  rand.New(rand.NewPCG(opts.Seed, stream)),
		ring: make([]remembered, 0, ringSize),
	}
}

// Next implements Generator.
func (g *generator) Next() ([]byte, string) {
	u := g.rng.Float64()
	switch {
	case u < g.opts.Bad:
		return g.malformed(), ""
	case u < g.opts.Bad+g.opts.Duplicates && len(g.ring) > 0:
		e := g.ring[g.rng.IntN(len(g.ring))]
		return e.event, e.key
	}
	ev, key := g.fresh(false)
	if len(g.ring) < ringSize {
		g.ring = append(g.ring, remembered{ev, key})
	} else {
		g.ring[g.ringNext] = remembered{ev, key}
		g.ringNext = (g.ringNext + 1) % ringSize
	}
	return ev, key
}

func (g *generator) fresh(keyless bool) ([]byte, string) {
	n := g.n
	g.n++
	return g.src.fresh(g.rng, n, g.opts.Now().UnixMilli(), keyless)
}

// notJSONStart are bytes that no JSON text can begin with, even after
// whitespace, so garbage starting with one is never valid JSON.
const notJSONStart = "#%&*<>?@\\^|~\x00\x01\x7f\xfe\xff"

// malformed returns a bad event: valid JSON without the key field, a
// cut-off event, or garbage bytes.
func (g *generator) malformed() []byte {
	switch g.rng.IntN(4) {
	case 0, 1:
		ev, _ := g.fresh(true)
		return ev
	case 2:
		// A proper prefix of an object never closes it: not JSON.
		ev, _ := g.fresh(false)
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
