package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// fuzzPipelines are the shapes of pipeline the fuzz targets feed: a JSON
// payload with a dotted key, a dedupe id and a schema step; and entry
// fields with a plain key.
func fuzzPipelines(t testing.TB) (payload, fields *Pipeline) {
	t.Helper()
	f := parse(t, `schemas:
  - {type: t, version: 1, file: testdata/schemas/object.json}
pipelines:
  - name: json
    input: {stream: s, payload: data, partitions: 8}
    key: user.id
    dedupe: {id: event_id, window: 1h}
    steps:
      - schema: {type: t}
      - require: [user.id]
      - map: {n: 'len(string(user))'}
  - name: fields
    input: {stream: f, partitions: 3}
    key: device_id
    steps:
      - require: [device_id]
`)
	return f.Pipelines[0], f.Pipelines[1]
}

// FuzzEncodeEvent feeds one NDJSON line to EncodeEvent, as eddy produce
// and ingest do: no panic; what it accepts, the pipeline's decoder reads
// back with the same key, and the key routes to a partition; what it
// refuses comes with a message. CheckSchema never panics either.
func FuzzEncodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"user":{"id":"u1"},"event_id":"e1","page":"/"}`,
		`{"user":{"id":7.50},"event_id":1e3,"user.id":"dotted"}`,
		`{"device_id":"d1","value":21.5,"tags":["a",{"b":null}],"ok":true}`,
		`{"user":{"id":""},"event_id":"e"}`,
		`{"device_id":18446744073709551616,"n":null}`,
		"{\"device_id\":\"\xff\xfe\",\"user\":{\"id\":\"\\u00e9\"},\"event_id\":\"x\"}",
		`[{"user":{"id":"u1"}}]`,
		`{"user":{"id":"u1"},"event_id":"e1"} trailing`,
	} {
		f.Add([]byte(s))
	}
	payload, fields := fuzzPipelines(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, p := range []*Pipeline{payload, fields} {
			key, entry, err := p.EncodeEvent(line)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("%s: EncodeEvent(%q) failed without a message", p.Name, line)
				}
				continue
			}
			if key == "" || len(entry)%2 != 0 {
				t.Fatalf("%s: EncodeEvent(%q) = key %q, fields %q", p.Name, line, key, entry)
			}
			if p.Input.Payload != "" && !json.Valid(line) {
				t.Fatalf("%s: EncodeEvent accepted %q, which is not JSON", p.Name, line)
			}
			if n := processor.PartitionOf(key, p.Input.Partitions); n < 0 || n >= p.Input.Partitions {
				t.Fatalf("%s: PartitionOf(%q) = %d of %d", p.Name, key, n, p.Input.Partitions)
			}
			m := &processor.Message{ID: "1-0", Stream: p.Input.Stream, Fields: entry}
			if err := p.Decoder().Decode(m); err != nil || m.Key != key {
				t.Fatalf("%s: Decode(EncodeEvent(%q)) = %v, key %q; want nil, %q", p.Name, line, err, m.Key, key)
			}
		}
		if err := payload.CheckSchema(line); err != nil {
			var ve *schema.ValidationError
			if !errors.As(err, &ve) || ve.Rule == "" {
				t.Fatalf("CheckSchema(%q) = %v, want a *schema.ValidationError with a rule", line, err)
			}
		}
	})
}

// FuzzDecodeEntry decodes a stream entry as a worker reads it and runs
// it through the pipeline's steps: no panic; a refusal is permanent with
// one of the decoder's reasons; and the one-pass decoder agrees with
// decoding the payload in full (encoding/json) on whether it is a JSON
// object, on the key and on the dedupe id.
func FuzzDecodeEntry(f *testing.F) {
	for _, s := range [][2]string{
		{`{"user":{"id":"u1"},"event_id":"e1"}`, "v"},
		{`{"user.id":"top","user":{"id":"inner"},"event_id":2}`, ""},
		{`{"user":{"id":"u1"},"user":{"id":"u2"},"event_id":"e"}`, "x"},
		{`{"user":{"id":[1]},"event_id":"e"}`, "device_id"},
		{`{"user":{"id":1e400},"event_id":-0}`, "d"},
		{"{\"user\":{\"id\":\"\xc3\"},\"event_id\":\"\\ud800\"}", "d"},
		{`{"user":{"id":"u"},"event_id":"e"`, ""},
		{`"just a string"`, "7"},
	} {
		f.Add(s[0], s[1])
	}
	payload, fields := fuzzPipelines(f)
	f.Fuzz(func(t *testing.T, raw, other string) {
		m := &processor.Message{ID: "1-0", Stream: "s", Fields: []string{"data", raw, "device_id", other}}
		err := payload.Decoder().Decode(m)
		ref, refErr := decodeObject([]byte(raw))
		var pe *processor.PermanentError
		switch {
		case err == nil:
			if refErr != nil {
				t.Fatalf("Decode accepted %q, encoding/json refuses it: %v", raw, refErr)
			}
			want, _ := scalarString(lookupPath(ref, "user.id"))
			id, _ := scalarString(lookupPath(ref, "event_id"))
			if m.Key != want || m.DedupeID != id {
				t.Fatalf("Decode(%q) = key %q, id %q; encoding/json gives %q, %q", raw, m.Key, m.DedupeID, want, id)
			}
			if herr := payload.Handler().Handle(context.Background(), m); herr != nil && !errors.As(herr, &pe) {
				t.Fatalf("Handle(%q) = %v, want nil or a permanent error", raw, herr)
			}
		case !errors.As(err, &pe):
			t.Fatalf("Decode(%q) = %v, want a permanent error", raw, err)
		case pe.Reason == processor.ReasonNotJSON:
			if refErr == nil {
				t.Fatalf("Decode(%q) = %v, but encoding/json reads it", raw, err)
			}
		case pe.Reason == processor.ReasonMissingKey || pe.Reason == ReasonMissingID:
			if refErr != nil {
				t.Fatalf("Decode(%q) = %v, but encoding/json refuses it: %v", raw, err, refErr)
			}
		default:
			t.Fatalf("Decode(%q) = reason %q, want not_json, missing_key or missing_id", raw, pe.Reason)
		}

		m = &processor.Message{ID: "1-0", Stream: "f", Fields: []string{"data", raw, "device_id", other}}
		if err := fields.Decoder().Decode(m); err != nil {
			if other != "" || !errors.As(err, &pe) || pe.Reason != processor.ReasonMissingKey {
				t.Fatalf("Decode(fields device_id=%q) = %v", other, err)
			}
			return
		}
		if m.Key != other {
			t.Fatalf("Decode(fields device_id=%q) = key %q", other, m.Key)
		}
		if err := fields.Handler().Handle(context.Background(), m); err != nil {
			t.Fatalf("Handle(fields device_id=%q) = %v", other, err)
		}
	})
}

func lookupPath(m map[string]any, path string) any {
	p, _ := ParsePath(path)
	v, _ := p.Lookup(m)
	return v
}

// FuzzParseConfig parses a config file: no panic, no hang; either a
// *ConfigError whose every problem names the file and says something, or
// a file whose pipelines are ready to run.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n",
		"pipelines:\n  - name: p\n    input: {stream: s, payload: data, partitions: 4}\n    key: user.id\n    dedupe: {id: e, window: 1h}\n    steps:\n      - require: [user.id]\n      - map: {x: 'len(user.id)'}\n      - output: {stream: o}\n",
		"schemas:\n  - {type: t, version: 1, file: testdata/schemas/object.json}\npipelines:\n  - name: p\n    input: {stream: s, payload: data}\n    key: k\n    steps:\n      - schema: {type: t, version_field: v.n, default_version: 1}\n",
		"a: &a [1, 2]\nb: *a\npipelines: [*x]\n",
		"pipelines:\n  - &p {name: p, input: {stream: s}, key: k}\n  - *p\n",
		"pipelines:\n  - name: p\n    batch_size: 1.5\n    retry: {backoff: soon}\n    steps:\n      - frobnicate: {}\n",
		"redis: {url: 'redis://u:secret@h:1/0', password_env: X}\nhttp: {addr: off}\nsimulate: [{pipeline: p, kind: iot, rate: .inf}]\n",
		"\t- : :\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data, nil)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("Parse = %v (%T), want a *ConfigError with problems", err, err)
			}
			for _, p := range ce.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" || p.Line < 0 {
					t.Fatalf("Parse: problem %+v lacks its file, line or message", p)
				}
			}
			return
		}
		if len(file.Pipelines) == 0 {
			t.Fatalf("Parse accepted a file without pipelines")
		}
		for _, p := range file.Pipelines {
			o := p.Options()
			if o.Decoder == nil || o.Handler == nil || o.Stream == "" || p.Input.Partitions < 1 {
				t.Fatalf("pipeline %q is not ready: %+v", p.Name, o)
			}
		}
	})
}
