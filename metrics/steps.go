package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/processor"
)

// Series of the analytics steps (window, session, funnel, threshold,
// absence). Their counts come with each commit (processor.Commit.Counts,
// named "<step>/emitted/<kind>", "<step>/late" and "<step>/forgotten" as
// package pipelines records them), so they count what was committed,
// once; their levels
// (open windows, sessions, funnels, active alerts) are partition gauges
// kept in Redis by the commit and sampled like the lag.
type stepSeries struct {
	results   *prometheus.CounterVec // pipeline, step, kind
	late      *prometheus.CounterVec // pipeline, step
	forgotten *prometheus.CounterVec // pipeline, step
	open      *prometheus.GaugeVec   // pipeline, partition, step
}

func newStepSeries(reg prometheus.Registerer) stepSeries {
	return stepSeries{
		results: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "step", Name: "results_total",
			Help: "Results an analytics step emitted and committed, by kind (window, update, session, funnel, alert, resolve).",
		}, []string{labelPipeline, labelStep, labelKind})),
		late: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "step", Name: "late_events_total",
			Help: "Events that came after the window, session or funnel they belong to had closed (dropped, dead-lettered or sent to the late stream).",
		}, []string{labelPipeline, labelStep})),
		forgotten: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "step", Name: "forgotten_total",
			Help: "Keys an absence step forgot after forget_after of silence: their state was deleted, their alert will not be resolved.",
		}, []string{labelPipeline, labelStep})),
		open: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "step", Name: "open",
			Help: "Windows, sessions or funnels open, or alerts active, of an analytics step on a partition, as last sampled from Redis (every worker samples every partition: aggregate with max by partition).",
		}, []string{labelPipeline, labelPartition, labelStep})),
	}
}

// stepCounts adds a commit's step counts to the series.
func (s stepSeries) stepCounts(c processor.Commit) {
	for name, n := range c.Counts {
		step, rest, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		what, kind, _ := strings.Cut(rest, "/")
		switch what {
		case "emitted":
			s.results.WithLabelValues(c.Pipeline, step, kind).Add(float64(n))
		case "late":
			s.late.WithLabelValues(c.Pipeline, step).Add(float64(n))
		case "forgotten":
			s.forgotten.WithLabelValues(c.Pipeline, step).Add(float64(n))
		}
	}
}

// SetStepGauges sets the sampled levels of one partition's analytics steps
// from processor.PartitionStats.Gauges (named "<step>/open").
func (m *Metrics) SetStepGauges(pipeline string, partition int, gauges map[string]int64) {
	for name, v := range gauges {
		if step, ok := strings.CutSuffix(name, "/open"); ok {
			m.steps.open.WithLabelValues(pipeline, strconv.Itoa(partition), step).Set(float64(v))
		}
	}
}
