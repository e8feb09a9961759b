package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/processor"
)

// mqttConfig is a file with an iot pipeline (4 partitions, dedupe on
// reading_id) and one MQTT source on broker; extra goes into the source.
func mqttConfig(broker, extra string) string {
	return fmt.Sprintf(`
sources:
  mqtt:
    - name: plant
      broker: %s
      client_id: test-plant
      reconnect: {min_backoff: 20ms, max_backoff: 200ms}
      batch_wait: 2ms
%s
pipelines:
  - name: iot
    input: {stream: sensors, partitions: 4, payload: data}
    key: device_id
    dedupe: {id: reading_id, window: 1h}
    steps:
      - require: [reading_id, device_id, value]
      - output: {stream: "sensors:clean"}
`, broker, extra)
}

const namedTopics = `      topics:
        - {filter: "sensors/{device}/{sensor}", pipeline: iot, key: device}`

// The key comes from a named level of the topic: the event gets it under
// the pipeline's key field (and every named level under its name), and is
// routed to that key's partition. The topic's levels win over the
// payload's fields of the same names: the broker's ACL on topics, not the
// payload, says which device is talking.
func TestMQTTKeyFromTopicLevel(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "sensors/d7/temperature", 1,
		`{"reading_id":"r1","value":21.5}`,
		`{"reading_id":"r2","value":22,"device_id":"from-payload","device":"other","sensor":"humidity"}`)

	p := f.Pipeline("iot")
	waitFor(t, 10*time.Second, "2 entries", func() bool { return entryCount(t, rdb, p) == 2 })
	waitAppended(t, 2, src)
	got := map[string]map[string]any{}
	for key, m := range readPartitions(t, rdb, p) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(m.Values["data"].(string)), &ev); err != nil {
			t.Fatalf("entry %s: %v", key, err)
		}
		dev, _ := ev["device_id"].(string)
		if want := processor.PartitionStream("sensors", processor.PartitionOf(dev, 4), 4); !strings.HasPrefix(key, want+" ") {
			t.Errorf("entry %s with device_id %q is not in partition stream %s", key, dev, want)
		}
		got[ev["reading_id"].(string)] = ev
	}
	if r1 := got["r1"]; r1["device_id"] != "d7" || r1["device"] != "d7" || r1["sensor"] != "temperature" || r1["value"] != 21.5 {
		t.Errorf("r1 = %v, want device_id d7 (the key level), device d7, sensor temperature and value 21.5", r1)
	}
	if r2 := got["r2"]; r2["device_id"] != "d7" || r2["device"] != "d7" || r2["sensor"] != "temperature" || r2["value"] != 22.0 {
		t.Errorf("r2 = %v: want the topic's device_id d7, device d7 and sensor temperature over the payload's, and value 22", r2)
	}
	if s := src.m.Stats(); s.Appended != 2 || s.Forwarded != 0 {
		t.Errorf("Stats() = %+v, want 2 appended, none forwarded", s)
	}
}

// A payload that is not JSON, or lacks the key, is appended as it is and
// acked; the pipeline dead-letters it with its reason. Good ones around it
// go through.
func TestMQTTMalformedPayloadIsDeadLetteredByThePipeline(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), `      topics:
        - {filter: "raw/#", pipeline: iot}`))
	reg := prometheus.NewRegistry()
	im := metrics.NewIngest(reg)
	src := startMQTT(t, f, 0, rdb, MQTTOptions{Metrics: im})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "raw/x", 1, `{"reading_id":"ok1","device_id":"d1","value":1}`, `not json at all`, `{"reading_id":"nokey","value":2}`, `{"reading_id":"ok2","device_id":"d2","value":3}`)

	p := f.Pipeline("iot")
	waitFor(t, 10*time.Second, "4 entries", func() bool { return entryCount(t, rdb, p) == 4 })
	waitAppended(t, 4, src)
	if s := src.m.Stats(); s.Forwarded != 2 || s.Appended != 4 {
		t.Errorf("Stats() = %+v, want 4 appended of which 2 forwarded", s)
	}
	if got := counterValue(t, reg, "eddy_ingest_rejected_total", map[string]string{"source": "mqtt:plant", "pipeline": "iot", "reason": ReasonNotJSON}); got != 1 {
		t.Errorf("rejected{reason=%s} = %v, want 1", ReasonNotJSON, got)
	}

	// The pipeline's worker dead-letters the two bad ones and outputs the rest.
	po := p.Options()
	po.Consumer = "w1"
	proc, err := processor.New(rdb, po)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	waitFor(t, 15*time.Second, "2 dead letters and 2 outputs", func() bool {
		return rdb.XLen(t.Context(), "sensors:dlq").Val() == 2 && rdb.XLen(t.Context(), "sensors:clean").Val() == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("processor Run = %v", err)
	}
	dl, err := rdb.XRange(t.Context(), "sensors:dlq", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, m := range dl {
		reasons[m.Values["eddy.reason"].(string)] = true
	}
	if !reasons[processor.ReasonNotJSON] || !reasons[processor.ReasonMissingKey] {
		t.Errorf("dead-letter reasons = %v, want %s and %s", reasons, processor.ReasonNotJSON, processor.ReasonMissingKey)
	}

	// Everything was acked: a new run of the same session gets nothing again.
	src.stop(t)
	again := startMQTT(t, f, 0, rdb, MQTTOptions{})
	time.Sleep(300 * time.Millisecond) // a redelivery would come at once on connect
	if s := again.m.Stats(); s.Appended != 0 {
		t.Errorf("after a restart the source appended %d messages again, want 0 (all were acked)", s.Appended)
	}
}

// counterValue is the value of the counter name with the given labels in
// reg (the test fails if there is none).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, want)
	return 0
}

// Every series of the source exists at zero before the first message.
func TestMQTTMetricsPresentFromTheStart(t *testing.T) {
	t.Parallel()
	f := parseFile(t, mqttConfig("mqtt://127.0.0.1:1", namedTopics))
	reg := prometheus.NewRegistry()
	if _, err := NewMQTT(f, &f.Sources.MQTT[0], nil, MQTTOptions{Metrics: metrics.NewIngest(reg)}); err != nil {
		t.Fatal(err)
	}
	text, err := testutil.CollectAndFormat(reg, expfmt.TypeTextPlain, "eddy_ingest_accepted_total", "eddy_ingest_requests_total", "eddy_ingest_rejected_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`eddy_ingest_accepted_total{pipeline="iot",source="mqtt:plant"} 0`,
		`eddy_ingest_requests_total{pipeline="iot",source="mqtt:plant",status="appended"} 0`,
		`eddy_ingest_requests_total{pipeline="iot",source="mqtt:plant",status="forwarded"} 0`,
		`eddy_ingest_rejected_total{pipeline="iot",reason="not_json",source="mqtt:plant"} 0`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %s; got:\n%s", want, text)
		}
	}
}

// While Redis is down nothing is acked: a source stopped then leaves every
// message with the broker, and the next run of the session (after Redis is
// back) appends them all.
func TestMQTTAcksOnlyAfterRedisHasTheEvents(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{ShutdownTimeout: 300 * time.Millisecond})
	srv.Kill()
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	const n = 50
	for i := range n {
		pub.mustPublish(t, fmt.Sprintf("sensors/d%d/t", i%5), 1, fmt.Sprintf(`{"reading_id":"r%d","value":%d}`, i, i))
	}
	waitFor(t, 10*time.Second, "append failures", func() bool { return src.m.Stats().AppendFailures >= 2 })
	if !strings.Contains(src.logText(), "mqtt_append_failed") {
		t.Errorf("no mqtt_append_failed in the log:\n%s", src.logText())
	}
	src.stop(t) // Redis still down: the soft stop gives up, nothing acked
	if s := src.m.Stats(); s.Appended != 0 {
		t.Fatalf("Stats() = %+v: appended with Redis down", s)
	}
	if !strings.Contains(src.logText(), "mqtt_shutdown_left_unacked") && src.m.Stats().AppendFailures == 0 {
		t.Errorf("the stop did not say it left messages un-acked:\n%s", src.logText())
	}

	srv.Restart(t)
	p := f.Pipeline("iot")
	again := startMQTT(t, f, 0, rdb, MQTTOptions{})
	waitFor(t, 15*time.Second, fmt.Sprintf("%d entries after Redis is back", n), func() bool { return entryCount(t, rdb, p) >= n })
	ids := map[string]int{}
	for _, pl := range payloads(t, rdb, p) {
		var ev struct {
			ID string `json:"reading_id"`
		}
		_ = json.Unmarshal([]byte(pl), &ev)
		ids[ev.ID]++
	}
	for i := range n {
		if ids[fmt.Sprintf("r%d", i)] == 0 {
			t.Errorf("reading r%d lost", i)
		}
	}
	if s := again.m.Stats(); s.Redelivered == 0 {
		t.Logf("note: the broker flagged none of the %d messages as redelivered (%+v)", n, s)
	}
}

// While Redis is down the source keeps trying the same batch and acks it
// once Redis is back, without a restart.
func TestMQTTRetriesUntilRedisIsBack(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	srv.Kill()
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	for i := range 20 {
		pub.mustPublish(t, "sensors/d1/t", 1, fmt.Sprintf(`{"reading_id":"r%d","value":%d}`, i, i))
	}
	waitFor(t, 10*time.Second, "append failures", func() bool { return src.m.Stats().AppendFailures >= 1 })
	srv.Restart(t)
	p := f.Pipeline("iot")
	waitFor(t, 15*time.Second, "20 entries", func() bool { return entryCount(t, rdb, p) == 20 })
	src.stop(t)
	again := startMQTT(t, f, 0, rdb, MQTTOptions{})
	time.Sleep(300 * time.Millisecond)
	if s := again.m.Stats(); s.Appended != 0 {
		t.Errorf("a new run appended %d messages again: they were not acked", s.Appended)
	}
}

// Two processes with one share_group split the messages; together they
// append each once.
func TestMQTTSharedSubscription(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	cfg := mqttConfig(broker.URL(), "      share_group: ingest\n"+namedTopics)
	f1 := parseFile(t, cfg)
	f2 := parseFile(t, strings.Replace(cfg, "client_id: test-plant", "client_id: test-plant-2", 1))
	a := startMQTT(t, f1, 0, rdb, MQTTOptions{})
	b := startMQTT(t, f2, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	const n = 200
	for i := range n {
		pub.mustPublish(t, fmt.Sprintf("sensors/d%d/t", i%10), 1, fmt.Sprintf(`{"reading_id":"r%d","value":%d}`, i, i))
	}
	p := f1.Pipeline("iot")
	waitFor(t, 15*time.Second, fmt.Sprintf("%d entries", n), func() bool { return entryCount(t, rdb, p) >= n })
	waitAppended(t, int64(n), a, b)
	sa, sb := a.m.Stats().Appended, b.m.Stats().Appended
	if sa == 0 || sb == 0 || sa+sb != n {
		t.Errorf("appended %d and %d, want both > 0 and %d in all", sa, sb, n)
	}
	if got := entryCount(t, rdb, p); got != n {
		t.Errorf("%d entries, want %d", got, n)
	}
	if !strings.Contains(a.logText(), "$share/ingest/sensors/+/+") {
		t.Errorf("the source did not subscribe to $share/ingest/sensors/+/+:\n%s", a.logText())
	}
}

// A subscription that an older config left in the persistent session
// brings messages no filter matches: acked, counted and dropped with a
// warning, not held forever.
func TestMQTTUnroutedMessageIsAckedAndCounted(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	old := startMQTT(t, parseFile(t, mqttConfig(broker.URL(), `      topics:
        - {filter: "old/#", pipeline: iot}`)), 0, rdb, MQTTOptions{})
	old.stop(t)
	f := parseFile(t, mqttConfig(broker.URL(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "old/x", 1, `{"reading_id":"o1","device_id":"d","value":1}`)
	pub.mustPublish(t, "sensors/d1/t", 1, `{"reading_id":"n1","value":1}`)
	waitFor(t, 10*time.Second, "one unrouted and one appended", func() bool {
		s := src.m.Stats()
		return s.Unrouted == 1 && s.Appended == 1
	})
	if !strings.Contains(src.logText(), "mqtt_message_unrouted") {
		t.Errorf("no mqtt_message_unrouted warning:\n%s", src.logText())
	}
}

// QoS 0 topics are subscribed at QoS 0 and their messages appended.
func TestMQTTQoS0(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	f := parseFile(t, mqttConfig(broker.URL(), `      topics:
        - {filter: "sensors/{device_id}/{sensor}", pipeline: iot, qos: 0}`))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	if !strings.Contains(src.logText(), "qos=") {
		t.Logf("log:\n%s", src.logText())
	}
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "sensors/d1/t", 0, `{"reading_id":"q0","value":1}`)
	waitFor(t, 10*time.Second, "1 entry", func() bool { return entryCount(t, rdb, f.Pipeline("iot")) == 1 })
}

// Username and password (from a variable or a file) and TLS: the source
// gets in where the password is right, and no message quotes it.
func TestMQTTPasswordAndTLS(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	client := certs.ClientTLS(t)
	broker := mosquittotest.StartWith(t, mosquittotest.Options{
		Users: map[string]string{"eddy": "right-password-123", "dev": "dev-password"},
		TLS:   &mosquittotest.TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile, CAFile: certs.CAFile, Client: client},
	})
	rdb := redistest.Start(t).Client(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("right-password-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsSection := fmt.Sprintf("      tls: {ca_file: %s}\n      username: eddy\n", certs.CAFile)
	f := parseFile(t, mqttConfig(broker.URL(), tlsSection+"      password_file: "+pwFile+"\n"+namedTopics))
	startMQTT(t, f, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{user: "dev", password: "dev-password", tls: client})
	pub.mustPublish(t, "sensors/d1/t", 1, `{"reading_id":"s1","value":1}`)
	waitFor(t, 10*time.Second, "1 entry over TLS", func() bool { return entryCount(t, rdb, f.Pipeline("iot")) == 1 })

	// A wrong password: refused, retried, logged without the password.
	// A variable of this test's own (t.Setenv refuses a parallel test).
	if err := os.Setenv("MQTT_TEST_PASSWORD", "wrong-password-456"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Unsetenv("MQTT_TEST_PASSWORD") })
	bad := parseFile(t, strings.Replace(mqttConfig(broker.URL(), tlsSection+"      password_env: MQTT_TEST_PASSWORD\n"+namedTopics),
		"client_id: test-plant", "client_id: test-bad", 1))
	r := startMQTTWith(t, bad, 0, NewSink(rdb, bad), MQTTOptions{}, false)
	waitFor(t, 10*time.Second, "a refused connection", func() bool { return r.logs.FilterMessage("mqtt_connect_failed").Len() > 0 })
	if text := r.logText(); strings.Contains(text, "wrong-password-456") {
		t.Errorf("the log quotes the password:\n%s", text)
	}
}

// Setup errors name the variable or file and never a secret.
func TestNewMQTTErrors(t *testing.T) {
	t.Setenv("EMPTY_MQTT_PW", "")
	tests := []struct{ extra, want string }{
		{"      username: u\n      password_env: EMPTY_MQTT_PW\n", "source mqtt:plant: password_env: environment variable EMPTY_MQTT_PW is unset or empty"},
		{"      password_file: /nonexistent/pw\n", "source mqtt:plant: password_file: read the secret: open /nonexistent/pw"},
		{"      tls: {ca_file: /nonexistent/ca.pem}\n", "source mqtt:plant: tls: ca_file: open /nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		f := parseFile(t, mqttConfig("mqtt://127.0.0.1:1", tt.extra+namedTopics))
		_, err := NewMQTT(f, &f.Sources.MQTT[0], nil, MQTTOptions{})
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("NewMQTT = %v, want %q…", err, tt.want)
		}
	}
}
