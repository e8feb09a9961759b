package bench

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// tinyIngest is a run small enough for a test on two busy cores.
func tinyIngest() IngestOptions {
	o := QuickIngest()
	o.Events, o.Runs, o.Keys = 2000, 1, 100
	o.LatencyRate, o.LatencyBatch, o.LatencyRuns = 1000, 10, 1
	o.Warmup, o.Duration = 100*time.Millisecond, 500*time.Millisecond
	return o
}

func needIngestServers(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH")
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err := exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Skip("mosquitto not found: install it (apt-get install -y mosquitto), as scripts/test.sh does in CI")
		}
	}
}

// checkIngestReport checks the report's shape and that every run's
// readings all arrived; never a speed.
func checkIngestReport(t *testing.T, rep *IngestReport, o IngestOptions) {
	t.Helper()
	if rep.Machine.RedisVersion == "" || rep.Machine.CPUs < 1 || rep.Seconds <= 0 {
		t.Errorf("machine %+v, seconds %v: want a Redis version, CPUs and a duration", rep.Machine, rep.Seconds)
	}
	tp := rep.Throughput
	if tp == nil || len(tp.Rounds) != o.Runs || tp.Events != o.Events {
		t.Fatalf("throughput %+v: want %d rounds of %d readings", tp, o.Runs, o.Events)
	}
	for i, r := range tp.Rounds {
		if len(r.Order) != 3 {
			t.Errorf("round %d order %v: want the three paths", i+1, r.Order)
		}
		for _, run := range []IngestRun{r.Produce, r.HTTP, r.MQTT} {
			if run.Events != o.Events || run.Entries != int64(o.Events) || run.Distinct != int64(o.Events) {
				t.Errorf("round %d %s: %d events, %d entries, %d distinct; want %d each", i+1, run.Path, run.Events, run.Entries, run.Distinct, o.Events)
			}
			if !(run.EventsPerSec > 0) || !(run.Seconds > 0) || run.RedisCPUSeconds < 0 {
				t.Errorf("round %d %s: %+v, want positive figures", i+1, run.Path, run)
			}
		}
		if r.Order[0] != paths[i%3] {
			t.Errorf("round %d starts with %s, want %s (rotated)", i+1, r.Order[0], paths[i%3])
		}
		if !(r.HTTPRatio > 0) || !(r.MQTTRatio > 0) {
			t.Errorf("round %d ratios %v, %v: want both", i+1, r.HTTPRatio, r.MQTTRatio)
		}
	}
	if !(tp.HTTPRatioMin <= tp.HTTPRatio && tp.HTTPRatio <= tp.HTTPRatioMax) || !(tp.MQTTRatioMin <= tp.MQTTRatio && tp.MQTTRatio <= tp.MQTTRatioMax) {
		t.Errorf("ratios %+v: want each median within its range", tp)
	}
	l := rep.Latency
	if l == nil || len(l.HTTPRuns) != o.LatencyRuns || len(l.MQTTRuns) != o.LatencyRuns || l.Rate != o.LatencyRate {
		t.Fatalf("latency %+v: want %d runs of each at %d/s", l, o.LatencyRuns, o.LatencyRate)
	}
	for name, lat := range map[string]Latency{"http": l.HTTP, "mqtt": l.MQTT} {
		if lat.Samples == 0 || !(lat.P50 > 0 && lat.P50 <= lat.P99 && lat.P99 <= lat.P999 && lat.P999 <= lat.Max) {
			t.Errorf("%s latency %+v: want samples and p50 <= p99 <= p999 <= max", name, lat)
		}
	}
	var table bytes.Buffer
	if err := WriteIngestTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"THROUGHPUT", "ratio to produce", "LATENCY", "http request of", "mqtt reading", "mosquitto"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// On its own redis-server and mosquitto: the report has every figure and
// every reading arrived.
func TestRunIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and mosquitto and sends readings three ways: skipped with -short")
	}
	needIngestServers(t)
	o := tinyIngest()
	o.Runs = 2
	var progress bytes.Buffer
	o.Progress = &progress
	rep, err := RunIngest(t.Context(), o)
	if err != nil {
		t.Fatalf("RunIngest = %v\n%s", err, progress.String())
	}
	checkIngestReport(t, rep, o)
	if !strings.Contains(progress.String(), "round 2/2") {
		t.Errorf("progress %q: want a line per run", progress.String())
	}
}

// On a server given by URL: only keys under the bench's prefix are written,
// and none is left; the server's own keys are untouched.
func TestRunIngestOnGivenServer(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	needIngestServers(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "theirs", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	o := tinyIngest()
	o.RedisURL = srv.URL()
	o.LatencyRuns = 0
	rep, err := RunIngest(t.Context(), o)
	if err != nil {
		t.Fatalf("RunIngest = %v", err)
	}
	if rep.Machine.Redis != "--redis server" || rep.Throughput == nil || rep.Latency != nil {
		t.Errorf("report %+v: want the given server, throughput and no latency", rep.Machine)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "theirs" {
		t.Errorf("keys after the bench: %q, want only the server's own", keys)
	}
}

func TestIngestOptionsCheck(t *testing.T) {
	if err := StandardIngest().Check(); err != nil {
		t.Errorf("StandardIngest().Check() = %v", err)
	}
	if err := QuickIngest().Check(); err != nil {
		t.Errorf("QuickIngest().Check() = %v", err)
	}
	o := StandardIngest()
	o.Events, o.Partitions, o.HTTPBatch, o.MQTTInFlight, o.LatencyRate, o.Duration = 0, 0, 20_000, 0, 0, 0
	err := o.Check()
	for _, want := range []string{"--events 0", "--partitions 0", "--http-batch 20000", "--mqtt-inflight 0", "--latency-rate 0", "--duration 0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to name %q", err, want)
		}
	}
	o = StandardIngest()
	o.Runs, o.LatencyRuns = 0, 0
	if err := o.Check(); err == nil || !strings.Contains(err.Error(), "nothing to measure") {
		t.Errorf("Check() with no runs = %v, want nothing to measure", err)
	}
}

func TestReadingIndex(t *testing.T) {
	for in, want := range map[string]int{"r-3-0": 0, "r-12-4567": 4567} {
		if got, ok := readingIndex(in); !ok || got != want {
			t.Errorf("readingIndex(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "probe", "r-1-x"} {
		if _, ok := readingIndex(in); ok {
			t.Errorf("readingIndex(%q) ok, want not a reading", in)
		}
	}
}

func TestStartMosquittoMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	defer func(old string) { sbinMosquitto = old }(sbinMosquitto)
	sbinMosquitto = t.TempDir() + "/mosquitto"
	_, err := startMosquitto(t.Context(), t.TempDir())
	if !errors.Is(err, ErrNoMosquitto) {
		t.Errorf("startMosquitto without mosquitto = %v, want ErrNoMosquitto", err)
	}
}
