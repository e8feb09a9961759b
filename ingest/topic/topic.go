// Package topic parses MQTT topic filters with named levels, such as
// "sensors/{device_id}/{sensor}", into the filter a broker understands
// ("sensors/+/+") and a matcher that returns the values of the named levels
// in a topic a message was published to.
//
// It is a leaf: it imports nothing of Eddy's, so that both the config
// (package pipelines, which validates sources.mqtt[].topics[].filter) and
// the MQTT source (package ingest) use the one parser.
//
// A filter is a list of levels separated by "/" (MQTT 5, 4.7). A level is
// one of:
//
//   - a literal, which a topic level must equal ("" is a literal too:
//     "a//b" has an empty middle level);
//   - "+", any one level;
//   - "{name}", any one level, whose value the matcher returns under name:
//     a letter or "_", then letters, digits or "_"; each name once;
//   - "#", any number of levels (none too), only as the last level.
//
// A wildcard or a name fills its whole level: "a+", "{x}y", "x#" and "{}"
// are errors, and so are "{" and "}" anywhere else. Shared subscriptions
// are not written here ("$share/..." is an error): the config's
// share_group adds the prefix.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest filter or topic in bytes (an MQTT string's bound).
const MaxLen = 65535

// Filter is a parsed topic filter.
type Filter struct {
	text   string   // as written
	mqtt   string   // with "+" for each named level
	levels []level  // the filter's levels
	names  []string // the named levels' names, in order
	multi  bool     // ends with "#"
}

type kind uint8

const (
	literal kind = iota
	single       // "+" or "{name}"
	multi        // "#"
)

type level struct {
	kind  kind
	text  string // the literal
	named int    // index in names of a named level, else -1
}

// Error is a filter that does not parse: Filter is the text, Level the
// 1-based level at fault (0 for the whole filter), Msg what is wrong.
type Error struct {
	Filter string
	Level  int
	Msg    string
}

func (e *Error) Error() string {
	if e.Level == 0 {
		return e.Msg
	}
	return fmt.Sprintf("level %d: %s", e.Level, e.Msg)
}

// ErrEmpty is returned for an empty filter.
var ErrEmpty = errors.New("empty topic filter")

// Parse parses a topic filter with named levels.
func Parse(filter string) (*Filter, error) {
	switch {
	case filter == "":
		return nil, ErrEmpty
	case len(filter) > MaxLen:
		return nil, &Error{Filter: filter, Msg: fmt.Sprintf("%d bytes, over the %d an MQTT topic filter may have", len(filter), MaxLen)}
	case !utf8.ValidString(filter):
		return nil, &Error{Filter: filter, Msg: "not valid UTF-8"}
	case strings.ContainsRune(filter, 0):
		return nil, &Error{Filter: filter, Msg: "contains the null character U+0000"}
	case strings.HasPrefix(filter, "$share/"):
		return nil, &Error{Filter: filter, Msg: `a shared subscription is not written in the filter: set share_group and give the filter without "$share/<group>/"`}
	}
	f := &Filter{text: filter}
	parts := strings.Split(filter, "/")
	f.levels = make([]level, len(parts))
	mqtt := make([]string, len(parts))
	for i, p := range parts {
		at := func(format string, args ...any) error {
			return &Error{Filter: filter, Level: i + 1, Msg: fmt.Sprintf(format, args...)}
		}
		l := level{named: -1}
		switch {
		case p == "#":
			if i != len(parts)-1 {
				return nil, at(`"#" must be the last level`)
			}
			l.kind, f.multi = multi, true
		case p == "+":
			l.kind = single
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") && len(p) >= 2:
			name := p[1 : len(p)-1]
			if err := checkName(name); err != nil {
				return nil, at("%q: %v", p, err)
			}
			for j, n := range f.names {
				if n == name {
					return nil, at("%q: the name %q is already the name of level %d", p, name, f.levelOfName(j)+1)
				}
			}
			l.kind, l.named = single, len(f.names)
			f.names = append(f.names, name)
			p = "+"
		case strings.ContainsAny(p, "+#"):
			return nil, at(`%q: a wildcard ("+" or "#") must fill its whole level`, p)
		case strings.ContainsAny(p, "{}"):
			return nil, at(`%q: a named level is written "{name}" and fills its whole level`, p)
		default:
			l.text = p
		}
		f.levels[i] = l
		mqtt[i] = p
	}
	f.mqtt = strings.Join(mqtt, "/")
	return f, nil
}

func (f *Filter) levelOfName(j int) int {
	for i, l := range f.levels {
		if l.named == j {
			return i
		}
	}
	return -1
}

// checkName checks a level's name: a letter or "_", then letters, digits
// or "_" (so it can be a top-level field of a JSON event and an expression
// identifier).
func checkName(name string) error {
	if name == "" {
		return errors.New("the name is empty")
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("the name %q must be a letter or _ followed by letters, digits or _", name)
		}
	}
	return nil
}

// String is the filter as written.
func (f *Filter) String() string { return f.text }

// MQTT is the filter for the broker: each named level becomes "+".
func (f *Filter) MQTT() string { return f.mqtt }

// Names are the named levels' names, in the order of the filter.
func (f *Filter) Names() []string { return f.names }

// Has reports whether name is a named level.
func (f *Filter) Has(name string) bool {
	for _, n := range f.names {
		if n == name {
			return true
		}
	}
	return false
}

// Match reports whether topic matches the filter and returns the values of
// the named levels, in the order of Names (nil when there are none). A
// topic starting with "$" (such as "$SYS/...") matches a filter only if
// the filter's first level is that literal (MQTT 5, 4.7.2). An invalid
// topic (empty, a wildcard or the null character in it, not UTF-8, over
// MaxLen bytes)
// matches nothing.
func (f *Filter) Match(topic string) ([]string, bool) {
	if topic == "" || len(topic) > MaxLen || strings.ContainsAny(topic, "+#\x00") || !utf8.ValidString(topic) {
		return nil, false
	}
	if strings.HasPrefix(topic, "$") && (len(f.levels) == 0 || f.levels[0].kind != literal) {
		return nil, false
	}
	var values []string
	if len(f.names) > 0 {
		values = make([]string, len(f.names))
	}
	rest := topic
	for i, l := range f.levels {
		if l.kind == multi {
			return values, true // "#" matches what is left, nothing too
		}
		part, tail, more := strings.Cut(rest, "/")
		switch l.kind {
		case literal:
			if part != l.text {
				return nil, false
			}
		case single:
			if l.named >= 0 {
				values[l.named] = part
			}
		}
		if !more {
			// The topic ends here: it matches if the filter ends too, or
			// goes on with only "#" (which matches the parent level).
			switch {
			case i == len(f.levels)-1:
				return values, true
			case i == len(f.levels)-2 && f.levels[i+1].kind == multi:
				return values, true
			}
			return nil, false
		}
		rest = tail
	}
	return nil, false // the topic has more levels than the filter
}
