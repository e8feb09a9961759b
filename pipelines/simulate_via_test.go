package pipelines

import (
	"strings"
	"testing"
)

// simulate[].via names a way in that the file has, or is refused with
// its path.
func TestSimulateVia(t *testing.T) {
	t.Parallel()
	const base = `
sources:
  http:
    tokens:
      b: {env: B, pipelines: [iot]}
      a: {env: A, pipelines: [clicks, iot]}
  mqtt:
    - name: devices
      broker: embedded
      topics: [{filter: "sensors/{device_id}/{sensor}", pipeline: iot}]
pipelines:
  - {name: clicks, input: {stream: c}, key: user_id}
  - {name: iot, input: {stream: s}, key: device_id}
`
	ok := []string{
		"simulate: [{pipeline: clicks, kind: clickstream}]\n",
		"simulate: [{pipeline: clicks, kind: clickstream, via: http}]\n",
		"simulate: [{pipeline: iot, kind: iot, via: 'mqtt:devices'}]\n",
	}
	for _, src := range ok {
		if got := problems(t, src+base, nil); got != nil {
			t.Errorf("Parse(%q) = %v, want no problem", src, got)
		}
	}
	f := parse(t, "simulate: [{pipeline: iot, kind: iot, via: http}, {pipeline: iot, kind: iot, via: 'mqtt:devices'}]\n"+base)
	if name, tok, ok := f.ViaHTTPToken(f.Simulate[0]); !ok || name != "a" || tok.Env != "A" {
		t.Errorf("ViaHTTPToken = %q, %+v, %v; want token a (the first by name allowed for iot)", name, tok, ok)
	}
	if src, filter, ok := f.ViaMQTT(f.Simulate[1]); !ok || src.Name != "devices" || filter != "sensors/{device_id}/{sensor}" {
		t.Errorf("ViaMQTT = %v, %q, %v", src, filter, ok)
	}
	bad := []struct{ src, want string }{
		{"simulate: [{pipeline: clicks, kind: clickstream, via: kafka}]\n" + base, `simulate[0].via: want "http" or "mqtt:"<source name>, got "kafka"`},
		{"simulate: [{pipeline: clicks, kind: clickstream, via: 'mqtt:devices'}]\n" + base, `simulate[0].via: no MQTT source "devices" in sources.mqtt with a topic for pipeline "clicks"`},
		{"simulate: [{pipeline: iot, kind: iot, via: 'mqtt:other'}]\n" + base, `simulate[0].via: no MQTT source "other"`},
		{"simulate: [{pipeline: clicks, kind: clickstream, via: http}]\npipelines: [{name: clicks, input: {stream: c}, key: user_id}]\n", "simulate[0].via: needs sources.http in this file"},
		{strings.Replace("simulate: [{pipeline: clicks, kind: clickstream, via: http}]\n"+base, "a: {env: A, pipelines: [clicks, iot]}", "a: {env: A, pipelines: [iot]}", 1),
			`simulate[0].via: no token of sources.http.tokens may write to pipeline "clicks"`},
	}
	for _, tt := range bad {
		got := strings.Join(problems(t, tt.src, nil), "\n")
		if !strings.Contains(got, tt.want) {
			t.Errorf("Parse(%q) = %q, want a problem containing %q", tt.src, got, tt.want)
		}
	}
}
