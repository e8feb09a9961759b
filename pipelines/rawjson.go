package pipelines

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// jsonPayload is a payload that arrived as JSON, kept as it came: the
// Decoder checks it and takes the key and the dedupe id out of it, and the
// object is decoded only when a step needs it (Event.decode). A pipeline
// that only outputs events never decodes them.
type jsonPayload string

// parseObject checks that raw is one JSON object and returns it for
// lookups. The error of an invalid payload is encoding/json's, which says
// what is wrong and where. The decoder reads payloads with topMembers
// (one pass) instead; tests hold the two to the same answers.
func parseObject(raw string) (gjson.Result, error) {
	if !gjson.Valid(raw) {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return gjson.Result{}, err
		}
		return gjson.Result{}, errors.New("invalid JSON")
	}
	obj := gjson.Parse(raw)
	if !obj.IsObject() {
		return gjson.Result{}, errors.New("want a JSON object, got " + jsonKind(valueOf(obj)))
	}
	return obj, nil
}

// lookupJSON is Path.Lookup on an undecoded object, with the same answers:
// the whole dotted text as one top-level name first, then name by name;
// where a name occurs twice in an object, the last one counts, as when the
// object is decoded.
func lookupJSON(obj gjson.Result, p Path) (any, bool) {
	if len(p.parts) == 0 {
		return nil, false
	}
	if len(p.parts) > 1 {
		if v, ok := member(obj, p.text); ok {
			return valueOf(v), true
		}
	}
	v := obj
	for _, part := range p.parts {
		if !v.IsObject() {
			return nil, false
		}
		var ok bool
		if v, ok = member(v, part); !ok {
			return nil, false
		}
	}
	return valueOf(v), true
}

// member returns the value of name in obj, the last if it occurs twice.
func member(obj gjson.Result, name string) (v gjson.Result, ok bool) {
	obj.ForEach(func(k, val gjson.Result) bool {
		if validUTF8(k.Str) == name {
			v, ok = val, true
		}
		return true
	})
	return v, ok
}

// valueOf is the value decodeObject gives for r, for keys and dedupe ids:
// scalars exactly (numbers through number), objects and arrays only as
// their kind.
func valueOf(r gjson.Result) any {
	switch r.Type {
	case gjson.False:
		return false
	case gjson.True:
		return true
	case gjson.Number:
		return number(json.Number(r.Raw))
	case gjson.String:
		return validUTF8(r.Str)
	case gjson.JSON:
		if r.IsArray() {
			return []any{}
		}
		return map[string]any{}
	}
	return nil
}

// validUTF8 replaces each byte of s that is not valid UTF-8 with U+FFFD, as
// encoding/json does when it decodes a string.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// maxJSONDepth is how deeply a payload may nest, encoding/json's limit.
const maxJSONDepth = 10000

// topMembers reads a payload in one pass: it checks that the payload is
// one JSON object (exactly what encoding/json accepts, and gjson.Valid
// but for nesting deeper than maxJSONDepth) and keeps, meanwhile, the raw
// JSON of the last value of each top-level member it is asked for. Names
// are compared as decoding gives them: escapes undone, each byte of
// invalid UTF-8 as U+FFFD. It replaces a validating pass and a pass per
// looked-up name over the same bytes.
type topMembers struct {
	names []string // the names asked for, at most maxTopNames
	// vals is the raw value of each, "" when absent. (An array: a slice
	// into t itself would make every topMembers escape to the heap.)
	vals [maxTopNames]string
}

// maxTopNames is how many names a topMembers takes: a key and an id, each
// with dots (the whole text and the first name).
const maxTopNames = 4

// reset makes t ask for names.
func (t *topMembers) reset(names []string) {
	if len(names) > maxTopNames {
		panic("pipelines: topMembers asked for more than 4 names")
	}
	t.names = names
}

// scanPayload reads raw into t; its errors are parseObject's.
func (t *topMembers) scanPayload(raw string) error {
	s := jsonScanner{s: raw, names: t.names}
	i := s.ws(0)
	if i < len(raw) && raw[i] == '{' {
		if j, ok := s.object(i+1, 1, true); ok && s.ws(j) == len(raw) {
			t.vals = s.vals
			return nil
		}
	} else if j, ok := s.value(i, 0); ok && s.ws(j) == len(raw) {
		return errors.New("want a JSON object, got " + jsonKind(rawValue(strings.TrimSpace(raw))))
	}
	// Invalid: encoding/json says what is wrong and where.
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return err
	}
	return errors.New("invalid JSON")
}

// lookup is Path.Lookup on the decoded payload, from what scanPayload
// kept: the whole dotted text as one top-level name first, then name by
// name, nested objects read as they are reached. The paths' first names
// (and whole texts) must be among t.names. Absent and null are both nil.
func (t *topMembers) lookup(p Path) any {
	if len(p.parts) == 0 {
		return nil
	}
	if len(p.parts) > 1 {
		if v := t.val(p.text); v != "" {
			return rawValue(v)
		}
	}
	v := t.val(p.parts[0])
	for k := 1; k < len(p.parts); k++ {
		if v == "" || v[0] != '{' {
			return nil
		}
		s := jsonScanner{s: v, names: p.parts[k : k+1]}
		s.object(1, 1, true) // checked already
		v = s.vals[0]
	}
	if v == "" {
		return nil
	}
	return rawValue(v)
}

func (t *topMembers) val(name string) string {
	for i, n := range t.names {
		if n == name {
			return t.vals[i]
		}
	}
	return ""
}

// rawValue is valueOf for the raw JSON of one checked value.
func rawValue(v string) any {
	switch v[0] {
	case '"':
		if s := v[1 : len(v)-1]; strings.IndexByte(s, '\\') < 0 && utf8.ValidString(s) {
			return s
		}
		var s string
		_ = json.Unmarshal([]byte(v), &s) // checked: escapes undone, bad UTF-8 as U+FFFD
		return s
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	case '{':
		return map[string]any{}
	case '[':
		return []any{}
	}
	return number(json.Number(v))
}

// jsonScanner checks JSON text (RFC 8259) byte by byte. Each method takes
// the index to start at and returns the index after what it read and
// whether that was valid.
type jsonScanner struct {
	s string
	// names are the members to keep of the object read with keep, vals
	// their raw values (as in topMembers; the scanner holds no pointer to
	// it, so that neither escapes to the heap).
	names []string
	vals  [maxTopNames]string
}

func (s *jsonScanner) ws(i int) int {
	for i < len(s.s) {
		switch s.s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value reads one value after any white space; depth is the nesting of
// the container it is in.
func (s *jsonScanner) value(i, depth int) (int, bool) {
	i = s.ws(i)
	if i >= len(s.s) {
		return i, false
	}
	switch c := s.s[i]; c {
	case '{':
		return s.object(i+1, depth+1, false)
	case '[':
		return s.array(i+1, depth+1)
	case '"':
		j, _, ok := s.str(i + 1)
		return j, ok
	case 't':
		return s.literal(i, "true")
	case 'f':
		return s.literal(i, "false")
	case 'n':
		return s.literal(i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return s.number(i)
		}
	}
	return i, false
}

// object reads the members of an object after its "{"; with keep, it
// keeps the values of the members s.t asks for.
func (s *jsonScanner) object(i, depth int, keep bool) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	i = s.ws(i)
	if i < len(s.s) && s.s[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(s.s) || s.s[i] != '"' {
			return i, false
		}
		start := i + 1
		j, plain, ok := s.str(start)
		if !ok {
			return j, false
		}
		name := s.s[start : j-1]
		i = s.ws(j)
		if i >= len(s.s) || s.s[i] != ':' {
			return i, false
		}
		vstart := s.ws(i + 1)
		if i, ok = s.value(vstart, depth); !ok {
			return i, false
		}
		if keep {
			s.keep(name, plain, s.s[vstart:i])
		}
		i = s.ws(i)
		if i >= len(s.s) {
			return i, false
		}
		switch s.s[i] {
		case '}':
			return i + 1, true
		case ',':
			i = s.ws(i + 1)
		default:
			return i, false
		}
	}
}

// keep records v as the value of the member named by the raw string
// name, if it is asked for; plain says name has no escape and is valid
// UTF-8, so that it reads as it is.
func (s *jsonScanner) keep(name string, plain bool, v string) {
	if !plain {
		var d string
		_ = json.Unmarshal([]byte(`"`+name+`"`), &d) // checked: escapes undone, bad UTF-8 as U+FFFD
		name = d
	}
	for k, n := range s.names {
		if n == name {
			s.vals[k] = v
		}
	}
}

// array reads the elements of an array after its "[".
func (s *jsonScanner) array(i, depth int) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	i = s.ws(i)
	if i < len(s.s) && s.s[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = s.value(i, depth); !ok {
			return i, false
		}
		i = s.ws(i)
		if i >= len(s.s) {
			return i, false
		}
		switch s.s[i] {
		case ']':
			return i + 1, true
		case ',':
			i++
		default:
			return i, false
		}
	}
}

// str reads a string after its opening quote; plain says it has no
// escape and is valid UTF-8.
func (s *jsonScanner) str(i int) (int, bool, bool) {
	start, plain, ascii := i, true, true
	for i < len(s.s) {
		c := s.s[i]
		switch {
		case c == '"':
			if !ascii && plain {
				plain = utf8.ValidString(s.s[start:i])
			}
			return i + 1, plain, true
		case c < ' ':
			return i, false, false
		case c == '\\':
			plain = false
			i++
			if i >= len(s.s) {
				return i, false, false
			}
			switch s.s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(s.s) || !isHex(s.s[i+1]) || !isHex(s.s[i+2]) || !isHex(s.s[i+3]) || !isHex(s.s[i+4]) {
					return i, false, false
				}
				i += 5
			default:
				return i, false, false
			}
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
	}
	return i, false, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *jsonScanner) number(i int) (int, bool) {
	if s.s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s.s):
		return i, false
	case s.s[i] == '0':
		i++
	case s.s[i] >= '1' && s.s[i] <= '9':
		i = s.digits(i)
	default:
		return i, false
	}
	if i < len(s.s) && s.s[i] == '.' {
		j := s.digits(i + 1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s.s) && (s.s[i] == 'e' || s.s[i] == 'E') {
		i++
		if i < len(s.s) && (s.s[i] == '+' || s.s[i] == '-') {
			i++
		}
		j := s.digits(i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func (s *jsonScanner) digits(i int) int {
	for i < len(s.s) && s.s[i] >= '0' && s.s[i] <= '9' {
		i++
	}
	return i
}

func (s *jsonScanner) literal(i int, lit string) (int, bool) {
	if strings.HasPrefix(s.s[i:], lit) {
		return i + len(lit), true
	}
	return i, false
}
