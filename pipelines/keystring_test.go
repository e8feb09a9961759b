package pipelines

import (
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// How a key that is not a JSON string becomes the string that routes it
// (processor.PartitionOf) and orders it, as docs/configuration.md ("Keys")
// and the README ("Data layout") describe. The dedupe id follows the same
// rule.
func TestKeyStrings(t *testing.T) {
	payload := parse(t, "pipelines:\n  - name: p\n    input: {stream: s, payload: data}\n    key: k\n").Pipelines[0]
	fields := parse(t, "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n").Pipelines[0]
	tests := []struct {
		json    string // the key's JSON value
		payload string // its key with input.payload: "" means the event is dead-lettered as missing_key
		fields  string // its key with the entry's fields, as eddy produce writes them
	}{
		{`"u1"`, "u1", "u1"},
		{`"7"`, "7", "7"},
		{`7`, "7", "7"},
		{`7.0`, "7", "7.0"},
		{`7.50`, "7.5", "7.50"},
		{`-0`, "0", "-0"},
		{`-0.0`, "-0", "-0.0"},
		{`1e3`, "1000", "1e3"},
		{`1E+3`, "1000", "1E+3"},
		{`1e21`, "1000000000000000000000", "1e21"},
		{`1e-7`, "0.0000001", "1e-7"},
		{`1700000000000`, "1700000000000", "1700000000000"},
		{`18446744073709551616`, "18446744073709551616", "18446744073709551616"}, // beyond int64: kept as written
		{`9007199254740993.0`, "9007199254740992", "9007199254740993.0"},         // through float64: digits lost
		{`1e400`, "1e400", "1e400"}, // beyond float64: kept as written
		{`true`, "true", "true"},
		{`false`, "false", "false"},
		{`""`, "", ""},
		{`null`, "", ""},
		{`{"a":1}`, "", `{"a":1}`},
		{`[1, 2]`, "", `[1,2]`},
	}
	for _, tt := range tests {
		line := `{"k":` + tt.json + `}`
		for _, c := range []struct {
			mode string
			p    *Pipeline
			want string
		}{{"payload", payload, tt.payload}, {"fields", fields, tt.fields}} {
			key, entry, err := c.p.EncodeEvent([]byte(line))
			switch {
			case c.want == "" && err == nil:
				t.Errorf("%s: EncodeEvent(%s) = key %q, want an error (no key)", c.mode, line, key)
				continue
			case c.want == "":
				continue
			case err != nil || key != c.want:
				t.Errorf("%s: EncodeEvent(%s) = key %q, %v, want %q", c.mode, line, key, err, c.want)
				continue
			}
			m := &processor.Message{ID: "1-0", Stream: "s", Fields: entry}
			if err := c.p.Decoder().Decode(m); err != nil || m.Key != c.want {
				t.Errorf("%s: Decode(%q) = key %q, %v, want %q", c.mode, entry, m.Key, err, c.want)
			}
		}
		if tt.payload == "" { // the decoder dead-letters what the producer refuses
			m := &processor.Message{ID: "1-0", Stream: "s", Fields: []string{"data", line}}
			if err := payload.Decoder().Decode(m); outcome(err) != processor.ReasonMissingKey {
				t.Errorf("payload: Decode(%s) = %v, want reason %s", line, err, processor.ReasonMissingKey)
			}
		}
	}
}
