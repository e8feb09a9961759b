package ingest

import (
	"encoding/json"
	"testing"

	"github.com/eddy-streams/eddy/ingest/topic"
	"github.com/eddy-streams/eddy/pipelines"
)

// FuzzMQTTEvent: a message's topic and payload, as a broker may deliver
// them, become an Event and then a stream entry of the pipeline without
// panicking; the topic's named levels are set in a JSON object, over the
// payload's own fields of those names (the topic wins), and the payload's
// other fields are kept as they were; what EncodeEvent
// refuses is what the Sink forwards for dead-lettering.
func FuzzMQTTEvent(f *testing.F) {
	for _, s := range []struct{ topic, payload string }{
		{"sensors/d1/temperature", `{"reading_id":"r1","value":21.5}`},
		{"sensors/d1/temperature", `{"reading_id":"r1","device_id":"own","value":1}`},
		{"sensors//x", `{"reading_id":"r1"}`},
		{"sensors/d1/t", `not json`},
		{"sensors/d1/t", `[1,2,3]`},
		{"sensors/d1/t", `null`},
		{"sensors/d1/t", ` {} `},
		{"sensors/d1/t", `{"a":1,"a":2}`},
		{"sensors/\u00e9/t", `{"reading_id":"\u00e9"}`},
		{"other/x", `{}`},
		{"sensors/d\"1/t", `{"reading_id":"q"}`},
	} {
		f.Add(s.topic, []byte(s.payload))
	}
	file, err := pipelines.Parse("fuzz.yaml", []byte(`
sources:
  mqtt:
    - name: fuzz
      broker: mqtt://127.0.0.1
      topics:
        - {filter: "sensors/{dev}/{sensor}", pipeline: iot, key: dev}
pipelines:
  - name: iot
    input: {stream: sensors, partitions: 4, payload: data}
    key: device_id
    dedupe: {id: reading_id, window: 1h}
`), nil)
	if err != nil {
		f.Fatal(err)
	}
	m, err := NewMQTT(file, &file.Sources.MQTT[0], nil, MQTTOptions{})
	if err != nil {
		f.Fatal(err)
	}
	p := file.Pipeline("iot")
	f.Fuzz(func(t *testing.T, tpc string, payload []byte) {
		r, values := m.match(tpc)
		if r == nil {
			return
		}
		ev := r.event(values, payload)
		if string(ev.Data) != string(payload) {
			t.Fatalf("event data %q, want the payload %q as it came", ev.Data, payload)
		}
		if ev.Fields["dev"] != values[0] || ev.Fields["sensor"] != values[1] || ev.Fields["device_id"] != values[0] || len(ev.Fields) != 3 {
			t.Fatalf("topic %q: fields %v, want dev and device_id %q, sensor %q", tpc, ev.Fields, values[0], values[1])
		}
		data, err := withFields(ev.Data, ev.Fields)
		if err != nil {
			return // forwarded as it came, for the pipeline to dead-letter
		}
		var before, after map[string]json.RawMessage
		if err := json.Unmarshal(payload, &before); err != nil {
			t.Fatalf("withFields accepted %q, which is not a JSON object: %v", payload, err)
		}
		if err := json.Unmarshal(data, &after); err != nil {
			t.Fatalf("withFields(%q) = %q: not JSON: %v", payload, data, err)
		}
		for name, v := range ev.Fields {
			got, ok := after[name]
			if !ok {
				t.Fatalf("withFields(%q) = %q lacks %q", payload, data, name)
			}
			var s string
			if json.Unmarshal(got, &s) != nil || s != v {
				t.Fatalf("withFields(%q) = %q: %q is %s, want the topic's %q", payload, data, name, got, v)
			}
		}
		for name, own := range before {
			if _, ok := ev.Fields[name]; ok {
				continue
			}
			if got, ok := after[name]; !ok || string(got) != string(own) {
				t.Fatalf("withFields(%q) = %q: the payload's own %q is %s, want %s as it was", payload, data, name, got, own)
			}
		}
		if len(after) != len(before)+len(ev.Fields)-countIn(before, ev.Fields) {
			t.Fatalf("withFields(%q) = %q: %d members, want the payload's and the topic's", payload, data, len(after))
		}
		key, fields, err := p.EncodeEvent(data)
		if err == nil && (len(fields) != 2 || fields[0] != "data" || key == "") {
			t.Fatalf("EncodeEvent(%q) = %q %q", data, key, fields)
		}
	})
}

// countIn counts the names of fields that m has.
func countIn(m map[string]json.RawMessage, fields map[string]string) int {
	n := 0
	for name := range fields {
		if _, ok := m[name]; ok {
			n++
		}
	}
	return n
}

// FuzzTopicFilter: the source's filters come from the config; any filter
// text either parses or is refused, and matching any topic against what
// parses never panics (the topic package's own fuzz targets go further).
func FuzzTopicFilter(f *testing.F) {
	for _, s := range []string{"sensors/{device_id}/{sensor}", "a/#", "+/{x}/#", "{}", "a/#/b", "$share/g/x"} {
		f.Add(s, "sensors/d1/temperature")
	}
	f.Fuzz(func(t *testing.T, filter, tpc string) {
		flt, err := topic.Parse(filter)
		if err != nil {
			return
		}
		values, ok := flt.Match(tpc)
		if ok && len(values) != len(flt.Names()) {
			t.Fatalf("%q.Match(%q) = %q, want %d values", filter, tpc, values, len(flt.Names()))
		}
	})
}
