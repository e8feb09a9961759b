package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one Run measured; `eddy bench --json` prints it.
type Report struct {
	Command    string         `json:"command"`
	Machine    Machine        `json:"machine"`
	Settings   Settings       `json:"settings"`
	Throughput *Throughput    `json:"throughput,omitempty"`
	Steady     *Throughput    `json:"steady,omitempty"`
	Stateful   *Stateful      `json:"stateful,omitempty"`
	Windowed   *Windowed      `json:"windowed,omitempty"`
	Memory     *Memory        `json:"memory,omitempty"`
	Latency    *LatencyReport `json:"latency,omitempty"`
	// Seconds is the wall time of the whole bench.
	Seconds float64 `json:"seconds"`
}

// Machine is where the bench ran.
type Machine struct {
	CPUs         int    `json:"cpus"`
	GOOS         string `json:"goos"`
	GOARCH       string `json:"goarch"`
	CPUModel     string `json:"cpu_model"`
	Redis        string `json:"redis"` // "own redis-server" or "--redis server"
	RedisVersion string `json:"redis_version"`
}

// Settings are the Options that shape the figures.
type Settings struct {
	Events         int     `json:"events"`
	EventBytes     int     `json:"event_bytes"`
	Keys           int     `json:"keys"`
	Runs           int     `json:"runs"`
	SteadyRuns     int     `json:"steady_runs"`
	StatefulRuns   int     `json:"stateful_runs"`
	WindowedRuns   int     `json:"windowed_runs"`
	Consumers      int     `json:"consumers"`
	Batch          int     `json:"batch"`
	Lanes          int     `json:"lanes"`
	Backlog        int     `json:"backlog"`
	WarmupSec      float64 `json:"warmup_seconds"`
	DurationSec    float64 `json:"duration_seconds"`
	Rates          []int   `json:"rates"`
	LatencyRuns    int     `json:"latency_runs"`
	MaxRateTries   int     `json:"max_rate_tries"`
	SearchDuration float64 `json:"search_duration_seconds"`
}

func settingsOf(o Options) Settings {
	return Settings{
		Events: o.Events, EventBytes: EventSize, Keys: Keys, Runs: o.Runs, SteadyRuns: o.SteadyRuns, StatefulRuns: o.StatefulRuns, WindowedRuns: o.WindowedRuns, Consumers: o.Consumers,
		Batch: o.Batch, Lanes: o.Lanes, Backlog: o.Backlog, WarmupSec: o.Warmup.Seconds(),
		DurationSec: o.Duration.Seconds(), Rates: o.Rates, LatencyRuns: o.LatencyRuns,
		MaxRateTries: o.MaxRateTries, SearchDuration: o.SearchDuration.Seconds(),
	}
}

// WriteTable writes r as tables for people.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s, m := r.Settings, r.Machine
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	p("eddy bench: Eddy's engine against a hand-written go-redis consumer")
	p("command\t%s", r.Command)
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	p("machine\t%d CPUs, %s/%s, %s", m.CPUs, m.GOOS, m.GOARCH, cpu)
	p("redis\t%s %s", m.Redis, m.RedisVersion)
	p("setup\t%s-byte events over %s keys; %d consumer(s) = partition(s); batch %d; lanes %d",
		count(s.EventBytes), count(s.Keys), s.Consumers, s.Batch, s.Lanes)
	p("")

	if t := r.Throughput; t != nil {
		p("THROUGHPUT: %s pre-filled events, medians of %d paired runs", count(t.Events), len(t.Pairs))
		writePairs(p, t)
	}
	if t := r.Steady; t != nil {
		p("DEDUPE STEADY STATE: %s pre-filled events, %s ids marked beforehand (Eddy: over every dedupe set of", count(t.Events), count(t.Premarked))
		p("its window; the baseline: in its one set), medians of %d paired runs", len(t.Pairs))
		writePairs(p, t)
	}
	if st := r.Stateful; st != nil {
		p("STATEFUL: Eddy's pipeline with a keyed counter before the output, %s pre-filled events, medians of %d turns", count(st.Events), len(st.Runs))
		p("\tplain\tincr\trmw")
		p("events/s\t%s\t%s\t%s", count(int(st.Plain.EventsPerSec)), count(int(st.Incr.EventsPerSec)), count(int(st.RMW.EventsPerSec)))
		p("ratio to plain (median of turns)\t1.00\t%.2f\t%.2f", st.IncrRatio, st.RMWRatio)
		p("CPU s per 1M events, eddy\t%.2f\t%.2f\t%.2f", st.Plain.CPUPerMillion, st.Incr.CPUPerMillion, st.RMW.CPUPerMillion)
		p("CPU s per 1M events, redis-server\t%.2f\t%.2f\t%.2f", st.Plain.RedisCPUPerMillion, st.Incr.RedisCPUPerMillion, st.RMW.RedisCPUPerMillion)
		for i, r := range st.Runs {
			p("turn %d, events/s\t%s\t%s\t%s", i+1, count(int(r.Plain.EventsPerSec)), count(int(r.Incr.EventsPerSec)), count(int(r.RMW.EventsPerSec)))
		}
		p("incr: state: {name: %s, incr: {%s: 1}}; rmw: fields: {%s: '(state.%s.%s ?? 0) + 1'}", stateName, stateField, stateField, stateName, stateField)
		p("")
	}
	if wd := r.Windowed; wd != nil {
		writeWindowed(p, wd)
	}

	if mem := r.Memory; mem != nil {
		verdict := "not met"
		if mem.EddyWithinTarget {
			verdict = "met"
		}
		p("MEMORY: a backlog of %s events, one run each", count(mem.Backlog))
		p("\tbaseline\teddy")
		p("peak RSS\t%s\t%s\ttarget: eddy < %s, %s", megabytes(mem.Baseline.PeakRSSBytes), megabytes(mem.Eddy.PeakRSSBytes), megabytes(mem.TargetBytes), verdict)
		p("events/s\t%s\t%s", count(int(mem.Baseline.EventsPerSec)), count(int(mem.Eddy.EventsPerSec)))
		p("")
	}

	if l := r.Latency; l != nil {
		p("LATENCY: ms from XADD to the output being read, medians of %d paired run(s)", s.LatencyRuns)
		p("rate\tside\tp50\tp99\tp999\tmax\tp99 eddy/baseline")
		for _, rl := range l.Rates {
			label := count(rl.Rate) + "/s"
			if rl.Max {
				label += " (max)"
			}
			p("%s\tbaseline\t%s\t", label, latencyCells(rl.Baseline, rl.BehindBaseline))
			p("\teddy\t%s\t%.2f", latencyCells(rl.Eddy, rl.BehindEddy), rl.P99Ratio)
		}
		if mr := l.MaxRate; mr != nil {
			found := fmt.Sprintf("not found in %d tries", len(mr.Tries))
			if mr.Found {
				found = count(mr.Rate) + " events/s"
			}
			p("")
			p("max rate\t%s: the first rate, going down from %.1f × eddy's throughput by × %.1f, at which eddy", found, searchStart, searchStep)
			p("\tcaught up within %v of the producer stopping and kept p99 under %.0fms", catchUpSearch, maxRateP99)
			for i, t := range mr.Tries {
				verdict := "not sustained"
				if t.OK {
					verdict = "sustained"
				}
				p("try %d\t%s/s: p99 %.2fms, caught up: %v: %s", i+1, count(t.Rate), t.P99, t.CaughtUp, verdict)
			}
		}
		p("")
	}
	p("took\t%v", time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	return tw.Flush()
}

// writeWindowed writes the table of the windowed scenario.
func writeWindowed(p func(string, ...any), wd *Windowed) {
	verdict := "not met"
	if wd.MeetsTarget {
		verdict = "met"
	}
	p("WINDOWED: Eddy's pipeline with a window step before the output, %s pre-filled events, medians of %d turns", count(wd.Events), len(wd.Runs))
	p("\tplain\twindow")
	p("events/s\t%s\t%s", count(int(wd.Plain.EventsPerSec)), count(int(wd.Window.EventsPerSec)))
	p("ratio to plain (median of turns)\t1.00\t%.2f\ttarget: at least %.2f, %s", wd.Ratio, wd.Target, verdict)
	p("CPU s per 1M events, eddy\t%.2f\t%.2f", wd.Plain.CPUPerMillion, wd.Window.CPUPerMillion)
	p("CPU s per 1M events, redis-server\t%.2f\t%.2f", wd.Plain.RedisCPUPerMillion, wd.Window.RedisCPUPerMillion)
	p("peak RSS\t%s\t%s", megabytes(wd.Plain.PeakRSSBytes), megabytes(wd.Window.PeakRSSBytes))
	for i, r := range wd.Runs {
		p("turn %d, events/s\t%s\t%s\t%.2f; %s windows, closed in %.2fs", i+1, count(int(r.Plain.EventsPerSec)), count(int(r.Window.EventsPerSec)),
			r.Ratio, count(r.Window.Windows), r.Window.CloseSeconds)
	}
	p("window: tumbling %v per key in event time (%s, unix ms), count and %s: {count_distinct: %s}, emit close;", windowSize, eventTimeField, distinctName, distinctField)
	p("a median %s windows, closed at the end by an event %v ahead on each partition (a median %.2fs of the run's time)", count(wd.Windows), closeAhead, wd.CloseSeconds)
	p("")
}

// writePairs writes the table of a paired throughput scenario.
func writePairs(p func(string, ...any), t *Throughput) {
	p("\tbaseline\teddy\teddy/baseline")
	p("events/s\t%s\t%s\t%.2f", count(int(t.Baseline.EventsPerSec)), count(int(t.Eddy.EventsPerSec)), t.Ratio)
	p("CPU s per 1M events, the side\t%.2f\t%.2f\t%.2f", t.Baseline.CPUPerMillion, t.Eddy.CPUPerMillion, ratio(t.Eddy.CPUPerMillion, t.Baseline.CPUPerMillion))
	p("CPU s per 1M events, redis-server\t%.2f\t%.2f\t%.2f", t.Baseline.RedisCPUPerMillion, t.Eddy.RedisCPUPerMillion, t.RedisCPURatio)
	for i, pr := range t.Pairs {
		p("run %d (%s first), events/s; redis\t%s; %.2f\t%s; %.2f\t%.2f; %.2f", i+1, pr.First,
			count(int(pr.Baseline.EventsPerSec)), perMillion(pr.Baseline.RedisCPUSeconds, pr.Baseline.Events),
			count(int(pr.Eddy.EventsPerSec)), perMillion(pr.Eddy.RedisCPUSeconds, pr.Eddy.Events), pr.Ratio, pr.RedisCPURatio)
	}
	p("(ratios: medians of the pairs' ratios; redis: redis-server CPU µs per event)")
	p("")
}

// latencyCells are the p50, p99, p999 and max cells of a latency row.
func latencyCells(l Latency, behind int) string {
	c := fmt.Sprintf("%.2f\t%.2f\t%.2f\t%.2f", l.P50, l.P99, l.P999, l.Max)
	if behind > 0 {
		c += fmt.Sprintf(" (%d run(s) fell behind)", behind)
	}
	return c
}

// count formats n with thousands separators.
func count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// megabytes formats bytes in MB (10^6 bytes), or "?" when unknown.
func megabytes(b int64) string {
	if b <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(b)/1e6)
}
