package bench

import (
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	run := func(side Side, eps float64) RunStats {
		return RunStats{Side: side, Events: 1000, EventsPerSec: eps, CPUSeconds: 0.01, RedisCPUSeconds: 0.02, PeakRSSBytes: 30e6, Outputs: 1000}
	}
	r := &Report{
		Command:  "eddy bench --quick",
		Machine:  Machine{CPUs: 2, GOOS: "linux", GOARCH: "amd64", Redis: "own redis-server", RedisVersion: "7.0.15"},
		Settings: settingsOf(Quick()),
		Throughput: &Throughput{
			Events:   1000,
			Pairs:    []Pair{{First: SideBaseline, Baseline: run(SideBaseline, 100000), Eddy: run(SideEddy, 50000), Ratio: 0.5}},
			Baseline: SideSummary{EventsPerSec: 100000, CPUPerMillion: 6, RedisCPUPerMillion: 4},
			Eddy:     SideSummary{EventsPerSec: 50000, CPUPerMillion: 14, RedisCPUPerMillion: 11},
			Ratio:    0.5,
		},
		Steady: &Throughput{
			Events: 1000, Premarked: 1000,
			Pairs:    []Pair{{First: SideEddy, Baseline: run(SideBaseline, 90000), Eddy: run(SideEddy, 45000), Ratio: 0.5, RedisCPURatio: 1.25}},
			Baseline: SideSummary{EventsPerSec: 90000, RedisCPUPerMillion: 4}, Eddy: SideSummary{EventsPerSec: 45000, RedisCPUPerMillion: 5},
			Ratio: 0.5, RedisCPURatio: 1.25,
		},
		Stateful: &Stateful{
			Events: 1000,
			Runs:   []StatefulRun{{Plain: run(SideEddy, 80000), Incr: run(SideEddyIncr, 64000), RMW: run(SideEddyRMW, 60000), IncrRatio: 0.8, RMWRatio: 0.75}},
			Plain:  SideSummary{EventsPerSec: 80000}, Incr: SideSummary{EventsPerSec: 64000}, RMW: SideSummary{EventsPerSec: 60000},
			IncrRatio: 0.8, RMWRatio: 0.75,
		},
		Windowed: &Windowed{
			Events: 1000,
			Runs: []WindowedRun{
				{Plain: run(SideEddy, 80000), Window: RunStats{Side: SideEddyWindow, Events: 1000, EventsPerSec: 40000, Windows: 987, CloseSeconds: 0.25}, Ratio: 0.5},
				{Plain: run(SideEddy, 70000), Window: RunStats{Side: SideEddyWindow, Events: 1000, EventsPerSec: 42000, Windows: 990, CloseSeconds: 0.5}, Ratio: 0.6},
			},
			Plain: SideSummary{EventsPerSec: 75000, CPUPerMillion: 8, RedisCPUPerMillion: 9}, Window: SideSummary{EventsPerSec: 41000, CPUPerMillion: 50.5, RedisCPUPerMillion: 25.25, PeakRSSBytes: 99e6},
			Windows: 988, CloseSeconds: 0.375, Ratio: 0.55, Target: WindowedTarget,
		},
		Memory: &Memory{Backlog: 1000, Baseline: run(SideBaseline, 1), Eddy: run(SideEddy, 1), TargetBytes: memoryTarget, EddyWithinTarget: true},
		Latency: &LatencyReport{
			Rates: []RateLatency{
				{Rate: 5000, Baseline: Latency{P50: 0.5, P99: 1, P999: 2, Max: 3}, Eddy: Latency{P50: 1, P99: 3, P999: 4, Max: 5}, P99Ratio: 3, BehindEddy: 1},
				{Rate: 30000, Max: true, P99Ratio: 2},
			},
			MaxRate: &MaxRate{Found: true, Rate: 30000, Tries: []SearchTry{{Rate: 40000, P99: 80}, {Rate: 30000, CaughtUp: true, P99: 20, OK: true}}},
		},
	}
	var out strings.Builder
	if err := WriteTable(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"eddy bench --quick", "2 CPUs, linux/amd64", "7.0.15",
		"events/s", "100,000", "50,000", "0.50",
		"DEDUPE STEADY STATE", "1,000 ids marked beforehand", "90,000; 20.00", "1.25",
		"STATEFUL", "64,000", "0.80", "0.75",
		"WINDOWED", "75,000", "41,000", "0.55  target: at least 0.70, not met", "50.50", "25.25", "99.0 MB",
		"turn 2, events/s", "42,000", "0.60; 990 windows, closed in 0.50s",
		"tumbling 1m0s per key in event time (at, unix ms), count and pages: {count_distinct: page}, emit close",
		"a median 988 windows", "(a median 0.38s of the run's time)",
		"peak RSS", "30.0 MB", "target: eddy < 150.0 MB, met",
		"5,000/s", "3.00", "(1 run(s) fell behind)", "30,000/s (max)",
		"max rate", "30,000 events/s", "40,000/s: p99 80.00ms, caught up: false: not sustained",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("WriteTable output lacks %q:\n%s", want, out.String())
		}
	}
}

// The windowed section says when the ratio meets the aim.
func TestWriteTableWindowedMet(t *testing.T) {
	r := &Report{Settings: settingsOf(Quick()), Windowed: &Windowed{Events: 10, Ratio: 0.75, Target: WindowedTarget, MeetsTarget: true}}
	var out strings.Builder
	if err := WriteTable(&out, r); err != nil {
		t.Fatal(err)
	}
	if want := "0.75  target: at least 0.70, met"; !strings.Contains(out.String(), want) {
		t.Errorf("WriteTable output lacks %q:\n%s", want, out.String())
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 10}
	for _, s := range []string{"line one\n", "line two\n", "three\n"} {
		if n, err := tb.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := tb.String(); got != "three\n" {
		t.Errorf("tailBuffer after 3 lines, max 10 bytes = %q, want the whole last line %q", got, "three\n")
	}
}
