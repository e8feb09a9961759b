package metrics

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-streams/eddy/processor"
)

// newTest returns Metrics registered on a fresh registry.
func newTest(tb testing.TB) (*Metrics, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	return New(reg), reg
}

// exercise moves every series of m at least once.
func exercise(m *Metrics) {
	m.Committed(processor.Commit{
		Pipeline: "orders", Partition: 1,
		Processed: 3, Duplicates: 1, Stale: 1,
		DeadLetters: map[string]int{processor.ReasonNotJSON: 2, "custom": 1},
		Duration:    3 * time.Millisecond,
		Latencies:   []time.Duration{time.Millisecond, 20 * time.Millisecond, 2 * time.Second},
		TimersFired: 2, TimerLateness: []time.Duration{30 * time.Millisecond},
		WrongPartition: 1,
		Counts:         map[string]int{"minute/emitted/window": 2, "minute/late": 1, "silent/forgotten": 1},
	})
	m.SetStepGauges("orders", 1, map[string]int64{"minute/open": 3})
	m.Retried("orders", 1, errors.New("boom"))
	m.Handled("orders", 150*time.Microsecond)
	m.SetPartitionStats("orders", 1, 10, 4, 1500*time.Millisecond)
	m.Produced("orders", 100)
	m.Owned("orders", 1, true)
	m.LeaseLost("orders", 2)
	m.SetMembers("orders", 2)
	m.SetRedis(true, time.Millisecond)
	m.Trimmed(processor.TrimReport{Pipeline: "orders", Stream: "{orders:1}", Removed: 5, Length: 10, HeldBy: "slow", Over: 3, Abandoned: true, Oldest: time.Now().Add(-time.Minute)})
}

func TestLint(t *testing.T) {
	t.Parallel()
	m, reg := newTest(t)
	exercise(m)
	for _, c := range m.collectors() {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatalf("CollectAndLint = %v", err)
		}
		for _, p := range problems {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
		if n := testutil.CollectAndCount(c); n == 0 {
			t.Errorf("collector %T has no series after exercise", c)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint = %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	m, reg := newTest(t)
	exercise(m)
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather = %v", err)
	}
	got := map[string]dto.MetricType{}
	for _, f := range families {
		got[f.GetName()] = f.GetType()
	}
	want := map[string]dto.MetricType{
		"eddy_processor_processed_total":            dto.MetricType_COUNTER,
		"eddy_processor_duplicates_total":           dto.MetricType_COUNTER,
		"eddy_processor_stale_total":                dto.MetricType_COUNTER,
		"eddy_processor_retries_total":              dto.MetricType_COUNTER,
		"eddy_processor_dead_letters_total":         dto.MetricType_COUNTER,
		"eddy_processor_commits_total":              dto.MetricType_COUNTER,
		"eddy_processor_commit_duration_seconds":    dto.MetricType_HISTOGRAM,
		"eddy_processor_handle_duration_seconds":    dto.MetricType_HISTOGRAM,
		"eddy_processor_end_to_end_latency_seconds": dto.MetricType_HISTOGRAM,
		"eddy_processor_lag_entries":                dto.MetricType_GAUGE,
		"eddy_processor_pending_entries":            dto.MetricType_GAUGE,
		"eddy_processor_oldest_pending_age_seconds": dto.MetricType_GAUGE,
		"eddy_ingest_produced_total":                dto.MetricType_COUNTER,
		"eddy_processor_partition_owned":            dto.MetricType_GAUGE,
		"eddy_processor_leases_lost_total":          dto.MetricType_COUNTER,
		"eddy_processor_lease_acquisitions_total":   dto.MetricType_COUNTER,
		"eddy_processor_rebalances_total":           dto.MetricType_COUNTER,
		"eddy_processor_members_alive":              dto.MetricType_GAUGE,
		"eddy_redis_up":                             dto.MetricType_GAUGE,
		"eddy_redis_probe_seconds":                  dto.MetricType_GAUGE,
		"eddy_processor_timers_fired_total":         dto.MetricType_COUNTER,
		"eddy_processor_timer_lateness_seconds":     dto.MetricType_HISTOGRAM,
		"eddy_processor_wrong_partition_total":      dto.MetricType_COUNTER,
		"eddy_build_info":                           dto.MetricType_GAUGE,
		"eddy_step_results_total":                   dto.MetricType_COUNTER,
		"eddy_step_late_events_total":               dto.MetricType_COUNTER,
		"eddy_step_forgotten_total":                 dto.MetricType_COUNTER,
		"eddy_step_open":                            dto.MetricType_GAUGE,
		"eddy_retention_trimmed_total":              dto.MetricType_COUNTER,
		"eddy_retention_length":                     dto.MetricType_GAUGE,
		"eddy_retention_oldest_age_seconds":         dto.MetricType_GAUGE,
		"eddy_retention_held_back_entries":          dto.MetricType_GAUGE,
		"eddy_retention_abandoned":                  dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		if g, ok := got[name]; !ok || g != typ {
			t.Errorf("gathered %s as %v (present %v), want %v", name, g, ok, typ)
		}
	}
	if len(got) != len(want) {
		t.Errorf("gathered %d families, want %d: %v", len(got), len(want), got)
	}
}

func TestCommitted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		commits []processor.Commit
		// want maps a counter to its value on pipeline "p", partition "0".
		want map[string]float64
	}{
		{
			name:    "empty commit counts the commit only",
			commits: []processor.Commit{{Pipeline: "p"}},
			want:    map[string]float64{"commits": 1, "processed": 0, "duplicates": 0, "stale": 0},
		},
		{
			name: "counts add up over commits",
			commits: []processor.Commit{
				{Pipeline: "p", Processed: 5, Duplicates: 2, Stale: 1},
				{Pipeline: "p", Processed: 7},
				{Pipeline: "p", Partition: 1, Processed: 100}, // another partition
				{Pipeline: "q", Processed: 100},               // another pipeline
			},
			want: map[string]float64{"commits": 2, "processed": 12, "duplicates": 2, "stale": 1},
		},
		{
			name:    "negative counts are ignored",
			commits: []processor.Commit{{Pipeline: "p", Processed: -3}},
			want:    map[string]float64{"commits": 1, "processed": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newTest(t)
			for _, c := range tt.commits {
				m.Committed(c)
			}
			vecs := map[string]*prometheus.CounterVec{
				"commits": m.commits, "processed": m.processed,
				"duplicates": m.duplicates, "stale": m.stale,
			}
			for name, want := range tt.want {
				if got := testutil.ToFloat64(vecs[name].WithLabelValues("p", "0")); got != want {
					t.Errorf("%s{pipeline=p,partition=0} = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestCommittedDeadLetters(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	m.Committed(processor.Commit{Pipeline: "p", DeadLetters: map[string]int{"not_json": 2, "custom": 1, "": 4}})
	m.Committed(processor.Commit{Pipeline: "p", DeadLetters: map[string]int{"not_json": 1}})

	const want = `
# HELP eddy_processor_dead_letters_total Entries moved to the dead-letter stream, by reason.
# TYPE eddy_processor_dead_letters_total counter
eddy_processor_dead_letters_total{pipeline="p",reason="commit_failed"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="custom"} 1
eddy_processor_dead_letters_total{pipeline="p",reason="invalid"} 4
eddy_processor_dead_letters_total{pipeline="p",reason="invalid_effect"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="max_attempts"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="max_deliveries"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="missing_key"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="not_json"} 3
eddy_processor_dead_letters_total{pipeline="p",reason="output_failed"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="too_large"} 0
eddy_processor_dead_letters_total{pipeline="p",reason="wrong_partition"} 0
`
	if err := testutil.CollectAndCompare(m.deadLetter, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestCommittedHistograms(t *testing.T) {
	t.Parallel()
	m, reg := newTest(t)
	m.Committed(processor.Commit{
		Pipeline:  "p",
		Duration:  2 * time.Millisecond,
		Latencies: []time.Duration{time.Millisecond, 3 * time.Second, -time.Second},
	})
	m.Committed(processor.Commit{Pipeline: "p", Duration: 4 * time.Millisecond})

	tests := []struct {
		name      string
		wantCount uint64
		wantSum   float64
	}{
		{"eddy_processor_commit_duration_seconds", 2, 0.006},
		{"eddy_processor_end_to_end_latency_seconds", 3, 3.001}, // the negative latency counts as 0
		{"eddy_processor_handle_duration_seconds", 0, 0},
	}
	for _, tt := range tests {
		count, sum := histogram(t, reg, tt.name, "p")
		if count != tt.wantCount || !near(sum, tt.wantSum) {
			t.Errorf("%s{pipeline=p}: count, sum = %d, %v, want %d, %v", tt.name, count, sum, tt.wantCount, tt.wantSum)
		}
	}
}

func TestRetriedHandled(t *testing.T) {
	t.Parallel()
	m, reg := newTest(t)
	m.Retried("p", 2, errors.New("x"))
	m.Retried("p", 2, nil)
	m.Retried("p", 0, nil)
	m.Handled("p", 2*time.Millisecond)
	m.Handled("p", 3*time.Millisecond)

	tests := []struct {
		partition string
		want      float64
	}{{"0", 1}, {"1", 0}, {"2", 2}}
	for _, tt := range tests {
		if got := testutil.ToFloat64(m.retries.WithLabelValues("p", tt.partition)); got != tt.want {
			t.Errorf("retries{pipeline=p,partition=%s} = %v, want %v", tt.partition, got, tt.want)
		}
	}
	if count, sum := histogram(t, reg, "eddy_processor_handle_duration_seconds", "p"); count != 2 || !near(sum, 0.005) {
		t.Errorf("handle_duration{pipeline=p}: count, sum = %d, %v, want 2, 0.005", count, sum)
	}
}

func TestSetPartitionStats(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	type stats struct {
		lag, pending int64
		age          time.Duration
	}
	tests := []struct {
		name                       string
		set                        []stats
		wantLag, wantPend, wantAge float64
	}{
		{"set", []stats{{10, 3, 2500 * time.Millisecond}}, 10, 3, 2.5},
		{"latest wins", []stats{{10, 3, time.Second}, {0, 0, 0}}, 0, 0, 0},
		{"unknown lag keeps the last", []stats{{7, 1, time.Second}, {-1, 2, 2 * time.Second}}, 7, 2, 2},
	}
	for i, tt := range tests {
		part := i // one partition per case, so the cases do not interfere
		for _, s := range tt.set {
			m.SetPartitionStats("p", part, s.lag, s.pending, s.age)
		}
		l := []string{"p", itoa(part)}
		got := []float64{
			testutil.ToFloat64(m.lag.WithLabelValues(l...)),
			testutil.ToFloat64(m.pending.WithLabelValues(l...)),
			testutil.ToFloat64(m.oldestPendingAge.WithLabelValues(l...)),
		}
		want := []float64{tt.wantLag, tt.wantPend, tt.wantAge}
		for j := range got {
			if got[j] != want[j] {
				t.Errorf("%s: lag, pending, age = %v, want %v", tt.name, got, want)
				break
			}
		}
	}
}

func TestProduced(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	m.Produced("a", 10)
	m.Produced("a", 5)
	m.Produced("b", 1)
	m.Produced("b", 0)
	const want = `
# HELP eddy_ingest_produced_total Entries added to a pipeline's input stream by a producer or simulator.
# TYPE eddy_ingest_produced_total counter
eddy_ingest_produced_total{pipeline="a"} 15
eddy_ingest_produced_total{pipeline="b"} 1
`
	if err := testutil.CollectAndCompare(m.produced, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestBuildInfo(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	if n := testutil.CollectAndCount(m.buildInfo); n != 1 {
		t.Errorf("eddy_build_info has %d series after New, want 1", n)
	}
	m.SetBuildInfo("v1.2.3")
	const want = `
# HELP eddy_build_info Always 1; the version label names the running build.
# TYPE eddy_build_info gauge
eddy_build_info{version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(m.buildInfo, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestNewTwiceOnOneRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, b := New(reg), New(reg)
	a.Produced("p", 1)
	b.Produced("p", 2)
	if got := testutil.ToFloat64(a.produced.WithLabelValues("p")); got != 3 {
		t.Errorf("produced after 1 via a and 2 via b = %v, want 3 (shared collector)", got)
	}
}

func TestNewConflictPanics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "eddy_processor_processed_total", Help: "other"}))
	defer func() {
		if recover() == nil {
			t.Error("New on a registry with a conflicting eddy_processor_processed_total did not panic")
		}
	}()
	New(reg)
}

func TestNilRegistry(t *testing.T) {
	t.Parallel()
	m := New(nil)
	exercise(m) // must not panic
	if got := testutil.ToFloat64(m.produced.WithLabelValues("orders")); got != 100 {
		t.Errorf("produced{pipeline=orders} = %v, want 100", got)
	}
}

func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	const goroutines, each = 8, 200
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				m.Committed(processor.Commit{Pipeline: "p", Partition: (g + i) % 4, Processed: 1})
				m.Handled("p", time.Millisecond)
			}
		}()
	}
	for range goroutines {
		<-done
	}
	var total float64
	for part := range 4 {
		total += testutil.ToFloat64(m.processed.WithLabelValues("p", itoa(part)))
	}
	if total != goroutines*each {
		t.Errorf("processed over all partitions = %v, want %d", total, goroutines*each)
	}
}

// histogram returns the sample count and sum of the named histogram's
// series for pipeline.
func histogram(tb testing.TB, g prometheus.Gatherer, name, pipeline string) (uint64, float64) {
	tb.Helper()
	families, err := g.Gather()
	if err != nil {
		tb.Fatalf("Gather = %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == labelPipeline && l.GetValue() == pipeline {
					return s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	tb.Fatalf("no %s{pipeline=%q} gathered", name, pipeline)
	return 0, 0
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestOwnership(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	m.Owned("orders", 3, true)
	if got := testutil.ToFloat64(m.owned.WithLabelValues("orders", "3")); got != 1 {
		t.Errorf("partition_owned after Owned(true) = %v, want 1", got)
	}
	m.Owned("orders", 3, false)
	if got := testutil.ToFloat64(m.owned.WithLabelValues("orders", "3")); got != 0 {
		t.Errorf("partition_owned after Owned(false) = %v, want 0", got)
	}
	m.LeaseLost("orders", 3)
	m.LeaseLost("orders", 3)
	if got := testutil.ToFloat64(m.leasesLost.WithLabelValues("orders", "3")); got != 2 {
		t.Errorf("leases_lost_total = %v, want 2", got)
	}
	m.Owned("orders", 3, true)
	m.Owned("orders", 1, true)
	if got := testutil.ToFloat64(m.acquisitions.WithLabelValues("orders", "3")); got != 2 {
		t.Errorf("lease_acquisitions_total{3} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.rebalances.WithLabelValues("orders")); got != 4 {
		t.Errorf("rebalances_total = %v, want 4 (3 taken, 1 given up)", got)
	}
}

// A commit's step counts and a partition's gauges land in the step series,
// under the names package pipelines gives them.
func TestStepSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Committed(processor.Commit{Pipeline: "iot", Partition: 1, Counts: map[string]int{
		"minute/emitted/window": 3, "minute/late": 2, "hot/emitted/alert": 1, "silent/forgotten": 4, "junk": 5,
	}})
	m.SetStepGauges("iot", 1, map[string]int64{"minute/open": 7, "other": 1})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"results", []string{"iot", "minute", "window"}, 3},
		{"results", []string{"iot", "hot", "alert"}, 1},
		{"late", []string{"iot", "minute"}, 2},
		{"forgotten", []string{"iot", "silent"}, 4},
		{"open", []string{"iot", "1", "minute"}, 7},
	} {
		var got float64
		switch c.name {
		case "results":
			got = testutil.ToFloat64(m.steps.results.WithLabelValues(c.labels...))
		case "late":
			got = testutil.ToFloat64(m.steps.late.WithLabelValues(c.labels...))
		case "forgotten":
			got = testutil.ToFloat64(m.steps.forgotten.WithLabelValues(c.labels...))
		case "open":
			got = testutil.ToFloat64(m.steps.open.WithLabelValues(c.labels...))
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.steps.open); n != 1 {
		t.Errorf("open series = %d, want 1 (a gauge not named <step>/open is not a step's)", n)
	}
}

// A group that holds a stream's trimming back has its series set; once it
// catches up (or another group holds it) its series go to 0.
func TestTrimmed(t *testing.T) {
	t.Parallel()
	m, _ := newTest(t)
	r := m.retention
	m.Trimmed(processor.TrimReport{Stream: "s", Removed: 7, Length: 100, HeldBy: "slow", Over: 40, Abandoned: true})
	m.Trimmed(processor.TrimReport{Stream: "s", Removed: 3, Length: 60, HeldBy: "slow", Over: 20})
	if got := testutil.ToFloat64(r.trimmed.WithLabelValues("s")); got != 10 {
		t.Errorf("trimmed = %v, want 10", got)
	}
	if got := testutil.ToFloat64(r.held.WithLabelValues("s", "slow")); got != 20 {
		t.Errorf("held back = %v, want 20", got)
	}
	if got := testutil.ToFloat64(r.abandoned.WithLabelValues("s", "slow")); got != 0 {
		t.Errorf("abandoned = %v, want 0 once its consumers read again", got)
	}
	m.Trimmed(processor.TrimReport{Stream: "s", Removed: 20, Length: 40, HeldBy: "other", Over: 1, Abandoned: true})
	m.Trimmed(processor.TrimReport{Stream: "s", Removed: 1, Length: 40})
	for _, g := range []string{"slow", "other"} {
		if got := testutil.ToFloat64(r.held.WithLabelValues("s", g)); got != 0 {
			t.Errorf("held back by %s = %v after release, want 0", g, got)
		}
		if got := testutil.ToFloat64(r.abandoned.WithLabelValues("s", g)); got != 0 {
			t.Errorf("abandoned %s = %v after release, want 0", g, got)
		}
	}
	if got := testutil.ToFloat64(r.length.WithLabelValues("s")); got != 40 {
		t.Errorf("length = %v, want 40", got)
	}
}
