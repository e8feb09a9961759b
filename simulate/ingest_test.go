package simulate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// The simulators against Eddy's real ingest sources, each on its own
// redis-server (and Mosquitto): what they report accepted is what the
// pipeline's input holds.

const ingestConfig = `
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 4, payload: data}
    key: user_id
    steps:
      - filter: 'true'
  - name: iot
    input: {stream: sensors, partitions: 2, payload: data}
    key: device_id
    steps:
      - filter: 'true'
sources:
%s`

var tokens = map[string]string{"WEB_TOKEN": "web-secret", "SLOW_TOKEN": "slow-secret"}

func lookupToken(name string) (string, bool) {
	v, ok := tokens[name]
	return v, ok
}

var epoch = time.UnixMilli(1_700_000_000_000)

func fixedClock() time.Time { return epoch }

func parse(tb testing.TB, sources string) *pipelines.File {
	tb.Helper()
	f, err := pipelines.Parse("ingest.yaml", fmt.Appendf(nil, ingestConfig, sources), nil)
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	return f
}

// serveHTTP runs f's HTTP source on a free port until the test ends and
// returns the route of pipeline.
func serveHTTP(tb testing.TB, f *pipelines.File, rdb redis.UniversalClient, pipeline string) string {
	tb.Helper()
	h, err := ingest.NewHTTP(f, ingest.NewSink(rdb, f), ingest.HTTPOptions{LookupEnv: lookupToken})
	if err != nil {
		tb.Fatalf("NewHTTP = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve = %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/v1/pipelines/" + pipeline + "/events"
}

// entries returns the payloads of every entry of p's partitions.
func entries(tb testing.TB, rdb redis.UniversalClient, p *pipelines.Pipeline) []map[string]any {
	tb.Helper()
	var out []map[string]any
	n := max(p.Input.Partitions, 1)
	for i := range n {
		msgs, err := rdb.XRange(tb.Context(), processor.PartitionStream(p.Input.Stream, i, n), "-", "+").Result()
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range msgs {
			var ev map[string]any
			data, _ := m.Values[p.Input.Payload].(string)
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				ev = map[string]any{"raw": data}
			}
			out = append(out, ev)
		}
	}
	return out
}

// entryCount is how many entries p's partitions hold.
func entryCount(tb testing.TB, rdb redis.UniversalClient, p *pipelines.Pipeline) int64 {
	tb.Helper()
	var total int64
	n := max(p.Input.Partitions, 1)
	for i := range n {
		c, err := rdb.XLen(tb.Context(), processor.PartitionStream(p.Input.Stream, i, n)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			tb.Fatal(err)
		}
		total += c
	}
	return total
}

// expected classifies what a generator with opts makes: the ids of the
// well-formed events (duplicates once), and how many are malformed.
func expected(tb testing.TB, gen func(simulate.Options) simulate.Generator, opts simulate.Options, n int, idField, keyField string) (ids map[string]int, bad, keyless int) {
	tb.Helper()
	g := gen(opts)
	ids = map[string]int{}
	for range n {
		ev, _ := g.Next()
		var m map[string]any
		if json.Unmarshal(ev, &m) != nil {
			bad++
			continue
		}
		if _, ok := m[keyField]; !ok {
			bad++
			keyless++
			continue
		}
		ids[m[idField].(string)]++
	}
	return ids, bad, keyless
}

func feed(tb testing.TB, ctx context.Context, gen simulate.Generator, sink simulate.Sink, rate float64, n int64) {
	tb.Helper()
	f := &simulate.Feeder{Generator: gen, Sink: sink, Rate: rate, Limit: n}
	if err := f.Run(ctx); err != nil {
		tb.Fatalf("Feeder.Run = %v", err)
	}
}

// Clickstream users over HTTP into the real source: every event is
// accepted or rejected as the source's rules say, and every accepted one
// is in the stream, once.
func TestHTTPIntoIngest(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parse(t, "  http:\n    tokens:\n      web: {env: WEB_TOKEN, pipelines: [clicks]}\n")
	const n = 3000
	opts := simulate.Options{Seed: 11, Keys: 200, Duplicates: 0.01, Bad: 0.02, Bursts: 0.01, Silences: 0.01, Silence: time.Second, Now: fixedClock}
	sink := &simulate.HTTP{URL: serveHTTP(t, f, rdb, "clicks"), Token: tokens["WEB_TOKEN"], Batch: 200, Concurrency: 3, Gzip: true}
	feed(t, t.Context(), simulate.NewClickstream(opts), sink, 1e5, n)

	ids, bad, _ := expected(t, simulate.NewClickstream, opts, n, "event_id", "user_id")
	d := sink.Delivery()
	if d.Sent != n || d.Accepted != int64(n-bad) || d.Rejected != int64(bad) || d.Pending() != 0 {
		t.Errorf("Delivery = %+v, want %d sent, %d accepted, %d rejected", d, n, n-bad, bad)
	}
	for reason := range d.Reasons {
		if reason != ingest.ReasonNotJSON && reason != ingest.ReasonMissingKey {
			t.Errorf("rejected for %q, want only %s and %s", reason, ingest.ReasonNotJSON, ingest.ReasonMissingKey)
		}
	}
	got := map[string]int{}
	for _, ev := range entries(t, rdb, f.Pipeline("clicks")) {
		id, _ := ev["event_id"].(string)
		got[id]++
	}
	if len(got) != len(ids) {
		t.Errorf("stream holds %d ids, want %d", len(got), len(ids))
	}
	for id, c := range ids {
		if got[id] != c {
			t.Errorf("id %s: %d entries, want %d (as generated)", id, got[id], c)
		}
	}
}

// A token over its rate gets 429 with Retry-After: the simulator waits and
// sends again, and nothing is lost.
func TestHTTPRateLimitedIngest(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parse(t, "  http:\n    tokens:\n      slow: {env: SLOW_TOKEN, pipelines: [iot], rate: 2000, burst: 400}\n")
	const n = 2000
	sink := &simulate.HTTP{URL: serveHTTP(t, f, rdb, "iot"), Token: tokens["SLOW_TOKEN"], Batch: 400, Concurrency: 2}
	feed(t, t.Context(), simulate.NewIoT(simulate.Options{Seed: 3, Keys: 50}), sink, 1e6, n)
	d := sink.Delivery()
	if d.Accepted != n || d.Rejected != 0 || d.Causes["429"] == 0 {
		t.Errorf("Delivery = %+v, want all %d accepted after some 429s", d, n)
	}
	if c := entryCount(t, rdb, f.Pipeline("iot")); c != n {
		t.Errorf("stream holds %d entries, want %d", c, n)
	}
}

// A pipeline over its backpressure bound answers 503: the simulator waits
// until a worker has caught up, and nothing is lost.
func TestHTTPBackpressureIngest(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parse(t, "  http:\n    backpressure: {max_lag: 300}\n    tokens:\n      web: {env: WEB_TOKEN, pipelines: [iot]}\n")
	const n = 1500
	behind := make(chan struct{})
	var once sync.Once
	sink := &simulate.HTTP{URL: serveHTTP(t, f, rdb, "iot"), Token: tokens["WEB_TOKEN"], Batch: 100, Concurrency: 2,
		Retrying: func(cause string, _ time.Duration) {
			if cause == "503" {
				once.Do(func() { close(behind) })
			}
		}}
	// The worker starts only once the source has refused a request.
	wctx, stop := context.WithCancel(t.Context())
	wdone := make(chan error, 1)
	go func() {
		select {
		case <-behind:
		case <-wctx.Done():
			wdone <- nil
			return
		}
		o := f.Pipeline("iot").Options()
		o.Consumer = "worker-1"
		proc, err := processor.New(rdb, o)
		if err != nil {
			wdone <- err
			return
		}
		wdone <- proc.Run(wctx)
	}()
	feed(t, t.Context(), simulate.NewIoT(simulate.Options{Seed: 5, Keys: 40}), sink, 2000, n)
	stop()
	if err := <-wdone; err != nil {
		t.Errorf("worker: %v", err)
	}
	d := sink.Delivery()
	if d.Accepted != n || d.Causes["503"] == 0 {
		t.Errorf("Delivery = %+v, want all %d accepted after some 503s", d, n)
	}
	if c := entryCount(t, rdb, f.Pipeline("iot")); c != n {
		t.Errorf("stream holds %d entries, want %d", c, n)
	}
}

// mqttSource runs f's first MQTT source into rdb until the test ends, and
// returns once it has subscribed.
func mqttSource(tb testing.TB, f *pipelines.File, rdb redis.UniversalClient) {
	tb.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	m, err := ingest.NewMQTT(f, &f.Sources.MQTT[0], ingest.NewSink(rdb, f), ingest.MQTTOptions{Logger: zap.New(core)})
	if err != nil {
		tb.Fatalf("NewMQTT = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("MQTT.Run = %v", err)
		}
	})
	waitFor(tb, 20*time.Second, "the MQTT source to subscribe", func() bool { return logs.FilterMessage("mqtt_subscribed").Len() > 0 })
}

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mqttConfig(broker string) string {
	return fmt.Sprintf(`  mqtt:
    - name: sim
      broker: %s
      client_id: sim-ingest
      reconnect: {min_backoff: 20ms, max_backoff: 500ms}
      topics:
        - {filter: "sensors/{device_id}/{sensor}", pipeline: iot, key: device_id}
`, broker)
}

// Devices over MQTT into the real source, with bursts, silences, drift
// and malformed readings: every reading the broker acknowledged is in the
// stream, the malformed ones too (the source forwards them for the
// pipeline to dead-letter), and a reading without device_id got the
// topic's, which the simulator filled with "unknown".
func TestMQTTIntoIngest(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parse(t, mqttConfig(broker.URL()))
	mqttSource(t, f, rdb)

	const n = 2000
	opts := simulate.Options{Seed: 21, Keys: 20, Bad: 0.02, Bursts: 0.01, BurstSize: 10, Silences: 0.01, Silence: 200 * time.Millisecond, Drift: 0.1, Now: fixedClock}
	topic, err := simulate.ParseTopic("sensors/{device_id}/{sensor}")
	if err != nil {
		t.Fatal(err)
	}
	sink := &simulate.MQTT{Broker: broker.URL(), Topic: topic, Connections: 2, InFlight: 16}
	defer sink.Close()
	feed(t, t.Context(), simulate.NewIoT(opts), sink, 1e5, n)
	d := sink.Delivery()
	if d.Sent != n || d.Accepted != n || d.Rejected != 0 || d.NoSubscribers != 0 {
		t.Errorf("Delivery = %+v, want %d sent and acknowledged, all with a subscriber", d, n)
	}

	p := f.Pipeline("iot")
	waitFor(t, 30*time.Second, fmt.Sprintf("%d entries", n), func() bool { return entryCount(t, rdb, p) >= n })
	ids, _, keyless := expected(t, simulate.NewIoT, opts, n, "reading_id", "device_id")
	got, unknown := map[string]int{}, 0
	for _, ev := range entries(t, rdb, p) {
		if id, ok := ev["reading_id"].(string); ok {
			got[id]++
		}
		if ev["device_id"] == simulate.TopicUnknown {
			unknown++
		}
	}
	if c := entryCount(t, rdb, p); c != n {
		t.Errorf("stream holds %d entries, want %d", c, n)
	}
	for id := range ids {
		if got[id] != 1 {
			t.Errorf("reading %s: %d entries, want 1", id, got[id])
		}
	}
	if unknown != keyless || keyless == 0 {
		t.Errorf("%d entries with device_id %q, want the %d readings generated without one", unknown, simulate.TopicUnknown, keyless)
	}
}

// The broker restarts while devices publish: each publish is sent again
// until the broker acknowledges it, and every reading reaches the stream
// (some twice: those sent again after their PUBACK was lost).
func TestMQTTRetriesUntilAcked(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parse(t, mqttConfig(broker.URL()))
	mqttSource(t, f, rdb)

	const n = 1500
	topic, _ := simulate.ParseTopic("sensors/{device_id}/{sensor}")
	sink := &simulate.MQTT{Broker: broker.URL(), Topic: topic, Connections: 2, InFlight: 8}
	defer sink.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		feed(t, t.Context(), simulate.NewIoT(simulate.Options{Seed: 8, Keys: 30}), sink, 3000, n)
	}()
	waitFor(t, 30*time.Second, "a third of the readings acknowledged", func() bool { return sink.Delivery().Accepted >= n/3 })
	broker.Restart(t)
	<-done
	d := sink.Delivery()
	if d.Accepted != n || d.Retried == 0 {
		t.Errorf("Delivery = %+v, want all %d acknowledged, some after a retry", d, n)
	}
	p := f.Pipeline("iot")
	var got map[string]int
	waitFor(t, 60*time.Second, fmt.Sprintf("%d distinct readings in the stream", n), func() bool {
		got = map[string]int{}
		for _, ev := range entries(t, rdb, p) {
			if id, ok := ev["reading_id"].(string); ok {
				got[id]++
			}
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Errorf("%d distinct readings, want %d", len(got), n)
	}
	t.Logf("broker restarted: %d publishes retried (%v), %d entries for %d readings", d.Retried, d.Causes, entryCount(t, rdb, p), n)
}

func TestMQTTFirstConnectFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	topic, _ := simulate.ParseTopic("t/{device_id}")
	sink := &simulate.MQTT{Broker: "mqtt://" + addr, Topic: topic}
	defer sink.Close()
	err = sink.Send(t.Context(), []simulate.Event{{Key: "d", Data: []byte(`{"device_id":"d"}`)}})
	if !errors.Is(err, simulate.ErrUnreachable) || !strings.Contains(err.Error(), "MQTT broker mqtt://"+addr+" not reached") {
		t.Errorf("Send to a broker that is not there = %v, want ErrUnreachable naming it", err)
	}
	if d := sink.Delivery(); d.Attempts != 0 || d.Accepted != 0 {
		t.Errorf("Delivery = %+v, want no publish made", d)
	}
}
