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
// sides, every event verified, ratios and ordered percentiles, the dedupe
// steady state, the stateful and the windowed turns; the server's other keys are left
// alone and none of the bench's is left behind. No timing is asserted:
// speed is never a unit test's business.
func TestBenchQuickJSON(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "someone:else", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(eddyBin, "--redis", srv.URL(), "bench", "--quick", "--json",
		"--events", "5000", "--runs", "1", "--steady-runs", "1", "--stateful-runs", "1", "--backlog", "5000", "--duration", "1s", "--rates", "2000", "--max-rate-tries", "1")
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
	st := rep.Steady
	if st == nil || len(st.Pairs) != 1 || st.Premarked != 5000 || st.Events != 5000 {
		t.Fatalf("steady = %+v, want one pair of 5000 events with 5000 ids marked beforehand", st)
	}
	sf := rep.Stateful
	if sf == nil || len(sf.Runs) != 1 || sf.Events != 5000 {
		t.Fatalf("stateful = %+v, want one turn of 5000 events", sf)
	}
	wd := rep.Windowed
	if wd == nil || len(wd.Runs) != 1 || wd.Events != 5000 || rep.Settings.WindowedRuns != 1 {
		t.Fatalf("windowed = %+v, want one turn of 5000 events (--quick)", wd)
	}
	if w := wd.Runs[0].Window; w.Side != bench.SideEddyWindow || w.Events != 5000 || w.Outputs <= 5000 || w.Pending != 0 ||
		w.Windows < 1000 || w.Windows > 5000 || w.CloseSeconds <= 0 || w.CloseSeconds > w.Seconds || wd.Ratio <= 0 || wd.Target != bench.WindowedTarget {
		t.Errorf("windowed run = %+v, ratio %v, target %v; want 5000 events and their windows (one or more a key), the closing events output, 0 pending, a close time within the run, a ratio and the target",
			w, wd.Ratio, wd.Target)
	}
	runs := []bench.RunStats{tp.Pairs[0].Baseline, tp.Pairs[0].Eddy, st.Pairs[0].Baseline, st.Pairs[0].Eddy,
		sf.Runs[0].Plain, sf.Runs[0].Incr, sf.Runs[0].RMW, wd.Runs[0].Plain, rep.Memory.Baseline, rep.Memory.Eddy}
	wantSides := []bench.Side{bench.SideBaseline, bench.SideEddy, bench.SideBaseline, bench.SideEddy,
		bench.SideEddy, bench.SideEddyIncr, bench.SideEddyRMW, bench.SideEddy, bench.SideBaseline, bench.SideEddy}
	for i, s := range runs {
		if s.Side != wantSides[i] || s.Events != 5000 || s.Outputs != 5000 || s.Pending != 0 || s.EventsPerSec <= 0 ||
			s.CPUSeconds < 0 || s.RedisCPUSeconds <= 0 || s.PeakRSSBytes <= 0 {
			t.Errorf("run %d = %+v, want side %s, 5000 events, 5000 outputs, 0 pending, a rate, Redis CPU and a peak RSS", i, s, wantSides[i])
		}
	}
	for _, tt := range []*bench.Throughput{tp, st} {
		if tt.Ratio <= 0 || tt.Pairs[0].Ratio <= 0 || tt.RedisCPURatio <= 0 || tt.Pairs[0].RedisCPURatio <= 0 ||
			tt.Eddy.EventsPerSec <= 0 || tt.Baseline.EventsPerSec <= 0 || tt.Eddy.RedisCPUPerMillion <= 0 || tt.Baseline.RedisCPUPerMillion <= 0 {
			t.Errorf("throughput ratio %v (pair %v), Redis CPU ratio %v (pair %v), eddy %v, baseline %v events/s, Redis CPU per 1M %v, %v; want all > 0",
				tt.Ratio, tt.Pairs[0].Ratio, tt.RedisCPURatio, tt.Pairs[0].RedisCPURatio, tt.Eddy.EventsPerSec, tt.Baseline.EventsPerSec,
				tt.Eddy.RedisCPUPerMillion, tt.Baseline.RedisCPUPerMillion)
		}
	}
	if sf.IncrRatio <= 0 || sf.RMWRatio <= 0 || sf.Runs[0].IncrRatio <= 0 || sf.Runs[0].RMWRatio <= 0 || sf.Plain.EventsPerSec <= 0 {
		t.Errorf("stateful ratios %v, %v (turn %v, %v), plain %v events/s; want all > 0",
			sf.IncrRatio, sf.RMWRatio, sf.Runs[0].IncrRatio, sf.Runs[0].RMWRatio, sf.Plain.EventsPerSec)
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
		{[]string{"bench", "--steady-runs", "-1"}, "--steady-runs -1"},
		{[]string{"bench", "--stateful-runs", "-1"}, "--stateful-runs -1"},
		{[]string{"bench", "--windowed-runs", "-1"}, "--windowed-runs -1"},
		{[]string{"bench", "--runs", "0"}, "--runs 0"},
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
