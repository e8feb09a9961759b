package pipelines

import (
	"reflect"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// The demo pipelines accept the events package simulate generates (see the
// field lists in configs/demo.yaml's pipelines) and do what they say.
func TestDemoPipelines(t *testing.T) {
	f, err := Load("../configs/demo.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Pipelines {
		withoutAnalytics(p)
		for _, s := range p.steps {
			if fs, ok := s.step.(*faultStep); ok {
				fs.random = func() float64 { return 0.999 } // no faults here
			}
		}
	}
	tests := []struct {
		name, pipeline, event string
		outcome               string
		effects               []processor.Effect
	}{
		{
			name:     "purchase",
			pipeline: "clickstream",
			event:    `{"event_id":"e1","user_id":"u7","session_id":"s1","type":"purchase","page":"/Checkout","ts":1700000000123,"amount":19.99,"ua":"Mozilla/5.0"}`,
			effects: []processor.Effect{
				{Kind: processor.EffectXAdd, Key: "clicks:enriched", Fields: []string{"key", "u7", "id", "e1", "data",
					`{"amount":19.99,"amount_cents":1999,"event_id":"e1","page":"/checkout","session_id":"s1","ts":1700000000123,"type":"purchase","ua":"Mozilla/5.0","user_id":"u7"}`}},
				{Kind: processor.EffectHSet, Key: "user:u7", Fields: []string{"last_page", "/checkout", "last_type", "purchase", "last_ts", "1700000000123"}},
			},
		},
		{
			name:     "view without amount",
			pipeline: "clickstream",
			event:    `{"event_id":"e2","user_id":42,"session_id":"s1","type":"view","page":"/","ts":1700000000124,"ua":"Mozilla/5.0"}`,
			effects: []processor.Effect{
				{Kind: processor.EffectXAdd, Key: "clicks:enriched", Fields: []string{"key", "42", "id", "e2", "data",
					`{"amount_cents":0,"event_id":"e2","page":"/","session_id":"s1","ts":1700000000124,"type":"view","ua":"Mozilla/5.0","user_id":42}`}},
				{Kind: processor.EffectHSet, Key: "user:42", Fields: []string{"last_page", "/", "last_type", "view", "last_ts", "1700000000124"}},
			},
		},
		{
			name:     "bot",
			pipeline: "clickstream",
			event:    `{"event_id":"e3","user_id":"u7","session_id":"s1","type":"view","page":"/","ts":1,"ua":"Googlebot/2.1"}`,
		},
		{
			name:     "unknown type",
			pipeline: "clickstream",
			event:    `{"event_id":"e4","user_id":"u7","session_id":"s1","type":"scroll","page":"/","ts":1,"ua":"x"}`,
			outcome:  processor.ReasonInvalid,
		},
		{
			name:     "reading",
			pipeline: "iot",
			event:    `{"reading_id":"r1","device_id":"d3","sensor":"temperature","value":21.5,"unit":"C","ts":1700000000000,"battery":12}`,
			effects: []processor.Effect{
				{Kind: processor.EffectXAdd, Key: "sensors:clean", MaxLen: 100000, Fields: []string{"key", "d3", "id", "r1", "data",
					`{"battery":12,"device_id":"d3","low_battery":true,"reading_id":"r1","sensor":"temperature","ts":1700000000000,"unit":"C","value":21.5}`}},
				{Kind: processor.EffectHSet, Key: "device:d3", Fields: []string{"last_sensor", "temperature", "last_value", "21.5", "last_unit", "C", "last_ts", "1700000000000", "battery", "12"}},
			},
		},
		{
			name:     "reading with a string value",
			pipeline: "iot",
			event:    `{"reading_id":"r2","device_id":"d3","sensor":"humidity","value":"wet","unit":"%","ts":1,"battery":80}`,
			outcome:  processor.ReasonInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := handle(t, f.Pipeline(tt.pipeline), tt.event)
			if got := outcome(err); got != tt.outcome {
				t.Fatalf("Handle = %v (outcome %q), want %q", err, got, tt.outcome)
			}
			if got := m.Effects(); !reflect.DeepEqual(got, tt.effects) && len(got)+len(tt.effects) > 0 {
				t.Errorf("Effects() =\n%+v\nwant\n%+v", got, tt.effects)
			}
		})
	}
}
