package topic

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: any filter either parses or errors without panicking; one
// that parses has a broker filter of the same levels, with "+" for each
// name, and a topic made from it by filling each wildcard level matches
// and gives back the values put in.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"sensors/{device_id}/{sensor}", "sensors/+/{s}/#", "#", "+", "a//b", "/{x}", "$SYS/{w}",
		"a/#/b", "{}", "{x}/{x}", "a+", "{x}y", "$share/g/a", "a/\x00", "{{x}}", "}{", "{a}/+/#",
	} {
		f.Add(s, "v1/v2")
	}
	f.Fuzz(func(t *testing.T, filter, fill string) {
		flt, err := Parse(filter)
		if err != nil {
			if flt != nil {
				t.Fatalf("Parse(%q) = %v and an error %v", filter, flt, err)
			}
			if err.Error() == "" {
				t.Fatalf("Parse(%q): an error with no message", filter)
			}
			return
		}
		if strings.Count(flt.MQTT(), "/") != strings.Count(filter, "/") {
			t.Fatalf("Parse(%q).MQTT() = %q: not the same levels", filter, flt.MQTT())
		}
		if strings.ContainsAny(flt.MQTT(), "{}") {
			t.Fatalf("Parse(%q).MQTT() = %q still holds a name", filter, flt.MQTT())
		}
		// Build a topic: each wildcard level gets a value from fill (one
		// without "/", "+", "#", NUL), "#" gets two levels.
		val := strings.Map(func(r rune) rune {
			if r == '/' || r == '+' || r == '#' || r == 0 || r == utf8.RuneError {
				return 'x'
			}
			return r
		}, fill)
		if val == "" || strings.HasPrefix(val, "$") {
			val = "v" + val
		}
		var levels, want []string
		for _, l := range flt.levels {
			switch l.kind {
			case literal:
				levels = append(levels, l.text)
			case single:
				levels = append(levels, val)
				if l.named >= 0 {
					want = append(want, val)
				}
			case multi:
				levels = append(levels, val, val)
			}
		}
		topic := strings.Join(levels, "/")
		if topic == "" || strings.HasPrefix(topic, "$") || len(topic) > MaxLen || !utf8.ValidString(topic) {
			return // not a topic a broker would deliver to this filter
		}
		got, ok := flt.Match(topic)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("Parse(%q).Match(%q) = %q %v, want %q true", filter, topic, got, ok, want)
		}
	})
}

// FuzzMatch: matching any topic against a few filters never panics, and
// what matches has as many values as the filter has names.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"sensors/d1/temperature", "sensors//", "$SYS/x", "a/b/c/d", "", "/", "a/+", "\xff"} {
		f.Add(s)
	}
	filters := []*Filter{}
	for _, s := range []string{"sensors/{device_id}/{sensor}", "sensors/{d}/#", "#", "+/+", "/{x}", "$SYS/{w}", "a/b"} {
		flt, err := Parse(s)
		if err != nil {
			f.Fatal(err)
		}
		filters = append(filters, flt)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		for _, flt := range filters {
			values, ok := flt.Match(topic)
			if ok && len(values) != len(flt.Names()) {
				t.Fatalf("%q.Match(%q) = %q: %d values for %d names", flt, topic, values, len(values), len(flt.Names()))
			}
			if ok && strings.ContainsAny(strings.Join(values, ""), "/") {
				t.Fatalf("%q.Match(%q) = %q: a value spans levels", flt, topic, values)
			}
		}
	})
}
