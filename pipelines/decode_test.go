package pipelines

import (
	"reflect"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

func TestDecoderJSON(t *testing.T) {
	p := jsonPipeline(t, true, "")
	tests := []struct {
		name    string
		fields  []string
		key, id string
		reason  string // permanent reason, "" for success
		msg     string // part of the error message
	}{
		{"nested key", []string{"data", `{"user":{"id":"u1"},"event_id":"e1"}`}, "u1", "e1", "", ""},
		{"integer key", []string{"data", `{"user":{"id":42},"event_id":7}`}, "42", "7", "", ""},
		{"float key", []string{"data", `{"user":{"id":2.5},"event_id":"e"}`}, "2.5", "e", "", ""},
		{"exponent key", []string{"data", `{"user":{"id":4.2e1},"event_id":"e"}`}, "42", "e", "", ""},
		{"big integer id", []string{"data", `{"user":{"id":1},"event_id":12345678901234567}`}, "1", "12345678901234567", "", ""},
		{"bool key", []string{"data", `{"user":{"id":true},"event_id":"e"}`}, "true", "e", "", ""},
		{"payload field missing", []string{"other", `{}`}, "", "", processor.ReasonNotJSON, `entry 5-0: payload field "data" is missing`},
		{"not JSON", []string{"data", `{"user":`}, "", "", processor.ReasonNotJSON, `entry 5-0: payload field "data"`},
		{"array", []string{"data", `[1]`}, "", "", processor.ReasonNotJSON, "want a JSON object, got an array"},
		{"trailing data", []string{"data", `{} x`}, "", "", processor.ReasonNotJSON, "after top-level value"},
		{"duplicate names: the last counts", []string{"data", `{"user":{"id":"a","id":"b"},"event_id":"e","event_id":"f"}`}, "b", "f", "", ""},
		{"key missing", []string{"data", `{"user":{},"event_id":"e"}`}, "", "", processor.ReasonMissingKey, `entry 5-0: key "user.id" is missing or null`},
		{"key null", []string{"data", `{"user":{"id":null},"event_id":"e"}`}, "", "", processor.ReasonMissingKey, "missing or null"},
		{"key object", []string{"data", `{"user":{"id":{}},"event_id":"e"}`}, "", "", processor.ReasonMissingKey, "not a string or number"},
		{"key empty", []string{"data", `{"user":{"id":""},"event_id":"e"}`}, "", "", processor.ReasonMissingKey, "is empty"},
		{"parent not object", []string{"data", `{"user":"u1","event_id":"e"}`}, "", "", processor.ReasonMissingKey, "missing"},
		{"id missing", []string{"data", `{"user":{"id":"u"}}`}, "", "", ReasonMissingID, `entry 5-0: dedupe id "event_id" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &processor.Message{ID: "5-0", Fields: tt.fields}
			err := p.Decoder().Decode(m)
			if got := outcome(err); got != tt.reason {
				t.Fatalf("Decode(%q) = %v (reason %q), want reason %q", tt.fields, err, got, tt.reason)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("Decode(%q) = %q, want it to contain %q", tt.fields, err, tt.msg)
				}
				return
			}
			if m.Key != tt.key || m.DedupeID != tt.id {
				t.Errorf("Decode(%q): key %q, id %q; want %q, %q", tt.fields, m.Key, m.DedupeID, tt.key, tt.id)
			}
			want, err := decodeObject([]byte(tt.fields[1]))
			if err != nil {
				t.Fatal(err)
			}
			if got := NewEvent(m).Payload(); !reflect.DeepEqual(got, want) {
				t.Errorf("Decode(%q): payload %v, want %v", tt.fields, got, want)
			}
		})
	}
}

func TestDecoderFields(t *testing.T) {
	p := parse(t, "pipelines: [{name: p, input: {stream: s}, key: user.id, dedupe: {id: eid, window: 1h}}]\n").Pipelines[0]
	m := &processor.Message{ID: "1-0", Fields: []string{"user.id", "u7", "eid", "e1", "n", "3"}}
	if err := p.Decoder().Decode(m); err != nil {
		t.Fatalf("Decode = %v, want nil", err)
	}
	want := map[string]any{"user.id": "u7", "eid": "e1", "n": "3"}
	if m.Key != "u7" || m.DedupeID != "e1" || !reflect.DeepEqual(m.Data, want) {
		t.Errorf("Decode: key %q, id %q, data %v; want u7, e1, %v", m.Key, m.DedupeID, m.Data, want)
	}
	m = &processor.Message{ID: "1-1", Fields: []string{"eid", "e1"}}
	if err := p.Decoder().Decode(m); outcome(err) != processor.ReasonMissingKey {
		t.Errorf("Decode(no key) = %v, want reason %q", err, processor.ReasonMissingKey)
	}
}

func TestEncodeEvent(t *testing.T) {
	jsonP := jsonPipeline(t, true, "")
	fieldsP := parse(t, "pipelines: [{name: p, input: {stream: s}, key: uid}]\n").Pipelines[0]
	tests := []struct {
		name   string
		p      *Pipeline
		line   string
		key    string
		fields []string
		err    string
	}{
		{"payload", jsonP, `{ "user": {"id": 42}, "event_id": "e1" }`, "42", []string{"data", `{"user":{"id":42},"event_id":"e1"}`}, ""},
		{"payload no id", jsonP, `{"user": {"id": 42}}`, "", nil, `dedupe id "event_id" is missing`},
		{"payload no key", jsonP, `{"event_id": "e"}`, "", nil, `key "user.id" is missing`},
		{"payload not object", jsonP, `[1, 2]`, "", nil, "event is not a JSON object"},
		{"payload not JSON", jsonP, `{"user":`, "", nil, "event is not a JSON object"},
		{"fields", fieldsP, `{"uid": 7, "b": "x", "a": {"k": [1, 2]}, "z": null}`, "7", []string{"a", `{"k":[1,2]}`, "b", "x", "uid", "7"}, ""},
		{"fields no key", fieldsP, `{"b": "x"}`, "", nil, `key "uid" is missing`},
		{"fields null", fieldsP, `null`, "", nil, "event is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, fields, err := tt.p.EncodeEvent([]byte(tt.line))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("EncodeEvent(%s) = %v, want an error containing %q", tt.line, err, tt.err)
				}
				return
			}
			if err != nil || key != tt.key || !reflect.DeepEqual(fields, tt.fields) {
				t.Fatalf("EncodeEvent(%s) = %q, %q, %v; want %q, %q, nil", tt.line, key, fields, err, tt.key, tt.fields)
			}
			// The pipeline's decoder accepts what EncodeEvent produced, with the same key.
			m := &processor.Message{ID: "1-0", Fields: fields}
			if err := tt.p.Decoder().Decode(m); err != nil || m.Key != key {
				t.Errorf("Decode(EncodeEvent(%s)) = %v, key %q; want nil, %q", tt.line, err, m.Key, key)
			}
		})
	}
}

func BenchmarkDecoder(b *testing.B) {
	p := jsonPipeline(b, true, "")
	fields := []string{"data", `{"event_id":"e-123","user":{"id":"u-42"},"type":"click","page":"/home","ts":1700000000000,"ua":"Mozilla/5.0"}`}
	b.ReportAllocs()
	for b.Loop() {
		m := &processor.Message{ID: "1-0", Fields: fields}
		if err := p.Decoder().Decode(m); err != nil {
			b.Fatal(err)
		}
	}
}

// lookupJSON, on the payload as it arrived, finds what Path.Lookup finds
// in the decoded payload: keys and dedupe ids must not depend on which of
// the two a pipeline uses (EncodeEvent routes with the same lookups).
func TestLookupJSONAgreesWithDecoded(t *testing.T) {
	payloads := []string{
		`{"a":"x","b":{"c":1,"d":{"e":true}},"a.b":"dotted","n":18446744073709551616,"f":-0.5e2}`,
		`{"a":{"b":"inner"},"a.b":"top"}`,
		`{"a":{"b":"inner"}}`,
		`{"a":[1,2],"b":null,"c":{},"d":"","u":"\u00e9\n"}`,
		`{"a":1,"a":{"b":2}}`,
		`{"a":{"b":2},"a":3}`,
		`{"x":{"y":{"z":"deep"}}}`,
		"{\"a\":\"bad \xff\xfe utf-8\",\"b\xff\":\"name\",\"d\":\"\xc3\"}",
	}
	paths := []string{"a", "a.b", "b", "b.c", "b.d.e", "n", "f", "c", "d", "u", "x.y.z", "x.y", "missing", "a.b.c"}
	for _, raw := range payloads {
		obj, err := parseObject(raw)
		if err != nil {
			t.Fatalf("parseObject(%s) = %v", raw, err)
		}
		decoded, err := decodeObject([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		for _, ps := range paths {
			p, _ := ParsePath(ps)
			want, wok := p.Lookup(decoded)
			got, gok := lookupJSON(obj, p)
			ws, wscalar := scalarString(want)
			gs, gscalar := scalarString(got)
			if gok != wok || ws != gs || wscalar != gscalar || notScalar(want) != notScalar(got) {
				t.Errorf("%s at %q: lookupJSON = %#v %v, Lookup on the decoded object = %#v %v", raw, ps, got, gok, want, wok)
			}
		}
	}
}
