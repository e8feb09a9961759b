package pipelines

import (
	"context"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// Integers beyond int64 keep every digit, as dedupe ids and in outputs:
// rounding them to float64 made different ids collide.
func TestBigIntegersStayExact(t *testing.T) {
	p := jsonPipeline(t, true, "      - output: {stream: out}\n")
	ids := map[string]bool{}
	for _, id := range []string{"18446744073709551615", "18446744073709551614", "1e400", "2e400"} {
		m, err := handle(t, p, `{"event_id":`+id+`,"user":{"id":1},"order":12345678901234567891}`)
		if err != nil {
			t.Fatal(err)
		}
		if m.DedupeID != id {
			t.Errorf("dedupe id of %s = %q, want it unchanged", id, m.DedupeID)
		}
		ids[m.DedupeID] = true
		data := m.Effects()[0].Fields[5]
		if !strings.Contains(data, `"order":12345678901234567891`) {
			t.Errorf("output data = %s, want order 12345678901234567891 exactly", data)
		}
	}
	if len(ids) != 4 {
		t.Errorf("4 different ids gave %d dedupe ids", len(ids))
	}
}

// A nested field whose parent is absent is nil, like an absent top-level
// field; it used to be an error that dead-lettered the event.
func TestNestedFieldOfAbsentParentIsNil(t *testing.T) {
	const out = "      - output: {stream: o}\n"
	tests := []struct {
		steps, data string
		want        string // "" when the filter drops the event, else text of its output
	}{
		{"      - filter: 'session.id != nil'\n" + out, `{"user":{"id":"u"}}`, ""},
		{"      - filter: 'session.id != nil'\n" + out, `{"user":{"id":"u"},"session":{"id":"s"}}`, `"session":{"id":"s"}`},
		{"      - map: {sid: 'session.id ?? \"none\"'}\n" + out, `{"user":{"id":"u"}}`, `"sid":"none"`},
	}
	for _, tt := range tests {
		m, err := handle(t, jsonPipeline(t, false, tt.steps), tt.data)
		if err != nil {
			t.Errorf("steps %q on %s: %v, want no error", tt.steps, tt.data, err)
			continue
		}
		got := ""
		if effs := m.Effects(); len(effs) > 0 {
			got = effs[0].Fields[5]
		}
		if (tt.want == "" && got != "") || !strings.Contains(got, tt.want) {
			t.Errorf("steps %q on %s: output %q, want %q", tt.steps, tt.data, got, tt.want)
		}
	}
}

// With the entry's own fields as the payload, a dotted name is one field
// name for the key and for require alike.
func TestFieldsModeDottedNames(t *testing.T) {
	p := parse(t, "pipelines:\n  - name: p\n    input: {stream: s}\n    key: user.id\n    steps:\n      - require: [user.id]\n").Pipelines[0]
	m := &processor.Message{ID: "1-0", Fields: []string{"user.id", "u1"}}
	if err := p.Decoder().Decode(m); err != nil || m.Key != "u1" {
		t.Fatalf("Decode = %v, key %q; want key u1", err, m.Key)
	}
	if err := p.Handler().Handle(context.Background(), m); err != nil {
		t.Errorf("require [user.id] on field user.id = %v, want nil", err)
	}
}
