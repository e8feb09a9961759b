package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
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
)

const simulateConfig = `
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

// simToken is the secret of the test's HTTP source, read from
// EDDY_TEST_SIM_TOKEN; it must appear in no output.
const simToken = "sim-secret-4d1f"

func simulateFile(t *testing.T, sources string) *pipelines.File {
	t.Helper()
	f, err := pipelines.Parse("simulate.yaml", fmt.Appendf(nil, simulateConfig, sources), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// serveIngest serves f's HTTP source on a free port until the test ends
// and returns its address.
func serveIngest(t *testing.T, f *pipelines.File, rdb redis.UniversalClient) string {
	t.Helper()
	h, err := ingest.NewHTTP(f, ingest.NewSink(rdb, f), ingest.HTTPOptions{
		LookupEnv: func(string) (string, bool) { return simToken, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

func inputLen(t *testing.T, rdb redis.UniversalClient, p *pipelines.Pipeline) int64 {
	t.Helper()
	var n int64
	parts := max(p.Input.Partitions, 1)
	for i := range parts {
		c, err := rdb.XLen(t.Context(), processor.PartitionStream(p.Input.Stream, i, parts)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

var summaryRE = regexp.MustCompile(`^sent (\d+) (\w+) events to (\S+).*: accepted (\d+), rejected (\d+)`)

// summaryCounts parses the summary line: sent, accepted, rejected.
func summaryCounts(t *testing.T, out string) (sent, accepted, rejected int64) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in %q", out)
	}
	atoi := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	return atoi(m[1]), atoi(m[4]), atoi(m[5])
}

func TestSimulateStdout(t *testing.T) {
	code, out, errOut := eddy(t, "", "simulate", "--kind", "iot", "--count", "50", "--keys", "5", "--bursts", "0.2", "--silences", "0.1", "--drift", "0.5", "--seed", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["device_id"] == nil {
			t.Fatalf("line %q: want an IoT reading (%v)", l, err)
		}
	}
}

func TestSimulateUsage(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--rate", "5", "--topic", "x"}, []string{"--rate: only with --to", "--topic: only with --to"}},
		{[]string{"--bursts", "2", "--silences", "-1", "--burst-size", "1", "--kind", "clicks"}, []string{"--bursts 2", "--silences -1", "--burst-size 1", `--kind "clicks"`}},
		{[]string{"--drift", "1"}, []string{"--drift: only iot"}},
		{[]string{"--to", "http://127.0.0.1:1/"}, []string{"want the route of a pipeline"}},
		{[]string{"--to", "ftp://127.0.0.1:1/"}, []string{"want http://, https://, mqtt:// or mqtts://"}},
		{[]string{"--to", "mqtt://127.0.0.1:1", "--token-env", "X", "--gzip"}, []string{"--token-env: only with an http(s) --to", "--gzip: only with an http(s) --to"}},
		{[]string{"--to", "http://127.0.0.1:1/v1/pipelines/x/events", "--topic", "a/{b}", "--rate", "0"}, []string{"--topic: only with an mqtt(s) --to", "--rate 0"}},
		{[]string{"--to", "mqtt://127.0.0.1:1", "--topic", "a/+/b"}, []string{"--topic: topic template", "wildcards"}},
		{[]string{"--to", "http://user:pw@127.0.0.1:1/v1/pipelines/x/events"}, []string{"no user or password in the URL"}},
		{[]string{"--to", "http://127.0.0.1:1/v1/pipelines/x/events", "--ca", "x.pem"}, []string{"--ca: only with an https or mqtts --to"}},
		{[]string{"--to", "http://127.0.0.1:1/v1/pipelines/x/events", "--token-env", "EDDY_TEST_UNSET_TOKEN_VAR"}, []string{"--token-env EDDY_TEST_UNSET_TOKEN_VAR: the environment variable EDDY_TEST_UNSET_TOKEN_VAR is unset or empty"}},
	}
	for _, tt := range tests {
		code, out, errOut := eddy(t, "", append([]string{"simulate"}, tt.args...)...)
		if code != 2 {
			t.Errorf("simulate %v: exit %d, want 2 (stdout %q)", tt.args, code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("simulate %v: stderr %q, want it to say %q", tt.args, errOut, w)
			}
		}
		if strings.Contains(errOut, "pw@") {
			t.Errorf("simulate %v: stderr %q quotes the URL's password", tt.args, errOut)
		}
	}
}

// eddy simulate --to an HTTP source: what it says was accepted is in the
// stream, the rejected malformed events are not, and the token is printed
// nowhere.
func TestSimulateToHTTP(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := simulateFile(t, "  http:\n    tokens:\n      web: {env: SIM_TOKEN, pipelines: [clicks]}\n")
	url := "http://" + serveIngest(t, f, rdb) + "/v1/pipelines/clicks/events"
	t.Setenv("EDDY_TEST_SIM_TOKEN", simToken)
	code, out, errOut := eddy(t, "", "simulate", "--kind", "clickstream", "--count", "600", "--rate", "20000", "--bad", "0.05",
		"--keys", "50", "--to", url, "--token-env", "EDDY_TEST_SIM_TOKEN", "--batch", "100", "--gzip")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	sent, accepted, rejected := summaryCounts(t, out)
	if sent != 600 || accepted+rejected != 600 || rejected == 0 {
		t.Errorf("summary %q: want 600 sent, accepted + rejected = 600, some rejected", out)
	}
	if n := inputLen(t, rdb, f.Pipeline("clicks")); n != accepted {
		t.Errorf("stream holds %d entries, the summary says %d accepted", n, accepted)
	}
	if !strings.Contains(out, "missing_key") || !strings.Contains(out, "not_json") {
		t.Errorf("summary %q: want the rejections by reason", out)
	}
	if strings.Contains(out+errOut, simToken) {
		t.Errorf("the token is in the output: %s %s", out, errOut)
	}

	// A wrong token stops at once, with the source's answer.
	t.Setenv("EDDY_TEST_SIM_TOKEN", "wrong")
	code, out, errOut = eddy(t, "", "simulate", "--count", "10", "--to", url, "--token-env", "EDDY_TEST_SIM_TOKEN")
	// The generator may not have made all 10 when the 401 stops delivery:
	// whatever was sent is reported not confirmed, none accepted.
	m := regexp.MustCompile(`^sent (\d+) .*accepted 0, .*not confirmed (\d+) \(delivery stopped\)`).FindStringSubmatch(out)
	if code != 1 || !strings.Contains(errOut, "401 Unauthorized: unknown bearer token") || m == nil || m[1] != m[2] {
		t.Errorf("wrong token: exit %d, stdout %q, stderr %q; want 1, 401 and every event sent not confirmed", code, out, errOut)
	}
}

// eddy simulate --to https with --ca: the source's certificate is checked
// against the CA given.
func TestSimulateToHTTPS(t *testing.T) {
	certs := redistest.NewCerts(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := simulateFile(t, fmt.Sprintf("  http:\n    addr: 127.0.0.1:1\n    tls: {cert_file: %s, key_file: %s}\n    tokens:\n      plant: {env: SIM_TOKEN, pipelines: [iot]}\n",
		certs.ServerCertFile, certs.ServerKeyFile))
	url := "https://" + serveIngest(t, f, rdb) + "/v1/pipelines/iot/events"
	t.Setenv("EDDY_TEST_SIM_TOKEN", simToken)
	code, out, errOut := eddy(t, "", "simulate", "--kind", "iot", "--count", "300", "--rate", "20000", "--to", url,
		"--token-env", "EDDY_TEST_SIM_TOKEN", "--ca", certs.CAFile)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if _, accepted, _ := summaryCounts(t, out); accepted != 300 || inputLen(t, rdb, f.Pipeline("iot")) != 300 {
		t.Errorf("summary %q, stream %d entries: want 300 accepted and appended", out, inputLen(t, rdb, f.Pipeline("iot")))
	}
	// Without --ca the system's roots do not know the test's CA.
	code, _, errOut = eddy(t, "", "simulate", "--kind", "iot", "--count", "1", "--to", url, "--token-env", "EDDY_TEST_SIM_TOKEN")
	if code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("https without --ca: exit %d, stderr %q; want 1 and the certificate named", code, errOut)
	}
}

// eddy simulate --to an MQTT broker that an MQTT source reads: every
// reading the broker acknowledged is in the stream.
func TestSimulateToMQTT(t *testing.T) {
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := simulateFile(t, fmt.Sprintf(`  mqtt:
    - name: sim
      broker: %s
      client_id: sim-cmd-ingest
      topics:
        - {filter: "sensors/{device_id}/{sensor}", pipeline: iot, key: device_id}
`, broker.URL()))
	core, logs := observer.New(zapcore.InfoLevel)
	m, err := ingest.NewMQTT(f, &f.Sources.MQTT[0], ingest.NewSink(rdb, f), ingest.MQTTOptions{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("MQTT.Run = %v", err)
		}
	}()
	waitFor(t, 20*time.Second, "the source to subscribe", func() bool { return logs.FilterMessage("mqtt_subscribed").Len() > 0 })

	code, out, errOut := eddy(t, "", "simulate", "--kind", "iot", "--count", "800", "--rate", "20000", "--keys", "25",
		"--bursts", "0.02", "--silences", "0.02", "--silence", "100ms", "--drift", "0.2", "--to", broker.URL(), "--connections", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	sent, accepted, _ := summaryCounts(t, out)
	if sent != 800 || accepted != 800 || !strings.Contains(out, "(topic sensors/{device_id}/{sensor})") {
		t.Errorf("summary %q: want 800 sent and acknowledged, and the topic", out)
	}
	p := f.Pipeline("iot")
	waitFor(t, 30*time.Second, "800 entries", func() bool { return inputLen(t, rdb, p) >= 800 })
	if n := inputLen(t, rdb, p); n != 800 {
		t.Errorf("stream holds %d entries, want 800", n)
	}
}

// A secret given where --token-env or --password-env wants a variable's
// name is refused, and printed nowhere.
func TestSimulateEnvFlagSecretNotEchoed(t *testing.T) {
	const secret = "s3cr3t-value/9f2=="
	tests := []struct {
		flag string
		args []string
	}{
		{"--token-env", []string{"--to", "http://127.0.0.1:1/v1/pipelines/x/events", "--token-env", secret}},
		{"--token-env", []string{"--to", "http://127.0.0.1:1/v1/pipelines/x/events", "--token-env", "Bearer " + secret}},
		{"--token-env", []string{"--token-env", secret}}, // no --to as well
		{"--password-env", []string{"--to", "mqtt://127.0.0.1:1", "--username", "u", "--password-env", secret}},
	}
	for _, tt := range tests {
		code, out, errOut := eddy(t, "", append([]string{"simulate"}, tt.args...)...)
		if code != 2 || !strings.Contains(errOut, tt.flag+": want the name of an environment variable") {
			t.Errorf("simulate %s SECRET: exit %d, stderr %q; want 2 and the flag named", tt.flag, code, errOut)
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("simulate %s SECRET: the secret is in the output: %q %q", tt.flag, out, errOut)
		}
	}
}

// eddy simulate --to a broker or source that nothing listens on fails,
// naming it, and claims no event sent.
func TestSimulateUnreachable(t *testing.T) {
	addr := freeAddr(t) // a port just closed: nothing listens there
	tests := []struct{ to, what string }{
		{"mqtt://" + addr, "MQTT broker mqtt://" + addr + " not reached"},
		{"http://" + addr + "/v1/pipelines/iot/events", "HTTP source http://" + addr + "/v1/pipelines/iot/events not reached"},
	}
	for _, tt := range tests {
		code, out, errOut := eddy(t, "", "simulate", "--kind", "iot", "--count", "20", "--rate", "20000", "--to", tt.to)
		if code != 1 || !strings.Contains(errOut, tt.what) {
			t.Errorf("simulate --to %s: exit %d, stderr %q; want 1 and %q", tt.to, code, errOut, tt.what)
		}
		if summaryRE.MatchString(out) || !strings.HasPrefix(out, "nothing delivered to "+tt.to) {
			t.Errorf("simulate --to %s: stdout %q; want no \"sent N\", but \"nothing delivered to …\"", tt.to, out)
		}
	}
}
