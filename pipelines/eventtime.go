package pipelines

import (
	"fmt"
	"math"
	"time"

	"github.com/tidwall/gjson"

	"github.com/eddy-streams/eddy/processor"
)

// eventTimeDecoder sets Message.EventTime from input.event_time after the
// pipeline's decoder: unix milliseconds (a number, or a string of digits)
// or an RFC 3339 time. An event without a usable time is dead-lettered
// with reason "invalid": its place in event time is unknown; so is one
// further ahead of the clock than input.max_future, before it can move the
// partition's watermark.
type eventTimeDecoder struct {
	inner processor.Decoder
	path  Path
	field string
	// maxFuture bounds how far ahead of the clock (Message.Now) an event
	// time may be; 0: no bound.
	maxFuture time.Duration
}

func (d eventTimeDecoder) Decode(m *processor.Message) error {
	if err := d.inner.Decode(m); err != nil {
		return err
	}
	var v any
	var ok bool
	if raw, isJSON := m.Data.(jsonPayload); isJSON {
		// Checked by the decoder: read the one member, leaving the payload
		// undecoded for the steps (most read it later, or not at all).
		v, ok = lookupJSON(gjson.Parse(string(raw)), d.path)
		ok = ok && v != nil
	} else {
		v, ok = NewEvent(m).Get(d.path)
	}
	if !ok {
		return processor.Permanentf(processor.ReasonInvalid, "entry %s: event time %q is missing", m.ID, d.field)
	}
	at, err := eventTimeOf(v)
	if err != nil {
		return processor.Permanentf(processor.ReasonInvalid, "entry %s: event time %q: %v", m.ID, d.field, err)
	}
	if d.maxFuture > 0 {
		if ahead := at.Sub(m.Now()); ahead > d.maxFuture {
			return processor.Permanentf(processor.ReasonInvalid, "entry %s: event time %q is %s, %s ahead of the clock, over input.max_future %s",
				m.ID, d.field, at.UTC().Format(time.RFC3339Nano), ahead.Round(time.Second), d.maxFuture)
		}
	}
	m.EventTime = at
	return nil
}

// eventTimeOf reads an event time: unix ms as a number or a string of
// digits, or an RFC 3339 string.
func eventTimeOf(v any) (time.Time, error) {
	switch t := v.(type) {
	case int64:
		return time.UnixMilli(t), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) || math.Abs(t) > 1e15 {
			return time.Time{}, fmt.Errorf("%v is not unix milliseconds", t)
		}
		return time.UnixMilli(int64(t)), nil
	case string:
		if ms, err := parseInt(t); err == nil {
			return time.UnixMilli(ms), nil
		}
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is neither unix milliseconds nor an RFC 3339 time", t)
		}
		return at, nil
	}
	return time.Time{}, fmt.Errorf("want unix milliseconds or an RFC 3339 string, got %T", v)
}

func parseInt(s string) (int64, error) {
	var n int64
	if s == "" || len(s) > 16 {
		return 0, fmt.Errorf("not an integer")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not an integer")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}
