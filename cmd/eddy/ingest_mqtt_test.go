package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// readmeMQTT returns the mosquitto_pub command of the README's "Ingest
// over MQTT" section, for the demo's embedded broker: its topic, message,
// and the metric line it says curl then prints.
func readmeMQTT(t *testing.T) (topic, message, metric string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Ingest over MQTT\n")
	if !ok {
		t.Fatal(`README.md has no "## Ingest over MQTT" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	pub := regexp.MustCompile(`mosquitto_pub -h 127\.0\.0\.1 -p 1884 -q 1 -t (\S+) \\\n\s+-m '([^']*)'`).FindStringSubmatch(section)
	if pub == nil {
		t.Fatal("README.md, Ingest over MQTT: no mosquitto_pub -h 127.0.0.1 -p 1884 -q 1 -t TOPIC -m 'MESSAGE' for the demo")
	}
	m := regexp.MustCompile("prints `(eddy_ingest_accepted_total\\{[^}]*\\}) 1`").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README.md, Ingest over MQTT: no `eddy_ingest_accepted_total{…} 1` that curl prints")
	}
	if !strings.Contains(section, "curl -s http://127.0.0.1:9180/metrics | grep '"+m[1]+"'") {
		t.Errorf("README.md, Ingest over MQTT: the curl line does not grep for %s", m[1])
	}
	return pub[1], pub[2], m[1]
}

// The README's "Ingest over MQTT" works as written: the demo, on the
// embedded Redis and its embedded MQTT broker, takes the mosquitto_pub
// message of the README, and the metric the README greps for says 1. The
// broker's and the listener's ports are free ones here; the rest is the
// README's.
func TestReadmeIngestOverMQTT(t *testing.T) {
	topic, message, metric := readmeMQTT(t)
	httpAddr := freeAddr(t)
	// Without the simulators, which publish readings to the same broker
	// (the README says so): the count is the README reading alone.
	cfg, brokerAddr := demoConfig(t, false, "\nhttp:\n  addr: "+httpAddr+"\n")
	p := startEddy(t, "run", "-c", cfg)
	waitFor(t, 30*time.Second, "the embedded broker and the source to start", func() bool {
		return strings.Contains(p.stderr.String(), "mqtt_subscribed")
	})
	publishLikeREADME(t, brokerAddr, topic, message)
	waitFor(t, 20*time.Second, metric+" = 1", func() bool { return strings.Contains(scrape(httpAddr), metric+" 1\n") })
	rejected := regexp.MustCompile(`(?m)^eddy_ingest_rejected_total\{pipeline="iot",reason="[a-z_]+",source="mqtt:devices"\} [1-9]`)
	if page := scrape(httpAddr); rejected.MatchString(page) {
		t.Errorf("the README's reading was rejected:\n%s", rejected.FindString(page))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	for _, want := range []string{"mqtt_embedded_broker_started", "demo only", "mqtt_source_stopped"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// publishLikeREADME runs the README's mosquitto_pub against addr, or, where
// mosquitto_pub is not installed, publishes the same at QoS 1 with paho.
func publishLikeREADME(t *testing.T, addr, topic, message string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if bin, err := exec.LookPath("mosquitto_pub"); err == nil {
		out, err := exec.CommandContext(t.Context(), bin, "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", message).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "readme", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(message)}); err != nil {
		t.Fatal(err)
	}
}

// configs/iot.yaml through eddy ingest, as the README says ("the same
// against the Mosquitto on 127.0.0.1:1883 and the Redis on
// 127.0.0.1:6379"), on a broker and a Redis of the test's own: the
// reading of the README arrives in the iot pipeline's input with its
// device_id from the topic, in its key's partition, and a worker (eddy run
// --no-sources) stores it in device:<device_id>; SIGTERM stops both with
// exit 0.
func TestIngestCommandIoTOverMQTT(t *testing.T) {
	topic, message, _ := readmeMQTT(t)
	broker := mosquittotest.Start(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	iot, err := os.ReadFile("../../configs/iot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const local = "      broker: mqtt://127.0.0.1:1883\n"
	if !strings.Contains(string(iot), local) {
		t.Fatalf("configs/iot.yaml has no MQTT source on the local Mosquitto (%q)", strings.TrimSpace(local))
	}
	cfg := strings.Replace(string(iot), local, "      broker: "+broker.URL()+"\n", 1)
	cfg = strings.Replace(cfg, "addr: 127.0.0.1:9183", "addr: "+freeAddr(t), 1)
	// The file beside a copy of what it refers to (schema files).
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../configs")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "iot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEddy(t, "--redis", srv.URL(), "ingest", "-c", path)
	waitFor(t, 30*time.Second, "eddy ingest to subscribe", func() bool {
		if strings.Contains(p.stderr.String(), "mqtt_subscribed") {
			return true
		}
		select {
		case <-p.exited:
			t.Fatalf("eddy ingest exited: %v\n%s", p.err, p.stderr.String())
		default:
		}
		return false
	})
	publishLikeREADME(t, broker.Addr(), topic, message)

	device := strings.Split(topic, "/")[1]
	stream := processor.PartitionStream("sensors", processor.PartitionOf(device, 4), 4)
	waitFor(t, 20*time.Second, "the reading in "+stream, func() bool { return rdb.XLen(t.Context(), stream).Val() == 1 })
	msgs, err := rdb.XRange(t.Context(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := msgs[0].Values["data"].(string)
	if !strings.Contains(data, `"device_id":"`+device+`"`) || !strings.Contains(data, `"sensor":"temperature"`) {
		t.Errorf("entry data = %s, want device_id %s and sensor temperature from the topic", data, device)
	}
	// The worker checks it against the schema, outputs and stores it:
	// redis-cli HGETALL device:<device> shows it, as the README says.
	w := startEddy(t, "--redis", srv.URL(), "run", "-c", path, "--no-sources", "--http", "off")
	waitFor(t, 30*time.Second, "HGETALL device:"+device, func() bool {
		return rdb.HGet(t.Context(), "device:"+device, "last_sensor").Val() == "temperature"
	})
	if n := rdb.XLen(t.Context(), "sensors:dlq").Val(); n != 0 {
		t.Errorf("the README's reading was dead-lettered: %v", rdb.XRange(t.Context(), "sensors:dlq", "-", "+").Val())
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 20*time.Second); code != 0 {
		t.Errorf("eddy run exit code after SIGTERM = %d, want 0; log:\n%s", code, w.stderr.String())
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eddy ingest exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "mqtt_source_stopped") {
		t.Errorf("log lacks mqtt_source_stopped:\n%s", p.stderr.String())
	}
}
