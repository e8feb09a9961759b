package topic

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		filter, mqtt string
		names        []string
	}{
		{"sensors/{device_id}/{sensor}", "sensors/+/+", []string{"device_id", "sensor"}},
		{"sensors/+/{sensor}/#", "sensors/+/+/#", []string{"sensor"}},
		{"#", "#", nil},
		{"+", "+", nil},
		{"a//b", "a//b", nil},
		{"/{x}", "/+", []string{"x"}},
		{"{_a1}/{B}", "+/+", []string{"_a1", "B"}},
		{"$SYS/broker/{what}", "$SYS/broker/+", []string{"what"}},
	}
	for _, tt := range tests {
		f, err := Parse(tt.filter)
		if err != nil {
			t.Errorf("Parse(%q) = %v", tt.filter, err)
			continue
		}
		if f.MQTT() != tt.mqtt || !reflect.DeepEqual(f.Names(), tt.names) || f.String() != tt.filter {
			t.Errorf("Parse(%q) = %q %v, want %q %v", tt.filter, f.MQTT(), f.Names(), tt.mqtt, tt.names)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ filter, want string }{
		{"", "empty topic filter"},
		{"a/#/b", `level 2: "#" must be the last level`},
		{"a/{}/b", `level 2: "{}": the name is empty`},
		{"{x}/{x}", `level 2: "{x}": the name "x" is already the name of level 1`},
		{"a+/b", `level 1: "a+": a wildcard ("+" or "#") must fill its whole level`},
		{"a/b#", `level 2: "b#": a wildcard`},
		{"a/+#", `level 2: "+#": a wildcard`},
		{"a/{x}y", `level 2: "{x}y": a named level is written "{name}"`},
		{"a/{x", `level 2: "{x": a named level`},
		{"a/x}", `level 2: "x}": a named level`},
		{"{1x}", `level 1: "{1x}": the name "1x" must be a letter or _`},
		{"{a-b}", `the name "a-b" must be`},
		{"{+}", `the name "+" must be`},
		{"$share/g/a", "set share_group"},
		{"a\x00b", "null character"},
		{"a/\xff", "not valid UTF-8"},
		{strings.Repeat("a", MaxLen+1), "over the 65535"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.filter)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.40q) = %v, want an error containing %q", tt.filter, err, tt.want)
		}
	}
	if _, err := Parse(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(\"\") = %v, want ErrEmpty", err)
	}
	var e *Error
	if _, err := Parse("a/#/c"); !errors.As(err, &e) || e.Level != 2 || e.Filter != "a/#/c" {
		t.Errorf("Parse(a/#/c) = %#v, want *Error at level 2", err)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		ok            bool
		values        []string
	}{
		{"sensors/{device_id}/{sensor}", "sensors/d1/temperature", true, []string{"d1", "temperature"}},
		{"sensors/{device_id}/{sensor}", "sensors/d1", false, nil},
		{"sensors/{device_id}/{sensor}", "sensors/d1/t/x", false, nil},
		{"sensors/{device_id}/{sensor}", "other/d1/t", false, nil},
		{"sensors/{device_id}/{sensor}", "sensors//t", true, []string{"", "t"}},
		{"sensors/{d}/#", "sensors/d1", true, []string{"d1"}}, // "#" matches the parent level
		{"sensors/{d}/#", "sensors/d1/a/b/c", true, []string{"d1"}},
		{"sensors/{d}/#", "sensors", false, nil},
		{"#", "a/b", true, nil},
		{"#", "$SYS/x", false, nil},                          // 4.7.2
		{"+/x", "$SYS/x", false, nil},                        // 4.7.2
		{"$SYS/{what}", "$SYS/load", true, []string{"load"}}, // a literal "$" level
		{"a/+", "a/", true, nil},                             // an empty level is a level
		{"a", "a/", false, nil},                              // ... and more than none
		{"/{x}", "/v", true, []string{"v"}},                  // leading "/"
		{"a/{x}", "a/+", false, nil},                         // a wildcard is not a topic
		{"a/{x}", "a/\x00", false, nil},                      // nor the null character
		{"a/{x}", "", false, nil},                            // nor ""
		{"a/{x}", "a/\xff", false, nil},                      // nor what is not UTF-8
		{"a/b", "a/b", true, nil},
		{"a/b", "a/c", false, nil},
	}
	for _, tt := range tests {
		f, err := Parse(tt.filter)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", tt.filter, err)
		}
		values, ok := f.Match(tt.topic)
		if ok != tt.ok || (ok && !reflect.DeepEqual(values, tt.values)) {
			t.Errorf("Parse(%q).Match(%q) = %q %v, want %q %v", tt.filter, tt.topic, values, ok, tt.values, tt.ok)
		}
	}
}

func TestHas(t *testing.T) {
	f, err := Parse("s/{device}/{sensor}")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Has("device") || !f.Has("sensor") || f.Has("s") {
		t.Errorf("Has: device %v, sensor %v, s %v; want true, true, false", f.Has("device"), f.Has("sensor"), f.Has("s"))
	}
}
