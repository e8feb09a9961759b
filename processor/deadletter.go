package processor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DeadLetter is one entry of a dead-letter stream: the original entry's
// fields and what the engine recorded about its failure.
type DeadLetter struct {
	// ID is the dead letter's own id in the dead-letter stream.
	ID string
	// Fields are the original entry's fields, in order.
	Fields []string
	// Reason says why ("not_json", "max_attempts", …); Error is the error text.
	Reason, Error string
	// Attempts is how many times the entry was tried.
	Attempts int
	// Stream and EntryID locate the original entry: replay appends to Stream.
	Stream, EntryID                string
	Key, Pipeline, Group, Consumer string
	FailedAt                       time.Time
	// CorrelationID names the event in logs and traces: the trace id of
	// its traceparent field, else its dedupe id, else its stream id (see
	// Message.CorrelationID); "" for a timer firing.
	CorrelationID string
	// Timer and Due are set for a timer firing that failed: the timer's
	// name and when it was due. Its payload is the field "payload". Such
	// a dead letter has no stream entry to replay.
	Timer string
	Due   time.Time
}

// The fields a dead letter adds after the original entry's own: written by
// deadLetterFields and read by parseDeadLetter, both here.
const (
	dlFields   = "eddy.fields" // a very wide entry's fields, as one JSON array
	dlReason   = "eddy.reason"
	dlError    = "eddy.error"
	dlAttempts = "eddy.attempts"
	dlStream   = "eddy.stream"
	dlID       = "eddy.id"
	dlKey      = "eddy.key"
	dlPipeline = "eddy.pipeline"
	dlGroup    = "eddy.group"
	dlConsumer = "eddy.consumer"
	dlFailedAt = "eddy.failed_at"
	dlTimer    = "eddy.timer" // a timer firing: the timer's name
	dlDue      = "eddy.due"   // a timer firing: when it was due, unix ms
	// dlCorrelation names the event across logs and traces: see
	// Message.CorrelationID. Absent for a timer firing.
	dlCorrelation = "eddy.correlation_id"
)

// dlPrefix starts every field name the engine adds.
const dlPrefix = "eddy."

// maxDeadLetterError bounds the error text kept in a dead letter.
const maxDeadLetterError = 2048

// deadLetterFields are a dead letter's fields: the entry's own, unchanged
// (or, past maxEffectStrings, as one JSON array), then the reason and
// where the entry came from. A timer firing's "fields" are its payload.
func deadLetterFields(o *Options, m *Message, reason string, err error, now time.Time) []string {
	errText := ""
	if err != nil {
		errText = err.Error()
		if len(errText) > maxDeadLetterError {
			errText = errText[:maxDeadLetterError] + "…"
		}
	}
	fields := m.Fields
	if m.Timer != nil {
		fields = []string{"payload", m.Timer.Payload}
	}
	out := make([]string, 0, len(fields)+26)
	if len(fields)+26 <= maxEffectStrings {
		out = append(out, fields...)
	} else {
		b, _ := json.Marshal(fields)
		out = append(out, dlFields, string(b))
	}
	out = append(out,
		dlReason, reason,
		dlError, errText,
		dlAttempts, strconv.Itoa(m.Attempt),
		dlStream, m.Stream,
		dlID, m.ID,
		dlKey, m.Key,
		dlPipeline, o.Pipeline,
		dlGroup, o.Group,
		dlConsumer, o.Consumer,
		dlFailedAt, strconv.FormatInt(now.UnixMilli(), 10),
	)
	if m.Timer != nil {
		out = append(out, dlTimer, m.Timer.Name, dlDue, strconv.FormatInt(m.Timer.At.UnixMilli(), 10))
	} else if id := m.CorrelationID(); id != "" {
		out = append(out, dlCorrelation, id)
	}
	return out
}

// parseDeadLetter splits a dead-letter entry into the original fields and
// the engine's "eddy." fields.
func parseDeadLetter(id string, fields []string) (DeadLetter, error) {
	d := DeadLetter{ID: id}
	for i := 0; i+1 < len(fields); i += 2 {
		name, v := fields[i], fields[i+1]
		if !strings.HasPrefix(name, dlPrefix) {
			d.Fields = append(d.Fields, name, v)
			continue
		}
		switch name {
		case dlFields: // a very wide entry, kept as one JSON array
			if err := json.Unmarshal([]byte(v), &d.Fields); err != nil {
				return d, fmt.Errorf("dead letter %s: eddy.fields: %w", id, err)
			}
		case dlReason:
			d.Reason = v
		case dlError:
			d.Error = v
		case dlAttempts:
			d.Attempts, _ = strconv.Atoi(v)
		case dlStream:
			d.Stream = v
		case dlID:
			d.EntryID = v
		case dlKey:
			d.Key = v
		case dlPipeline:
			d.Pipeline = v
		case dlGroup:
			d.Group = v
		case dlConsumer:
			d.Consumer = v
		case dlCorrelation:
			d.CorrelationID = v
		case dlTimer:
			d.Timer = v
		case dlDue:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.Due = time.UnixMilli(ms)
			}
		case dlFailedAt:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.FailedAt = time.UnixMilli(ms)
			}
		default:
			d.Fields = append(d.Fields, name, v) // an original field that happens to start with "eddy."
		}
	}
	if d.Timer != "" && d.Reason != "" {
		return d, nil
	}
	if d.Stream == "" || d.Reason == "" {
		return d, fmt.Errorf("dead letter %s: not written by eddy (no eddy.stream or eddy.reason)", id)
	}
	if len(d.Fields) == 0 {
		return d, fmt.Errorf("dead letter %s: no original fields", id)
	}
	return d, nil
}
