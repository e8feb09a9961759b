package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/eddy-streams/eddy/processor"
)

// ReasonMissingID is the dead-letter reason of an event without the
// dedupe id its pipeline requires.
const ReasonMissingID = "missing_id"

// decoder is a pipeline's processor.Decoder. Everything it needs per event
// is worked out at load time.
type decoder struct {
	payload string // the field holding the JSON payload; "" = the entry's fields
	key     Path
	id      Path // zero without dedupe
	dedupe  bool
	// names are the top-level names the key and id are looked up by in a
	// JSON payload: each path's first name, and its whole text when it
	// has dots (see Path.Lookup).
	names []string
}

func newDecoder(p *Pipeline) *decoder {
	d := &decoder{payload: p.Input.Payload}
	d.key = d.path(p.Key)
	paths := []Path{d.key}
	if p.Dedupe != nil {
		d.id, d.dedupe = d.path(p.Dedupe.ID), true
		paths = append(paths, d.id)
	}
	for _, q := range paths {
		if len(q.parts) > 1 && !slices.Contains(d.names, q.text) {
			d.names = append(d.names, q.text)
		}
		if len(q.parts) > 0 && !slices.Contains(d.names, q.parts[0]) {
			d.names = append(d.names, q.parts[0])
		}
	}
	return d
}

// scan reads a JSON payload into t in one pass, keeping what the key and
// id are looked up in.
func (d *decoder) scan(t *topMembers, raw string) error {
	t.reset(d.names)
	return t.scanPayload(raw)
}

// path parses a key or id path: dotted into a JSON payload, a plain field
// name otherwise. Validation has already checked it.
func (d *decoder) path(s string) Path {
	if d.payload == "" {
		return fieldPath(s)
	}
	p, _ := ParsePath(s)
	return p
}

// Decode sets m's Data, Key and DedupeID. Data is the payload: with
// input.payload, its JSON as it arrived (a jsonPayload, checked here and
// decoded when a step needs it); otherwise a map[string]any of the fields.
func (d *decoder) Decode(m *processor.Message) error {
	if d.payload != "" {
		raw, ok := m.Field(d.payload)
		if !ok {
			return processor.Permanentf(processor.ReasonNotJSON, "entry %s: payload field %q is missing", m.ID, d.payload)
		}
		var obj topMembers
		if err := d.scan(&obj, raw); err != nil {
			return processor.Permanentf(processor.ReasonNotJSON, "entry %s: payload field %q: %w", m.ID, d.payload, err)
		}
		key, id, err := d.extract(obj.lookup)
		if err != nil {
			return fmt.Errorf("entry %s: %w", m.ID, err)
		}
		m.Data, m.Key, m.DedupeID = jsonPayload(raw), key, id
		return nil
	}
	payload := make(map[string]any, len(m.Fields)/2)
	for i := 0; i+1 < len(m.Fields); i += 2 {
		payload[m.Fields[i]] = m.Fields[i+1]
	}
	key, id, err := d.extract(func(p Path) any { v, _ := p.Lookup(payload); return v })
	if err != nil {
		return fmt.Errorf("entry %s: %w", m.ID, err)
	}
	m.Data, m.Key, m.DedupeID = payload, key, id
	return nil
}

// extract returns the key and dedupe id of a payload, found with lookup.
func (d *decoder) extract(lookup func(Path) any) (key, id string, err error) {
	v := lookup(d.key)
	key, ok := scalarString(v)
	if !ok {
		return "", "", processor.Permanentf(processor.ReasonMissingKey, "key %q %s", d.key, notScalar(v))
	}
	if d.dedupe {
		v = lookup(d.id)
		if id, ok = scalarString(v); !ok {
			return "", "", processor.Permanentf(ReasonMissingID, "dedupe id %q %s", d.id, notScalar(v))
		}
	}
	return key, id, nil
}

// notScalar says why v is not a key, for messages.
func notScalar(v any) string {
	switch v.(type) {
	case nil:
		return "is missing or null"
	case string:
		return "is empty"
	}
	return "is " + jsonKind(v) + ", not a string or number"
}

// EncodeEvent turns one NDJSON line (a JSON object) into the fields of a
// stream entry that the pipeline's Decoder accepts, and returns the event's
// key (for routing with processor.PartitionOf). With input.payload set the
// fields are [payload, <the line, compacted>]; otherwise each top-level
// field becomes an entry field, sorted by name, strings as they are, other
// values as JSON, nulls left out. The line must hold the key, and the dedupe id when
// dedupe is on.
func (p *Pipeline) EncodeEvent(line []byte) (key string, fields []string, err error) {
	d := p.dec
	if d == nil {
		return "", nil, fmt.Errorf("pipelines: pipeline %q was not built by Load or Parse", p.Name)
	}
	if d.payload != "" {
		var obj topMembers
		if err := d.scan(&obj, string(line)); err != nil {
			return "", nil, fmt.Errorf("event is not a JSON object: %w", err)
		}
		if key, _, err = d.extract(obj.lookup); err != nil {
			return "", nil, err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, line); err != nil {
			return "", nil, fmt.Errorf("event is not a JSON object: %w", err)
		}
		return key, []string{d.payload, buf.String()}, nil
	}

	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return "", nil, fmt.Errorf("event is not a JSON object: %w", err)
	}
	if obj == nil {
		return "", nil, fmt.Errorf("event is not a JSON object: got null")
	}
	names := sortedKeys(obj)
	fields = make([]string, 0, 2*len(names))
	payload := make(map[string]any, len(names))
	for _, name := range names {
		raw := obj[name]
		if string(raw) == "null" { // an absent field, as the JSON decoder sees it
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil { // not a string: keep its JSON, compacted
			var buf bytes.Buffer
			_ = json.Compact(&buf, raw) // raw came out of a valid document
			s = buf.String()
		}
		fields = append(fields, name, s)
		payload[name] = s
	}
	if key, _, err = d.extract(func(p Path) any { v, _ := p.Lookup(payload); return v }); err != nil {
		return "", nil, err
	}
	return key, fields, nil
}

var _ processor.Decoder = (*decoder)(nil)
