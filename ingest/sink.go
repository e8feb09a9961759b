package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// Rejection reasons: short, stable labels for metrics and for the client.
// Those an event shares with the engine's dead letters have the same names.
const (
	ReasonNotJSON    = processor.ReasonNotJSON    // not a JSON object
	ReasonMissingKey = processor.ReasonMissingKey // no key at the pipeline's key path
	ReasonMissingID  = pipelines.ReasonMissingID  // no dedupe id at the pipeline's id path
	ReasonTooLarge   = processor.ReasonTooLarge   // over max_event_bytes
	ReasonSchema     = "schema"                   // breaks the pipeline's schema step
)

// Reasons lists every rejection reason, for metrics to create their
// series at zero.
var Reasons = []string{ReasonNotJSON, ReasonMissingKey, ReasonMissingID, ReasonTooLarge, ReasonSchema}

// Event is one event as it arrived.
type Event struct {
	// Data is one JSON object, as received.
	Data []byte
	// Fields are top-level string fields set in the object, replacing a
	// member of the same name (an MQTT topic's named levels, which win over
	// the payload: the broker's ACL on topics is the authority on who the
	// device is); nil for none.
	Fields map[string]string
	// Traceparent is the W3C trace context the event came with (an HTTP
	// request's traceparent header, an MQTT v5 user property of that
	// name): the entry gets it as its processor.TraceField field, so that
	// the pipelines continue the producer's trace, unless the encoded
	// event has that field already. "" or an invalid value: none.
	Traceparent string
}

// Rejection says why an event was refused.
type Rejection struct {
	// Reason is one of Reasons.
	Reason string
	// Pointer is the JSON Pointer (RFC 6901) of the offending value in the
	// event, "" for the whole event.
	Pointer string
	// Rule is, for ReasonSchema, the JSON Schema keyword that failed
	// ("type", "required", …); "" otherwise.
	Rule string
	// Message says what is wrong, for humans.
	Message string
}

func (r *Rejection) Error() string {
	if r.Pointer != "" {
		return fmt.Sprintf("%s at %s: %s", r.Reason, r.Pointer, r.Message)
	}
	return r.Reason + ": " + r.Message
}

// Result is what became of one event given to Append.
type Result struct {
	// Stream and ID name the stream entry the event was appended as: the
	// partition stream of its key (processor.PartitionStream) and the
	// entry's id. Both are "" when it was not appended.
	Stream, ID string
	// Rejected is non-nil when the event was refused (with Forward it was
	// still appended, for the pipeline to dead-letter).
	Rejected *Rejection
}

// Bad says what Append does with an event that cannot be encoded for its
// pipeline (not a JSON object, no key, over max_event_bytes, a schema
// violation).
type Bad int

const (
	// Reject returns it as a Rejection and appends nothing: the client is
	// told (HTTP).
	Reject Bad = iota
	// Forward appends it anyway, so that the pipeline dead-letters it with
	// its reason, and still reports the Rejection: nothing is dropped on
	// the way in (MQTT, eddy produce). An event that encodes is appended as
	// encoded (the pipeline dead-letters it for its size or in its schema
	// step); one that does not is appended as raw bytes in the payload
	// field (or "raw").
	Forward
)

// Bounds are the backpressure bounds of a source. A zero field is no bound.
type Bounds struct {
	// MaxLag is the most entries of the pipeline's input not yet
	// delivered to its consumer group, summed over partitions.
	MaxLag int64
	// MaxLatency is the longest Redis may take to answer the lag probe.
	MaxLatency time.Duration
}

// Backpressure timings.
const (
	// PressureEvery is how long a pressure sample is reused: at most one
	// probe per pipeline per PressureEvery, however many requests ask.
	PressureEvery = 250 * time.Millisecond
	// MinRetryAfter and MaxRetryAfter bound the back-off that Pressure
	// advises: MinRetryAfter times how far over its bound the pipeline is.
	MinRetryAfter = time.Second
	MaxRetryAfter = 30 * time.Second
)

// Sink appends events to the input streams of a file's pipelines. It is
// safe for concurrent use.
type Sink struct {
	rdb   redis.UniversalClient
	sinks map[string]*pipelineSink
	now   func() time.Time
}

// pipelineSink is one pipeline's producer, its size limit and its last
// pressure sample.
type pipelineSink struct {
	p        *pipelines.Pipeline
	prod     *processor.Producer
	maxBytes int // the pipeline's max_event_bytes; <= 0: none
	insp     *processor.Inspector
	inspErr  error

	probe  chan struct{} // held while probing: one probe at a time
	sample pressureSample
}

type pressureSample struct {
	at      time.Time
	lag     int64
	latency time.Duration
}

// NewSink returns a Sink for the pipelines of f, which Load or Parse has
// built. It sends nothing yet and does not close rdb.
func NewSink(rdb redis.UniversalClient, f *pipelines.File) *Sink {
	s := &Sink{rdb: rdb, sinks: make(map[string]*pipelineSink, len(f.Pipelines)), now: time.Now}
	for _, p := range f.Pipelines {
		ps := &pipelineSink{
			p:        p,
			prod:     processor.NewProducer(rdb, p.Input.Stream, p.Input.Partitions, 0),
			maxBytes: p.MaxEventBytes,
			probe:    make(chan struct{}, 1),
		}
		if ps.maxBytes == 0 {
			ps.maxBytes = processor.DefaultMaxEventBytes
		}
		o := p.Options()
		o.Handler, o.Decoder = nil, nil
		ps.insp, ps.inspErr = processor.NewInspector(rdb, o)
		s.sinks[p.Name] = ps
	}
	return s
}

// ErrUnknownPipeline is returned for a pipeline name that is not in the file.
var ErrUnknownPipeline = errors.New("ingest: no such pipeline")

func (s *Sink) pipeline(name string) (*pipelineSink, error) {
	ps, ok := s.sinks[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPipeline, name)
	}
	return ps, nil
}

// Append encodes evs for the named pipeline (and, with validate, checks
// each against the pipeline's schema step), appends what is accepted (and
// with Forward what is not) in one pipelined round trip, each to the
// partition its key routes to, and returns one Result per event, in order.
//
// It returns only after Redis has accepted the entries. A non-nil error
// means that none of them may be assumed written, and that some may have
// been all the same (a pipelined append that failed mid-way): the caller
// answers 503 telling the client to resend everything, or sends no PUBACK;
// a retry may write some twice, which the pipeline's dedupe absorbs. The
// Results then say only what was rejected.
func (s *Sink) Append(ctx context.Context, pipeline string, evs []Event, validate bool, bad Bad) ([]Result, error) {
	ps, err := s.pipeline(pipeline)
	if err != nil {
		return nil, err
	}
	res := make([]Result, len(evs))
	recs := make([]processor.Record, 0, len(evs))
	idx := make([]int, 0, len(evs)) // index in evs of each record
	for i, ev := range evs {
		rec, rej := ps.encode(ev, validate)
		rec.Fields = withTrace(rec.Fields, ev.Traceparent)
		if rej != nil {
			res[i].Rejected = rej
			if bad != Forward {
				continue
			}
		}
		recs = append(recs, rec)
		idx = append(idx, i)
	}
	ids, err := ps.prod.Send(ctx, recs)
	if err != nil {
		return res, fmt.Errorf("ingest into pipeline %s: %w", pipeline, err)
	}
	n := max(ps.p.Input.Partitions, 1)
	for j, id := range ids {
		r := &res[idx[j]]
		r.ID = id
		r.Stream = processor.PartitionStream(ps.p.Input.Stream, processor.PartitionOf(recs[j].Key, n), n)
	}
	return res, nil
}

// encode turns ev into its record. On a rejection the record is what
// Forward appends.
func (ps *pipelineSink) encode(ev Event, validate bool) (processor.Record, *Rejection) {
	data := ev.Data
	if len(ev.Fields) > 0 {
		d, err := withFields(data, ev.Fields)
		if err != nil {
			return ps.raw(data), &Rejection{Reason: ReasonNotJSON, Message: err.Error()}
		}
		data = d
	}
	key, fields, err := ps.p.EncodeEvent(data)
	if err != nil {
		return ps.raw(data), ps.rejection(err)
	}
	rec := processor.Record{Key: key, Fields: fields}
	if size := fieldsSize(fields); ps.maxBytes > 0 && size > ps.maxBytes {
		return rec, &Rejection{Reason: ReasonTooLarge,
			Message: fmt.Sprintf("event is %d bytes as stored, over pipeline %s's max_event_bytes %d", size, ps.p.Name, ps.maxBytes)}
	}
	if validate {
		if rej := checkSchema(ps.p, data); rej != nil {
			return rec, rej
		}
	}
	return rec, nil
}

// raw is the record of an event that does not encode: its bytes in the
// payload field, or "raw", for the pipeline to dead-letter.
func (ps *pipelineSink) raw(data []byte) processor.Record {
	field := ps.p.Input.Payload
	if field == "" {
		field = "raw"
	}
	return processor.Record{Fields: []string{field, string(data)}}
}

// rejection classifies an error of EncodeEvent.
func (ps *pipelineSink) rejection(err error) *Rejection {
	var pe *processor.PermanentError
	if !errors.As(err, &pe) {
		return &Rejection{Reason: ReasonNotJSON, Message: err.Error()}
	}
	r := &Rejection{Reason: pe.Reason, Message: err.Error()}
	switch pe.Reason {
	case ReasonMissingKey:
		r.Pointer = ps.pointer(ps.p.Key)
	case ReasonMissingID:
		if ps.p.Dedupe != nil {
			r.Pointer = ps.pointer(ps.p.Dedupe.ID)
		}
	}
	return r
}

// pointer is the JSON Pointer of a key or id path: dotted into a JSON
// payload, one field name otherwise.
func (ps *pipelineSink) pointer(path string) string {
	if ps.p.Input.Payload == "" {
		return Pointer(path)
	}
	return Pointer(strings.Split(path, ".")...)
}

// Pointer returns the JSON Pointer (RFC 6901) of the member names given.
func Pointer(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(n))
	}
	return b.String()
}

// checkSchema checks data against p's schema steps.
func checkSchema(p *pipelines.Pipeline, data []byte) *Rejection {
	err := p.CheckSchema(data)
	if err == nil {
		return nil
	}
	r := &Rejection{Reason: ReasonSchema, Message: err.Error()}
	var ve *schema.ValidationError
	if errors.As(err, &ve) {
		r.Pointer, r.Rule = ve.Pointer, ve.Rule
	}
	return r
}

// withFields sets fields as top-level members of the JSON object data, in
// name order, before its own members. A member of the object with the
// name of a field is dropped: the field wins (an MQTT topic's levels are
// what the broker's ACL vouches for, the payload is what the device says).
// Without such a member the rest of data's bytes are kept as they were;
// with one, its other members are kept, each value's bytes as they were.
func withFields(data []byte, fields map[string]string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("got null")
		}
		return nil, fmt.Errorf("event is not a JSON object: %w", err)
	}
	if len(fields) == 0 {
		return data, nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name) // a string always marshals
		v, _ := json.Marshal(fields[name])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	overridden := false
	for name := range obj {
		if _, ok := fields[name]; ok {
			overridden = true
			break
		}
	}
	if !overridden {
		rest := bytes.TrimLeft(data, " \t\r\n")[1:] // after '{'
		if len(obj) > 0 {
			b.WriteByte(',')
		} else {
			rest = bytes.TrimLeft(rest, " \t\r\n") // "}" and what follows
		}
		b.Write(rest)
		return b.Bytes(), nil
	}
	// Walk the members in order, keeping those no field replaces.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '{'
		return nil, fmt.Errorf("event is not a JSON object: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("event is not a JSON object: %w", err)
		}
		name, _ := tok.(string) // a member name is a string in valid JSON
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("event is not a JSON object: %w", err)
		}
		if _, ok := fields[name]; ok {
			continue
		}
		k, _ := json.Marshal(name)
		b.WriteByte(',')
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// withTrace adds the stream field processor.TraceField with value tp to
// fields, unless tp is not a valid traceparent or fields have one.
func withTrace(fields []string, tp string) []string {
	if tp == "" || processor.TraceID(tp) == "" {
		return fields
	}
	for i := 0; i < len(fields); i += 2 {
		if fields[i] == processor.TraceField {
			return fields
		}
	}
	return append(fields[:len(fields):len(fields)], processor.TraceField, tp)
}

func fieldsSize(fields []string) int {
	n := 0
	for _, f := range fields {
		n += len(f)
	}
	return n
}

// Pressure reports whether the named pipeline is over b, and if so how
// long the caller should advise its client to back off: MinRetryAfter
// times how far over the bound it is (lag / MaxLag, or latency /
// MaxLatency, whichever is higher), at most MaxRetryAfter.
//
// The lag is that of the pipeline's consumer group summed over its
// partitions (a partition without the group yet counts its whole length; a
// lag Redis cannot tell, after trimming, counts 0); the latency is how long
// Redis took to answer that probe. A sample is reused for PressureEvery.
// An error (Redis unreachable) says nothing about the bounds: the caller
// answers as for a failed Append.
func (s *Sink) Pressure(ctx context.Context, pipeline string, b Bounds) (over bool, retryAfter time.Duration, err error) {
	if b.MaxLag <= 0 && b.MaxLatency <= 0 {
		return false, 0, nil
	}
	ps, err := s.pipeline(pipeline)
	if err != nil {
		return false, 0, err
	}
	smp, err := ps.pressure(ctx, s.now, false)
	if err != nil {
		return false, 0, err
	}
	ratio := 0.0
	if b.MaxLag > 0 && smp.lag > b.MaxLag {
		ratio = float64(smp.lag) / float64(b.MaxLag)
	}
	if b.MaxLatency > 0 && smp.latency > b.MaxLatency {
		ratio = max(ratio, float64(smp.latency)/float64(b.MaxLatency))
	}
	if ratio == 0 {
		return false, 0, nil
	}
	return true, min(time.Duration(ratio*float64(MinRetryAfter)), MaxRetryAfter), nil
}

// Probe takes a sample of pipeline's lag now, as Pressure does, and
// returns its error: at start, it tells a Redis user that may not read
// the pipeline's stream and group info (XINFO, XPENDING) before any
// request meets it.
func (s *Sink) Probe(ctx context.Context, pipeline string) error {
	ps, err := s.pipeline(pipeline)
	if err != nil {
		return err
	}
	_, err = ps.pressure(ctx, s.now, true)
	return err
}

// pressure returns a sample no older than PressureEvery, probing Redis
// when the last one is older, or always with fresh.
func (ps *pipelineSink) pressure(ctx context.Context, now func() time.Time, fresh bool) (pressureSample, error) {
	if ps.inspErr != nil {
		return pressureSample{}, ps.inspErr
	}
	select {
	case ps.probe <- struct{}{}:
	case <-ctx.Done():
		return pressureSample{}, ctx.Err()
	}
	defer func() { <-ps.probe }()
	if !fresh && !ps.sample.at.IsZero() && now().Sub(ps.sample.at) < PressureEvery {
		return ps.sample, nil
	}
	start := now()
	stats, err := ps.insp.Stats(ctx)
	if err != nil {
		return pressureSample{}, fmt.Errorf("backpressure probe of pipeline %s: %w", ps.p.Name, err)
	}
	smp := pressureSample{at: now()}
	smp.latency = smp.at.Sub(start)
	for _, st := range stats {
		smp.lag += max(st.Lag, 0)
	}
	ps.sample = smp
	return smp, nil
}
