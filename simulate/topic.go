package simulate

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/tidwall/gjson"
)

// TopicUnknown stands in a topic for a field the event lacks (or holds an
// object, an array or null in).
const TopicUnknown = "unknown"

// Topic is an MQTT topic template: levels with {field} placeholders, such
// as "sensors/{device_id}/{sensor}", each filled with that top-level field
// of the event being published.
type Topic struct {
	text  string
	parts []topicPart
}

// topicPart is literal text, or a field to fill in.
type topicPart struct {
	text  string
	field bool
}

var topicField = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseTopic parses a topic template. A placeholder is {name}, name being
// letters, digits, _ and -; the rest is taken as it is. A publish topic has
// no wildcards, so + and # are refused, and so is an empty template or
// level.
func ParseTopic(s string) (*Topic, error) {
	t := &Topic{text: s}
	if s == "" {
		return nil, fmt.Errorf("topic template is empty")
	}
	if strings.ContainsAny(s, "+#") {
		return nil, fmt.Errorf("topic template %q: + and # are wildcards, for subscribing; a published topic has none", s)
	}
	if strings.ContainsRune(s, 0) {
		return nil, fmt.Errorf("topic template %q: holds a NUL byte", s)
	}
	for i, level := range strings.Split(s, "/") {
		if level == "" {
			return nil, fmt.Errorf("topic template %q: level %d is empty", s, i+1)
		}
	}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		closing := strings.IndexByte(rest, '}')
		switch {
		case open < 0 && closing < 0:
			t.parts = append(t.parts, topicPart{text: rest})
			rest = ""
			continue
		case closing >= 0 && (open < 0 || closing < open):
			return nil, fmt.Errorf("topic template %q: } without {", s)
		}
		if open > 0 {
			t.parts = append(t.parts, topicPart{text: rest[:open]})
		}
		rest = rest[open+1:]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return nil, fmt.Errorf("topic template %q: { without }", s)
		}
		name := rest[:end]
		if !topicField.MatchString(name) {
			return nil, fmt.Errorf("topic template %q: placeholder {%s}: want a field name of letters, digits, _ and -", s, name)
		}
		t.parts = append(t.parts, topicPart{text: name, field: true})
		rest = rest[end+1:]
	}
	return t, nil
}

// String returns the template as parsed.
func (t *Topic) String() string { return t.text }

// Fill returns the topic of event: each placeholder replaced with the
// event's top-level field of that name (a string as it is, a number or a
// boolean as written), with /, +, # and control characters in it replaced
// by _ so that it stays one level; TopicUnknown where the event has no
// such field or is not JSON.
func (t *Topic) Fill(event []byte) string {
	var b strings.Builder
	for _, p := range t.parts {
		if !p.field {
			b.WriteString(p.text)
			continue
		}
		b.WriteString(level(gjson.GetBytes(event, p.text))) // names hold none of gjson's path syntax
	}
	return b.String()
}

// level is a field's value as a topic level.
func level(v gjson.Result) string {
	var s string
	switch v.Type {
	case gjson.String:
		s = v.Str
	case gjson.Number, gjson.True, gjson.False:
		s = v.Raw
	default: // absent, null, an object or an array
		return TopicUnknown
	}
	if s == "" {
		return TopicUnknown
	}
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}
