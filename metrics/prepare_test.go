package metrics

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eddy-streams/eddy/processor"
)

// series gathers reg as `name{label=value,…}` (labels by name, as
// gathered) → value (a histogram's sample count), for comparing sets.
func series(tb testing.TB, reg *prometheus.Registry) map[string]float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather = %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[f.GetName()+"{"+strings.Join(kv, ",")+"}"] = v
		}
	}
	return out
}

// key is the series key of name with the label pairs kv, as series makes it.
func key(name string, kv ...string) string {
	var pairs []string
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+"="+kv[i+1])
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// Done-when 5 of issue 12: every series of a pipeline exists at 0 once it
// is prepared, before anything happened: lost leases, every dead-letter
// reason, each analytics step's results and late events.
func TestPrepare(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.Prepare(Pipeline{Name: "iot", Partitions: 2, Owned: true, Reasons: []string{"late", "schema"},
		Steps: []Step{{Name: "minute", Kinds: []string{"window", "update"}, Late: true}, {Name: "hot", Kinds: []string{"alert", "resolve"}}}})
	m.Prepare(Pipeline{Name: "raw", Owned: false})
	got := series(t, reg)
	var want []string
	for _, part := range []string{"0", "1"} {
		for _, name := range []string{"processed_total", "duplicates_total", "stale_total", "retries_total", "commits_total",
			"lag_entries", "pending_entries", "oldest_pending_age_seconds", "timers_fired_total", "wrong_partition_total",
			"partition_owned", "leases_lost_total", "lease_acquisitions_total"} {
			want = append(want, key("eddy_processor_"+name, "pipeline", "iot", "partition", part))
		}
		for _, step := range []string{"minute", "hot"} {
			want = append(want, key("eddy_step_open", "pipeline", "iot", "partition", part, "step", step))
		}
	}
	for _, r := range append(slices.Clone(engineReasons), "late", "schema") {
		want = append(want, key("eddy_processor_dead_letters_total", "pipeline", "iot", "reason", r))
	}
	for _, r := range engineReasons {
		want = append(want, key("eddy_processor_dead_letters_total", "pipeline", "raw", "reason", r))
	}
	for _, name := range []string{"processor_rebalances_total", "processor_members_alive", "processor_commit_duration_seconds",
		"processor_end_to_end_latency_seconds", "processor_timer_lateness_seconds"} {
		want = append(want, key("eddy_"+name, "pipeline", "iot"))
	}
	for _, sk := range [][2]string{{"minute", "window"}, {"minute", "update"}, {"hot", "alert"}, {"hot", "resolve"}} {
		want = append(want, key("eddy_step_results_total", "pipeline", "iot", "step", sk[0], "kind", sk[1]))
	}
	want = append(want, key("eddy_step_late_events_total", "pipeline", "iot", "step", "minute"),
		key("eddy_processor_processed_total", "pipeline", "raw", "partition", "0"),
		key("eddy_processor_lag_entries", "pipeline", "raw", "partition", "0"))
	for _, w := range want {
		v, ok := got[w]
		if !ok {
			t.Errorf("after Prepare: %s missing", w)
		} else if v != 0 {
			t.Errorf("after Prepare: %s = %v, want 0", w, v)
		}
	}
	var extra []string
	for s := range got {
		switch {
		case strings.Contains(s, "pipeline=raw") && (strings.Contains(s, "owned") || strings.Contains(s, "lease") || strings.Contains(s, "rebalances") || strings.Contains(s, "members")):
			extra = append(extra, s) // raw has no owners
		case strings.HasPrefix(s, "eddy_step_late_events_total") && strings.Contains(s, "hot"):
			extra = append(extra, s) // hot counts no late events
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("after Prepare: unexpected series %v", extra)
	}
}

// Prepare does not reset what has moved.
func TestPrepareKeepsValues(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	m.LeaseLost("iot", 1)
	m.Committed(processor.Commit{Pipeline: "iot", Partition: 1, Processed: 3, DeadLetters: map[string]int{"late": 1}})
	m.SetMembers("iot", 3)
	m.Prepare(Pipeline{Name: "iot", Partitions: 2, Owned: true, Reasons: []string{"late"}})
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"leases_lost{iot,1}", m.leasesLost.WithLabelValues("iot", "1"), 1},
		{"processed{iot,1}", m.processed.WithLabelValues("iot", "1"), 3},
		{"dead_letters{iot,late}", m.deadLetter.WithLabelValues("iot", "late"), 1},
		{"members_alive{iot}", m.membersAlive.WithLabelValues("iot"), 3},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s after Prepare = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSetRedis(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	for _, c := range []struct {
		up        bool
		rtt       time.Duration
		wantUp    float64
		wantRound float64
	}{
		{true, 2 * time.Millisecond, 1, 0.002},
		{false, 0, 0, 0.002}, // the round trip of the last read that worked
		{true, 500 * time.Microsecond, 1, 0.0005},
	} {
		m.SetRedis(c.up, c.rtt)
		if up, rt := testutil.ToFloat64(m.redisUp), testutil.ToFloat64(m.redisProbe); up != c.wantUp || rt != c.wantRound {
			t.Errorf("SetRedis(%v, %v): up %v round trip %v, want %v and %v", c.up, c.rtt, up, rt, c.wantUp, c.wantRound)
		}
	}
}
