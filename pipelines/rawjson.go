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
// what is wrong and where.
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
