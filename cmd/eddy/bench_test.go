package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/bench"
	"github.com/eddy-streams/eddy/internal/redistest"
)

// eddy bench --quick --json on a --redis server: one JSON object with both
// sides, every event verified, ratios and ordered percentiles; the server's
// other keys are left alone and none of the bench's is left behind. No
// timing is asserted: speed is never a unit test's business.
func TestBenchQuickJSON(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "someone:else", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(eddyBin, "--redis", srv.URL(), "bench", "--quick", "--json",
		"--events", "5000", "--runs", "1", "--backlog", "5000", "--duration", "1s", "--rates", "2000", "--max-rate-tries", "1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("eddy bench: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("eddy bench did not finish within 90s; stderr:\n%s", stderr.String())
	}

	var rep bench.Report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not one report: %v\n%s", err, stdout.String())
	}
	if dec.More() {
		t.Errorf("stdout holds more than one JSON value")
	}

	if rep.Machine.RedisVersion == "" || rep.Machine.CPUs < 1 || rep.Machine.Redis != "--redis server" {
		t.Errorf("machine = %+v, want a redis version, CPUs and the --redis server", rep.Machine)
	}
	if !strings.Contains(rep.Command, "bench --quick --json") {
		t.Errorf("command = %q, want the command line", rep.Command)
	}
	tp := rep.Throughput
	if tp == nil || len(tp.Pairs) != 1 {
		t.Fatalf("throughput = %+v, want one pair", tp)
	}
	for _, s := range []bench.RunStats{tp.Pairs[0].Baseline, tp.Pairs[0].Eddy, rep.Memory.Baseline, rep.Memory.Eddy} {
		if s.Events != 5000 || s.Outputs != 5000 || s.Pending != 0 || s.EventsPerSec <= 0 || s.CPUSeconds < 0 || s.PeakRSSBytes <= 0 {
			t.Errorf("%s run = %+v, want 5000 events, 5000 outputs, 0 pending, a rate and a peak RSS", s.Side, s)
		}
	}
	if tp.Ratio <= 0 || tp.Pairs[0].Ratio <= 0 || tp.Eddy.EventsPerSec <= 0 || tp.Baseline.EventsPerSec <= 0 {
		t.Errorf("throughput ratio %v (pair %v), eddy %v, baseline %v events/s; want all > 0",
			tp.Ratio, tp.Pairs[0].Ratio, tp.Eddy.EventsPerSec, tp.Baseline.EventsPerSec)
	}

	lat := rep.Latency
	if lat == nil || len(lat.Rates) < 1 || lat.Rates[0].Rate != 2000 || lat.MaxRate == nil || len(lat.MaxRate.Tries) != 1 {
		t.Fatalf("latency = %+v, want the rate 2000 and one max-rate try", lat)
	}
	for _, rl := range lat.Rates {
		if rl.P99Ratio <= 0 || len(rl.Runs) != 2 {
			t.Errorf("latency at %d/s: p99 ratio %v, %d runs; want > 0 and 2", rl.Rate, rl.P99Ratio, len(rl.Runs))
		}
		for _, l := range []bench.Latency{rl.Baseline, rl.Eddy} {
			if l.Samples < 1 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
				t.Errorf("latency at %d/s = %+v, want samples and p50 <= p99 <= p999 <= max", rl.Rate, l)
			}
		}
		for _, r := range rl.Runs {
			if r.Sent < 1 || r.SentRate <= 0 || (r.CaughtUp && r.Read != r.Sent) {
				t.Errorf("latency run %+v: want events sent, and all read when caught up", r)
			}
		}
	}

	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "someone:else" {
		t.Errorf("keys on the server after the bench: %q, want only someone:else", keys)
	}
}

func TestBenchUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--events", "0"}, "--events 0"},
		{[]string{"bench", "--consumers", "2000"}, "--consumers 2000"},
		{[]string{"bench", "--rates", "0"}, "--rates"},
		{[]string{"bench", "extra"}, "unknown command"},
		{[]string{"bench-baseline", "--stream", "s"}, "--redis, --stream, --group, --output and --seen are required"},
	}
	for _, tt := range tests {
		code, _, errOut := eddy(t, "", tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("eddy %s = %d, %q; want 2 and %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
}

func TestBenchWithoutRedisServer(t *testing.T) {
	cmd := exec.Command(eddyBin, "bench", "--quick")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), bench.ErrNoRedisServer.Error()) {
		t.Errorf("eddy bench without redis-server on PATH = %d (%v), %q; want 1 and %q", code, err, out, bench.ErrNoRedisServer)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"/tmp/go-build1/exe/eddy", "bench", "--quick"}, "eddy bench --quick"},
		{[]string{"eddy", "--redis", "redis://h:1/0", "bench", "--rates", "5000,20000"}, "eddy --redis redis://h:1/0 bench --rates 5000,20000"},
		{[]string{"eddy", "bench", "--x", "a b", ""}, `eddy bench --x "a b" ""`},
	}
	for _, tt := range tests {
		if got := commandLine(tt.argv); got != tt.want {
			t.Errorf("commandLine(%q) = %q, want %q", tt.argv, got, tt.want)
		}
	}
}
