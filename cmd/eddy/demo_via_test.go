package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 10, done-when 5: the embedded demo shows both ingest paths at
// work with nothing installed: its simulators send clickstream events
// through its own HTTP source and IoT readings through its embedded MQTT
// broker (simulate[].via), the sources accept them and the pipelines
// process them; the log says which way each simulator sends.
func TestDemoIngestsOverHTTPAndMQTT(t *testing.T) {
	addr := freeAddr(t)
	cfg, _ := demoConfig(t, true, "\nhttp:\n  addr: "+addr+"\n")
	p := startEddy(t, "run", "-c", cfg)
	accepted := func(page, source string) float64 {
		var n float64
		for _, line := range strings.Split(page, "\n") {
			if strings.HasPrefix(line, "eddy_ingest_accepted_total{") && strings.Contains(line, `source="`+source+`"`) {
				n += metricValue(line, "eddy_ingest_accepted_total")
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "events accepted by the HTTP source and the MQTT source, and processed", func() bool {
		page := scrape(addr)
		return accepted(page, "http") > 0 && accepted(page, "mqtt:devices") > 0 &&
			metricValue(page, "eddy_processor_processed_total") > 0
	})
	// The web console is on the same listener (README).
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "clickstream") || !strings.Contains(string(page), "iot") {
		t.Errorf("GET / = %d, %.300s; want the console listing the demo's pipelines", resp.StatusCode, page)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	log := p.stderr.String()
	for _, want := range []string{`"via":"http"`, `"via":"mqtt:devices"`, "mqtt_embedded_broker_started", "http_source_shared"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	// The embedded broker stops after the source that uses it: no lost
	// connection at shutdown.
	for _, unwanted := range []string{"mqtt_connection_lost", "mqtt_connect_failed"} {
		if strings.Contains(log, unwanted) {
			t.Errorf("log has %s at shutdown", unwanted)
		}
	}
}
