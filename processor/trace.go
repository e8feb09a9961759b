package processor

import (
	"slices"
	"time"
)

// TraceField is the stream field that carries an event's W3C trace
// context, in the form of the traceparent header
// (https://www.w3.org/TR/trace-context/#traceparent-header):
// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". The ingest
// sources copy an HTTP request's traceparent header (or an MQTT v5 user
// property of that name) into it; a producer may also write it itself.
//
// The engine carries it on, whether or not a BatchTracer is set: each
// stream entry a handler emits (Message.Emit, an EffectXAdd) while handling
// an entry with a valid traceparent gets the same field, unchanged, unless
// the handler set one itself; a dead letter keeps it with the entry's other
// fields. An output therefore continues its input's trace: a consumer of
// the output that starts a span from the field makes it a child of the
// producer's span, as the engine's batch spans link to it. A timer firing
// carries no trace of its own, and neither do its outputs. An entry without
// the field costs a scan of its field names and no allocation.
const TraceField = "traceparent"

// BatchTracer, when set as Options.Tracer, is told of every commit once it
// is over, with the trace contexts of its entries, to record a span per
// batch that links to each event's trace. It is an interface so that the
// engine knows nothing of OpenTelemetry; cmd/eddy implements it. Calls come
// from each partition's committer goroutine and must not block.
type BatchTracer interface {
	// TraceCommit records one commit, written or failed.
	TraceCommit(c TracedCommit)
}

// TracedCommit describes one commit for a BatchTracer.
type TracedCommit struct {
	// Pipeline, Partition and Stream name what was committed.
	Pipeline  string
	Partition int
	Stream    string
	// Start and End bound the commit, retries included.
	Start, End time.Time
	// Entries counts the batch's entries and timer firings.
	Entries int
	// Parents are the distinct valid traceparent values of the batch's
	// entries, in batch order: the links of the batch's span.
	Parents []string
	// Err is why the commit failed (the lease lost: ErrFenced); nil when
	// it was written.
	Err error
}

// TraceID returns the trace id (32 lowercase hex digits) of a traceparent
// value, or "" if tp is not a valid one: a version other than "ff" in two
// hex digits, a trace id and a parent id in hex and not all zeros, and
// flags; version 00 has exactly these four parts, a later version may add
// more after a "-".
func TraceID(tp string) string {
	const n = 55 // len("00-" + 32 + "-" + 16 + "-" + 2)
	if len(tp) < n || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
		!isHex(tp[0:2]) || tp[0:2] == "ff" || !isHex(tp[3:35]) || !isHex(tp[36:52]) || !isHex(tp[53:55]) ||
		allZero(tp[3:35]) || allZero(tp[36:52]) {
		return ""
	}
	if len(tp) > n && (tp[0:2] == "00" || tp[n] != '-') {
		return ""
	}
	return tp[3:35]
}

// isHex reports whether s is lowercase hex digits only.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// Traceparent returns the message's valid traceparent field, or "".
func (m *Message) Traceparent() string {
	if tp, ok := m.Field(TraceField); ok && TraceID(tp) != "" {
		return tp
	}
	return ""
}

// CorrelationID names the event in logs and dead letters
// ("eddy.correlation_id"): the trace id of its traceparent field if it has
// a valid one, else its dedupe id, else its stream id; "" for a timer
// firing.
func (m *Message) CorrelationID() string {
	if tp, ok := m.Field(TraceField); ok {
		if id := TraceID(tp); id != "" {
			return id
		}
	}
	if m.DedupeID != "" {
		return m.DedupeID
	}
	return m.ID
}

// carryTraces gives each stream entry emitted by a processed entry of
// batch its input's traceparent (see TraceField). It may run again on the
// same batch (a commit tried again): an output that has the field is left
// alone.
func carryTraces(batch []*task) {
	for _, t := range batch {
		if t.kind != 'p' || t.m.Timer != nil || len(t.m.effects) == 0 {
			continue
		}
		tp := t.m.Traceparent()
		if tp == "" {
			continue
		}
		for i := range t.m.effects {
			e := &t.m.effects[i]
			if e.Kind != EffectXAdd || len(e.Fields)%2 != 0 || len(e.Fields)+2 > maxEffectStrings || hasField(e.Fields, TraceField) {
				continue
			}
			// A copy: the handler's slice may be shared (one payload
			// emitted to two streams).
			f := make([]string, len(e.Fields)+2)
			copy(f, e.Fields)
			f[len(f)-2], f[len(f)-1] = TraceField, tp
			e.Fields = f
		}
	}
}

// hasField reports whether the field/value pairs fields name name.
func hasField(fields []string, name string) bool {
	for i := 0; i < len(fields); i += 2 {
		if fields[i] == name {
			return true
		}
	}
	return false
}

// traceCommit tells Options.Tracer, if set, of a commit of batch that
// began at start and ended with err.
func (pt *partition) traceCommit(batch []*task, start time.Time, err error) {
	tr := pt.p.o.Tracer
	if tr == nil {
		return
	}
	c := TracedCommit{Pipeline: pt.p.o.Pipeline, Partition: pt.n, Stream: pt.stream,
		Start: start, End: time.Now(), Entries: len(batch), Err: err}
	// Batches carry few distinct traces (a request's events share one),
	// so a scan beats a map.
	for _, t := range batch {
		if tp := t.m.Traceparent(); tp != "" && !slices.Contains(c.Parents, tp) {
			c.Parents = append(c.Parents, tp)
		}
	}
	tr.TraceCommit(c)
}
