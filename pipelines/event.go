package pipelines

import (
	"encoding/json"
	"maps"
	"math"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/eddy-streams/eddy/processor"
)

// Names that expressions see besides the payload's top-level fields.
const (
	EnvKey   = "_key"  // the message key (processor.Message.Key)
	EnvID    = "_id"   // the stream entry id (processor.Message.ID)
	EnvState = "state" // the key's state: state.<name>.<field>
)

// Event is one message on its way through a pipeline's steps: the engine's
// Message and its decoded payload.
//
// The payload is copied before the first change, so an attempt that fails
// leaves the message's decoded payload as it was for the retry. Change it
// only through Set and Delete: later steps' expressions see those changes.
type Event struct {
	msg     *processor.Message
	payload map[string]any
	owned   bool           // payload is this event's own copy
	env     map[string]any // expression environment, built on first use
	lean    map[string]any // the same without the payload (leanEnv)
	raw     string         // the payload's JSON as it arrived, if it came as JSON
	// stateNames are the pipeline's keyed state names, shown to
	// expressions as state.<name>.
	stateNames []string
	// readModel prefixes the hashes state steps write (the read model's
	// version: processor.VersionPrefix).
	readModel string
}

// NewEvent returns the event of m, whose Data is the payload as a
// pipeline's Decoder left it (a map[string]any, or JSON checked by the
// Decoder and decoded here on first use; anything else is an empty
// payload). A pipeline's Handler makes one per attempt; tests of custom
// steps may use it directly.
func NewEvent(m *processor.Message) *Event {
	switch d := m.Data.(type) {
	case map[string]any:
		return &Event{msg: m, payload: d}
	case jsonPayload:
		return &Event{msg: m, raw: string(d)}
	}
	return &Event{msg: m}
}

// decode decodes a payload that came as JSON, once.
func (e *Event) decode() error {
	if e.payload != nil || e.raw == "" {
		return nil
	}
	p, err := decodeObject([]byte(e.raw))
	if err != nil {
		return err
	}
	e.payload = p
	return nil
}

// Message returns the engine's message: its Key, ID and DedupeID, and Emit
// and SetState to record effects.
func (e *Event) Message() *processor.Message { return e.msg }

// Payload returns the payload object. Treat it as read-only; see Set.
func (e *Event) Payload() map[string]any {
	_ = e.decode() // the handler has decoded it already if it could be
	if e.payload == nil {
		e.payload = map[string]any{}
		e.owned = true
	}
	return e.payload
}

// Get returns the value at path and whether it is present and not null.
func (e *Event) Get(path Path) (any, bool) {
	if e.payload == nil && e.raw != "" {
		// Not decoded (no step needs the whole payload): one field is read
		// from the JSON as it arrived, as the decoder would have made it. An
		// object or array is read by decoding, which keeps its members.
		v, ok := lookupJSON(gjson.Parse(e.raw), path)
		switch v.(type) {
		case map[string]any, []any:
		default:
			return v, ok && v != nil
		}
	}
	_ = e.decode()
	v, ok := path.Lookup(e.payload)
	return v, ok && v != nil
}

// Set sets a top-level payload field.
func (e *Event) Set(field string, v any) {
	e.own()
	e.payload[field] = v
	if e.env != nil && !reserved(field) {
		e.env[field] = v
	}
}

// Delete removes a top-level payload field.
func (e *Event) Delete(field string) {
	e.own()
	delete(e.payload, field)
	if e.env != nil && !reserved(field) {
		delete(e.env, field)
	}
}

// payloadJSON returns the payload as JSON: as it arrived while no step has
// changed it (no work, and numbers exactly as they were written), encoded
// again otherwise.
func (e *Event) payloadJSON() (string, error) {
	if !e.owned && e.raw != "" {
		return e.raw, nil
	}
	b, err := json.Marshal(e.Payload())
	return string(b), err
}

func (e *Event) own() {
	_ = e.decode()
	if !e.owned {
		e.payload = maps.Clone(e.payload)
		if e.payload == nil {
			e.payload = map[string]any{}
		}
		e.owned = true
	}
}

// Env returns the expression environment: the payload's top-level fields
// plus EnvKey and EnvID (which hide payload fields of the same names).
// It is built on first use and kept in step with Set and Delete.
func (e *Event) Env() map[string]any {
	if e.env == nil {
		_ = e.decode()
		e.env = make(map[string]any, len(e.payload)+2)
		maps.Copy(e.env, e.payload)
		e.env[EnvKey] = e.msg.Key
		e.env[EnvID] = e.msg.ID
		if len(e.stateNames) > 0 {
			e.env[EnvState] = e.stateEnv()
		}
	}
	return e.env
}

// leanEnv is the environment of an expression that reads no payload:
// _key, _id and state only, so the payload is not decoded for it.
func (e *Event) leanEnv() map[string]any {
	if e.env != nil {
		return e.env
	}
	if e.lean == nil {
		e.lean = make(map[string]any, 3)
		e.lean[EnvKey] = e.msg.Key
		e.lean[EnvID] = e.msg.ID
		if len(e.stateNames) > 0 {
			e.lean[EnvState] = e.stateEnv()
		}
	}
	return e.lean
}

// stateEnv is the key's state for expressions: name → field → value, with
// integers as int64, other numbers as float64 and the rest as strings.
func (e *Event) stateEnv() map[string]any {
	out := make(map[string]any, len(e.stateNames))
	for _, name := range e.stateNames {
		st, err := e.msg.State(name)
		fields := map[string]any{}
		if err == nil {
			for k, v := range st.Fields() {
				fields[k] = stateValue(v)
			}
		}
		out[name] = fields
	}
	return out
}

// refreshState shows expressions the state as this event's own effects
// have left it.
func (e *Event) refreshState() {
	if len(e.stateNames) == 0 {
		return
	}
	if e.env != nil {
		e.env[EnvState] = e.stateEnv()
	}
	if e.lean != nil {
		e.lean[EnvState] = e.stateEnv()
	}
}

func stateValue(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f
	}
	return s
}

// reserved reports whether name is one of the names expressions see
// instead of a payload field.
func reserved(name string) bool { return name == EnvKey || name == EnvID || name == EnvState }
