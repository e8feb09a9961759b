package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Registry holds schemas by event type and version. Fill it with Add, then
// share it: lookups and validation are safe for concurrent use, Add is not.
type Registry struct {
	types map[string]map[int]*Schema
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{types: map[string]map[int]*Schema{}}
}

// ErrDuplicate is returned by Add for a type and version already registered.
var ErrDuplicate = errors.New("schema: type and version already registered")

// Add registers s as version (>= 1) of the event type typ (not empty).
func (r *Registry) Add(typ string, version int, s *Schema) error {
	switch {
	case typ == "":
		return errors.New("schema: empty event type")
	case version < 1:
		return fmt.Errorf("schema: %s version %d: want a version >= 1", typ, version)
	case s == nil:
		return fmt.Errorf("schema: %s v%d: nil schema", typ, version)
	}
	vs := r.types[typ]
	if vs == nil {
		vs = map[int]*Schema{}
		r.types[typ] = vs
	}
	if _, dup := vs[version]; dup {
		return fmt.Errorf("%w: %s v%d", ErrDuplicate, typ, version)
	}
	vs[version] = s
	return nil
}

// Lookup returns the schema of typ at version, or nil.
func (r *Registry) Lookup(typ string, version int) *Schema {
	return r.types[typ][version]
}

// Types returns the registered event types, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.types))
	for t := range r.types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Versions returns the registered versions of typ, ascending.
func (r *Registry) Versions(typ string) []int {
	out := make([]int, 0, len(r.types[typ]))
	for v := range r.types[typ] {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// Validate validates v (as DecodeJSON returns it) against typ at version.
// It returns nil or a *ValidationError whose Schema names the two; a version
// with no schema is one with the rule RuleVersion, at versionPointer (the
// pointer of the event's version field, "" when it has none).
func (r *Registry) Validate(typ string, version int, versionPointer string, v any) error {
	s := r.Lookup(typ, version)
	if s == nil {
		return VersionError(versionPointer, fmt.Sprintf("no schema registered for %s version %d (registered: %s)", typ, version, r.versionList(typ)))
	}
	err := s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.Schema = fmt.Sprintf("%s v%d", typ, version)
	}
	return err
}

// versionList formats the versions of typ for messages: "1, 2" or "none".
func (r *Registry) versionList(typ string) string {
	vs := r.Versions(typ)
	if len(vs) == 0 {
		return "none"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}

// MaxVersion bounds a version number.
const MaxVersion = 1<<31 - 1

// Version reads an event's version field: a JSON integer (2, or 2.0, as
// JSON Schema counts integers) from 1 to MaxVersion. v is as DecodeJSON
// returns it (json.Number), or an int64 or float64 as other decoders give.
func Version(v any) (int, bool) {
	var f float64
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return versionInRange(i)
		}
		if exponentTooLarge(string(t)) {
			return 0, false
		}
		r, ok := new(big.Rat).SetString(string(t)) // exact: 2.0000000000000001 is no integer
		if !ok || !r.IsInt() || !r.Num().IsInt64() {
			return 0, false
		}
		return versionInRange(r.Num().Int64())
	case int64:
		return versionInRange(t)
	case int:
		return versionInRange(int64(t))
	case float64:
		f = t
	default:
		return 0, false
	}
	if f != math.Trunc(f) || f < 1 || f > MaxVersion {
		return 0, false
	}
	return int(f), true
}

func versionInRange(i int64) (int, bool) {
	if i < 1 || i > MaxVersion {
		return 0, false
	}
	return int(i), true
}
