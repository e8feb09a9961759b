package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// A request body is one JSON object, a JSON array of objects, or NDJSON:
// one object per line. readBody reads and inflates it within its limits;
// splitBody cuts it into events.

// bodyError is a request that cannot be taken at all: its status and what
// to tell the client.
type bodyError struct {
	status     int
	msg        string
	retryAfter time.Duration // > 0: sent as Retry-After
}

func (e *bodyError) Error() string { return e.msg }

func bodyErrorf(status int, format string, args ...any) *bodyError {
	return &bodyError{status: status, msg: fmt.Sprintf(format, args...)}
}

// bodyLimits are the limits readBody and splitBody check.
type bodyLimits struct {
	maxBody, maxDecompressed int64
	maxEvents                int
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readBody reads r (already capped by http.MaxBytesReader at
// l.maxBody), inflating it when gz is set, into a buffer that never grows
// past its limit. The inflated size is counted while inflating: reading
// stops one byte past l.maxDecompressed, so a gzip bomb costs at most that
// much memory, and each growth of the inflated buffer is first taken from
// budget (the source's MaxInflatingBytes; nil: none), or the request is
// answered 503.
func readBody(r io.Reader, gz bool, l bodyLimits, budget *lease) ([]byte, error) {
	tooBig := func(err error) error {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return bodyErrorf(http.StatusRequestEntityTooLarge, "body is over max_body_bytes %d", l.maxBody)
		}
		return nil
	}
	if !gz {
		b, over, err := readLimited(r, l.maxBody, nil)
		if err != nil {
			if e := tooBig(err); e != nil {
				return nil, e
			}
			return nil, err
		}
		if over { // r is not capped after all
			return nil, bodyErrorf(http.StatusRequestEntityTooLarge, "body is over max_body_bytes %d", l.maxBody)
		}
		return b, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		if e := tooBig(err); e != nil {
			return nil, e
		}
		if isTimeout(err) {
			return nil, err
		}
		return nil, bodyErrorf(http.StatusBadRequest, "body is not gzip (Content-Encoding: gzip): %v", err)
	}
	b, over, err := readLimited(zr, l.maxDecompressed, budget)
	if err != nil {
		if errors.Is(err, errOverBudget) {
			return nil, &bodyError{status: http.StatusServiceUnavailable, retryAfter: InflateRetryAfter,
				msg: fmt.Sprintf("too many gzip bodies are being inflated at once: this source's budget of %d inflated bytes (MaxInflatingBytes) is in use: retry after %ss", budget.b.limit, seconds(InflateRetryAfter))}
		}
		if e := tooBig(err); e != nil {
			return nil, e
		}
		if isTimeout(err) {
			return nil, err
		}
		return nil, bodyErrorf(http.StatusBadRequest, "gzip body is corrupt after %d bytes inflated: %v", len(b), err)
	}
	if over {
		return nil, bodyErrorf(http.StatusRequestEntityTooLarge, "gzip body inflates to more than max_decompressed_bytes %d", l.maxDecompressed)
	}
	return b, nil
}

// isTimeout reports whether err is a deadline passed on the connection.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// rawEvent is one event cut from a body: its line (1-based: the NDJSON
// line, the array index + 1, or 1 for a single object), its bytes, and,
// when it is not a JSON object, why.
type rawEvent struct {
	line int
	data []byte
	bad  *Rejection
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// jsonSpace is JSON's whitespace.
const jsonSpace = " \t\r\n"

func errEmpty() error {
	return bodyErrorf(http.StatusBadRequest, "body is empty: want a JSON object, a JSON array of objects, or NDJSON (one object per line)")
}

// splitBody cuts body into events. With ndjson (Content-Type
// application/x-ndjson) every non-blank line is an event. Otherwise the
// body is looked at: a JSON array is a list of events, a single JSON value
// is one event, and anything else is taken as NDJSON, so that a client
// sending NDJSON as application/json is understood too. An NDJSON line or
// array element that is not a JSON object is a rejected event; the others
// stand. More than maxEvents events is a 413.
func splitBody(body []byte, ndjson bool, maxEvents int) ([]rawEvent, error) {
	body = bytes.TrimPrefix(body, utf8BOM)
	trimmed := bytes.TrimLeft(body, jsonSpace)
	if len(trimmed) == 0 {
		return nil, errEmpty()
	}
	if !ndjson {
		switch trimmed[0] {
		case '[':
			return splitArray(body, maxEvents)
		case '{':
			if single(body) {
				return []rawEvent{{line: 1, data: bytes.Trim(body, jsonSpace)}}, nil
			}
		}
	}
	return splitLines(body, maxEvents)
}

// single reports whether body is exactly one JSON value.
func single(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return false
	}
	return len(bytes.TrimLeft(body[dec.InputOffset():], jsonSpace)) == 0
}

func splitArray(body []byte, maxEvents int) ([]rawEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '['
		return nil, bodyErrorf(http.StatusBadRequest, "body is not a JSON array: %v", err)
	}
	var out []rawEvent
	for dec.More() {
		if len(out) == maxEvents {
			return nil, tooManyEvents(maxEvents)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bodyErrorf(http.StatusBadRequest, "body is not a valid JSON array: element %d (at byte %d): %v", len(out)+1, dec.InputOffset(), err)
		}
		ev := rawEvent{line: len(out) + 1, data: raw}
		if raw[0] != '{' {
			ev.bad = &Rejection{Reason: ReasonNotJSON, Message: fmt.Sprintf("array element %d is %s, not an object", ev.line, jsonKind(raw))}
		}
		out = append(out, ev)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, bodyErrorf(http.StatusBadRequest, "body is not a valid JSON array: %v", err)
	}
	if rest := bytes.TrimLeft(body[dec.InputOffset():], jsonSpace); len(rest) > 0 {
		return nil, bodyErrorf(http.StatusBadRequest, "body has data after its JSON array (at byte %d)", dec.InputOffset())
	}
	if len(out) == 0 {
		return nil, bodyErrorf(http.StatusBadRequest, "body is an empty JSON array: no events")
	}
	return out, nil
}

func splitLines(body []byte, maxEvents int) ([]rawEvent, error) {
	var out []rawEvent
	line := 0
	for len(body) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		l = bytes.Trim(l, jsonSpace) // JSON's whitespace only: a line of \v is a bad line, not a blank one
		if len(l) == 0 {
			continue
		}
		if len(out) == maxEvents {
			return nil, tooManyEvents(maxEvents)
		}
		ev := rawEvent{line: line, data: l}
		var raw json.RawMessage
		switch err := json.Unmarshal(l, &raw); {
		case err != nil:
			ev.bad = &Rejection{Reason: ReasonNotJSON, Message: "line is not JSON: " + jsonError(err)}
		case l[0] != '{':
			ev.bad = &Rejection{Reason: ReasonNotJSON, Message: fmt.Sprintf("line is %s, not an object", jsonKind(l))}
		}
		out = append(out, ev)
	}
	if len(out) == 0 {
		return nil, errEmpty()
	}
	return out, nil
}

func tooManyEvents(maxEvents int) error {
	return bodyErrorf(http.StatusRequestEntityTooLarge, "body has more than max_events %d events", maxEvents)
}

// jsonError says what is wrong with JSON, and where.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	return err.Error()
}

// jsonKind names the kind of a valid JSON value, for messages.
func jsonKind(v []byte) string {
	switch v[0] {
	case '[':
		return "a JSON array"
	case '"':
		return "a JSON string"
	case 't', 'f':
		return "a JSON boolean"
	case 'n':
		return "JSON null"
	}
	return "a JSON number"
}
