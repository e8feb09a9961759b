package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/bench"
)

// eddy bench-ingest --quick --json: one JSON report with the three paths
// of every round, each run's readings all found in Redis, both ratios and
// the latency of both sources. No timing is asserted.
func TestBenchIngestQuickJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and mosquitto and sends readings three ways: skipped with -short")
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err := exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Skip("mosquitto not found: install it (apt-get install -y mosquitto), as scripts/test.sh does in CI")
		}
	}
	cmd := exec.Command(eddyBin, "bench-ingest", "--quick", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("eddy bench-ingest: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("eddy bench-ingest --quick did not finish within 5 minutes; stderr:\n%s", stderr.String())
	}

	var rep bench.IngestReport
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not one report: %v\n%s", err, stdout.String())
	}
	q := bench.QuickIngest()
	if rep.Settings.Events != q.Events || rep.Settings.Runs != q.Runs || !strings.Contains(rep.Command, "bench-ingest --quick --json") {
		t.Errorf("settings %+v, command %q: want the quick set", rep.Settings, rep.Command)
	}
	tp := rep.Throughput
	if tp == nil || len(tp.Rounds) != q.Runs {
		t.Fatalf("throughput %+v: want %d rounds", tp, q.Runs)
	}
	for i, r := range tp.Rounds {
		for _, run := range []bench.IngestRun{r.Produce, r.HTTP, r.MQTT} {
			if run.Entries != int64(q.Events) || run.Distinct != int64(q.Events) || !(run.EventsPerSec > 0) {
				t.Errorf("round %d %s: %+v; want all %d readings in Redis", i+1, run.Path, run, q.Events)
			}
		}
	}
	if !(tp.HTTPRatio > 0) || !(tp.MQTTRatio > 0) {
		t.Errorf("ratios %v, %v: want both", tp.HTTPRatio, tp.MQTTRatio)
	}
	if l := rep.Latency; l == nil || l.HTTP.Samples == 0 || l.MQTT.Samples == 0 || l.HTTP.P99 < l.HTTP.P50 || l.MQTT.P99 < l.MQTT.P50 {
		t.Errorf("latency %+v: want samples and ordered percentiles for both sources", l)
	}
	if !strings.Contains(stderr.String(), "round 2/2") {
		t.Errorf("stderr %q: want the progress lines", stderr.String())
	}
}

func TestBenchIngestUsage(t *testing.T) {
	code, _, errOut := eddy(t, "", "bench-ingest", "--events", "0", "--partitions", "2000", "--http-batch", "0")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{"--events 0", "--partitions 2000", "--http-batch 0"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q: want it to name %q", errOut, want)
		}
	}
}
