package ingest

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

const (
	testTraceparent  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	otherTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

func TestWithTrace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
		tp     string
		want   []string
	}{
		{"added", []string{"data", "{}"}, testTraceparent, []string{"data", "{}", processor.TraceField, testTraceparent}},
		{"none", []string{"data", "{}"}, "", []string{"data", "{}"}},
		{"invalid dropped", []string{"data", "{}"}, "00-xyz", []string{"data", "{}"}},
		{"the event's own kept", []string{processor.TraceField, otherTraceparent, "v", "1"}, testTraceparent, []string{processor.TraceField, otherTraceparent, "v", "1"}},
	} {
		in := slices.Clone(tc.fields)
		if got := withTrace(in, tc.tp); !slices.Equal(got, tc.want) {
			t.Errorf("%s: withTrace(%q, %q) = %q, want %q", tc.name, tc.fields, tc.tp, got, tc.want)
		}
		if !slices.Equal(in, tc.fields) {
			t.Errorf("%s: withTrace changed its argument to %q", tc.name, in)
		}
	}
}

// An HTTP request's traceparent header goes to each of its events'
// entries as the field traceparent; a flat event that carries the field
// itself keeps its own; an invalid header is not stored.
func TestHTTPTraceparentHeader(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	for _, tc := range []struct {
		name, pipeline, token, body, header string
		want                                []string // traceparent of each entry
	}{
		{"header", "clicks", "WEB_TOKEN", `[{"user_id":"a"},{"user_id":"b"}]`, testTraceparent, []string{testTraceparent, testTraceparent}},
		{"no header", "clicks", "WEB_TOKEN", `{"user_id":"c"}`, "", []string{""}},
		{"invalid header", "clicks", "WEB_TOKEN", `{"user_id":"d"}`, "00-nope", []string{""}},
		{"the event's own field", "iot", "PLANT_TOKEN", `[{"device":"d1","traceparent":"` + otherTraceparent + `"},{"device":"d2"}]`, testTraceparent,
			[]string{otherTraceparent, testTraceparent}},
	} {
		var headers []string
		if tc.header != "" {
			headers = []string{"traceparent", tc.header}
		}
		status, _, a := s.post(t, tc.pipeline, testEnv[tc.token], []byte(tc.body), headers...)
		if status != http.StatusOK || len(a.Entries) != len(tc.want) {
			t.Errorf("%s: status %d, answer %+v, want 200 with %d entries", tc.name, status, a, len(tc.want))
			continue
		}
		for i, e := range a.Entries {
			v, ok := s.stored(t, e)
			if !ok {
				t.Fatalf("%s: entry %d not stored", tc.name, i)
			}
			if got, _ := v[processor.TraceField].(string); got != tc.want[i] {
				t.Errorf("%s: entry %d traceparent %q, want %q (fields %v)", tc.name, i, got, tc.want[i], v)
			}
		}
	}
}

// An MQTT v5 user property traceparent goes to the entry of its message,
// a malformed payload's too (forwarded for the pipeline to dead-letter,
// whose dead letter then keeps it and names the trace).
func TestMQTTTraceparentUserProperty(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	for _, m := range []struct{ payload, tp string }{
		{`{"reading_id":"r1","value":1}`, testTraceparent},
		{`{"reading_id":"r2","value":2}`, ""},
		{`not json`, otherTraceparent},
	} {
		p := &paho.Publish{Topic: "sensors/d1/temp", QoS: 1, Payload: []byte(m.payload)}
		if m.tp != "" {
			p.Properties = &paho.PublishProperties{User: paho.UserProperties{{Key: "traceparent", Value: m.tp}}}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := pub.cli.Publish(ctx, p)
		cancel()
		if err != nil {
			t.Fatalf("publish %s: %v", m.payload, err)
		}
	}
	p := f.Pipeline("iot")
	waitFor(t, 10*time.Second, "3 entries", func() bool { return entryCount(t, rdb, p) == 3 })
	waitAppended(t, 3, src)
	got := map[string]string{} // reading id (or the raw payload) → traceparent
	for _, m := range readPartitions(t, rdb, p) {
		tp, _ := m.Values[processor.TraceField].(string)
		data := m.Values["data"].(string)
		var ev struct {
			ReadingID string `json:"reading_id"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil {
			data = ev.ReadingID
		}
		got[data] = tp
	}
	if want := map[string]string{"r1": testTraceparent, "r2": "", "not json": otherTraceparent}; !maps.Equal(got, want) {
		t.Errorf("traceparent by entry = %v, want %v", got, want)
	}

	po := p.Options()
	po.Consumer = "w1"
	proc, err := processor.New(rdb, po)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	waitFor(t, 15*time.Second, "1 dead letter", func() bool { return rdb.XLen(t.Context(), "sensors:dlq").Val() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("processor Run = %v", err)
	}
	dl := rdb.XRange(t.Context(), "sensors:dlq", "-", "+").Val()[0].Values
	if dl[processor.TraceField] != otherTraceparent || dl["eddy.correlation_id"] != processor.TraceID(otherTraceparent) {
		t.Errorf("dead letter %v: want traceparent %s and eddy.correlation_id its trace id", dl, otherTraceparent)
	}
}
