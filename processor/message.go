package processor

import (
	"context"
	"strconv"
	"time"
)

// Handler handles one entry, or one timer firing (Message.Timer set). It
// is called by at most one goroutine per key at a time, in stream order for
// that key, except that a call left running past Options.StepTimeout may
// still run while the key's next attempt does. Its effects are recorded on the
// Message and written by the commit; see the package documentation for what
// each return value leads to.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f(ctx, m).
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Decoder extracts the key, the dedupe id and the decoded payload of an
// entry before it is dispatched to a lane. Any error it returns is treated
// as permanent: the entry goes to the dead-letter stream at once. Wrap the
// error with Permanent to give the reason ("not_json", "missing_key", …);
// an unwrapped error gets reason "invalid".
type Decoder interface {
	Decode(m *Message) error
}

// DecoderFunc adapts a function to Decoder.
type DecoderFunc func(m *Message) error

// Decode calls f(m).
func (f DecoderFunc) Decode(m *Message) error { return f(m) }

// Message is one stream entry on its way through the engine.
type Message struct {
	// ID is the entry's stream id, e.g. "1700000000000-0".
	ID string
	// Stream is the partition stream the entry was read from.
	Stream string
	// Partition is the partition number, 0 when the pipeline has one.
	Partition int
	// Fields are the entry's field/value pairs in stream order:
	// Fields[0] is the first field name, Fields[1] its value, and so on.
	// Treat them as read-only: they are dead-lettered as they are.
	Fields []string
	// Key orders the entry: entries of one key are handled one at a time,
	// in stream order. Set by the Decoder.
	Key string
	// DedupeID identifies the event for deduplication; empty disables
	// dedupe for this entry. Set by the Decoder.
	DedupeID string
	// Data holds whatever the Decoder decoded (for JSON pipelines, the
	// payload object), for the handler to use.
	Data any
	// Attempt counts tries of this entry, starting at 1. Earlier deliveries
	// (before a crash or reclaim) count as one attempt each.
	Attempt int
	// Deliveries is the entry's delivery count from the pending-entries list.
	Deliveries int64
	// EventTime is when the event happened, if the Decoder can tell: it
	// drives the partition's watermark and so event-time timers. Zero: not
	// known.
	EventTime time.Time
	// Timer is set, and ID, Fields and DedupeID are empty, when the message
	// is a timer firing rather than a stream entry.
	Timer *TimerSpec

	effects  []Effect
	counts   map[string]int
	received time.Time
	ks       keyspace
	states   *stateCache
	pt       *partition // the partition it came from; nil in tests
	// wmAt is the watermark as of the entry's place in the stream (unix
	// ms), set (wmSet) when it was dispatched; see Watermark.
	wmAt  int64
	wmSet bool
}

// Field returns the value of the named field and whether it is present.
func (m *Message) Field(name string) (string, bool) {
	for i := 0; i+1 < len(m.Fields); i += 2 {
		if m.Fields[i] == name {
			return m.Fields[i+1], true
		}
	}
	return "", false
}

// Emit records an entry to append to stream when the message commits.
// fields are field/value pairs. maxLen > 0 trims the stream with MAXLEN ~.
// On Redis Cluster a stream in another slot than the partition's is
// written just before the commit, at least once.
func (m *Message) Emit(stream string, maxLen int64, fields ...string) {
	m.effects = append(m.effects, Effect{Kind: EffectXAdd, Key: stream, MaxLen: maxLen, Fields: fields})
}

// SetState records an HSET of hash with the field/value pairs fields: a
// read model for others to read (the Handler cannot read it back; see
// StateSet for the key's own state). On Redis Cluster a hash in another
// slot than the partition's is written before the commit, at least once.
func (m *Message) SetState(hash string, fields ...string) {
	m.effects = append(m.effects, Effect{Kind: EffectHSet, Key: hash, Fields: fields})
}

// Record records any effect; see EffectKind for each kind's fields.
func (m *Message) Record(e Effect) { m.effects = append(m.effects, e) }

// Effects returns the effects recorded so far.
func (m *Message) Effects() []Effect { return m.effects }

// ResetEffects drops the recorded effects and counts; the engine calls it
// before each retry so that a failed attempt leaves nothing behind.
func (m *Message) ResetEffects() {
	m.effects = m.effects[:0]
	clear(m.counts)
}

// Count adds n to the counter name for when the message commits: the sums
// reach the Observer in Commit.Counts, once for each message whose effects
// are written (never for a failed attempt, a duplicate or a stale entry),
// so that counters of what steps did are exact across retries and crashes.
func (m *Message) Count(name string, n int) {
	if m.counts == nil {
		m.counts = make(map[string]int, 2)
	}
	m.counts[name] += n
}

// Counts returns the counts recorded so far.
func (m *Message) Counts() map[string]int { return m.counts }

// GaugeAdd records an addition of delta to the partition's gauge name (an
// HINCRBY of a hash of the partition, written in the same commit): a level
// such as open windows or active alerts that stays exact across retries,
// crashes and owner changes. Inspector.Stats reads the gauges back.
func (m *Message) GaugeAdd(name string, delta int64) {
	ks := m.keyspace()
	m.effects = append(m.effects, Effect{Kind: EffectHIncrBy, Key: GaugesKey(ks.stream, ks.p, ks.n, ks.group),
		Fields: []string{name, strconv.FormatInt(delta, 10)}})
}

// Now is the engine clock's time (Options.Clock): processing time, which a
// test can drive.
func (m *Message) Now() time.Time {
	if m.pt == nil {
		return time.Now()
	}
	return m.pt.p.o.Clock.Now()
}

// Watermark is the partition's event-time watermark (the highest event
// time read, less Options.AllowedLateness, or the clock's time less
// AllowedLateness once the partition has been idle for
// Options.IdleWatermark); zero when no event time is known yet.
//
// For an entry it is the watermark as of the entry's place in the stream:
// that of the reads before it, raised by the event times of the entries
// before it in its own read, not by its own or by later ones. So it does
// not depend on how the entries were split into reads, and an event-time
// timer due after it has not fired before the entry is handled (a firing
// is queued behind the entries of its key read before it). For a timer
// firing it is the watermark as the firing runs. A new owner starts from
// the watermark last committed, which may be ahead of that of the pending
// entries it takes over.
func (m *Message) Watermark() time.Time {
	if m.pt == nil {
		return time.Time{}
	}
	w := m.pt.watermark.Load()
	if m.wmSet && m.Timer == nil {
		w = m.wmAt
	}
	if w <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(w)
}

// retryCopy is a new Message for the next attempt at m, while a handler
// that ran past its timeout may still hold m: everything but the effects.
func (m *Message) retryCopy() *Message {
	return &Message{ID: m.ID, Stream: m.Stream, Partition: m.Partition, Fields: m.Fields, Key: m.Key,
		DedupeID: m.DedupeID, Data: m.Data, Attempt: m.Attempt, Deliveries: m.Deliveries,
		EventTime: m.EventTime, Timer: m.Timer, received: m.received, ks: m.ks, states: m.states, pt: m.pt, wmAt: m.wmAt, wmSet: m.wmSet}
}
