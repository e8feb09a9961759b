package metrics

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "eddy"

// Label names.
const (
	labelPipeline  = "pipeline"
	labelPartition = "partition"
	labelReason    = "reason"
	labelStep      = "step"
	labelKind      = "kind"
	labelVersion   = "version"
	labelStream    = "stream"
	labelGroup     = "group"
)

// durationBuckets (seconds) cover an engine that commits in well under a
// millisecond on a local Redis up to one that is seconds behind: 100µs to
// 10s in 1-2.5-5 steps.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// Metrics holds every Eddy collector. Create it with New; its methods are
// safe for concurrent use and do not block.
type Metrics struct {
	processed  *prometheus.CounterVec // pipeline, partition
	duplicates *prometheus.CounterVec // pipeline, partition
	stale      *prometheus.CounterVec // pipeline, partition
	retries    *prometheus.CounterVec // pipeline, partition
	commits    *prometheus.CounterVec // pipeline, partition
	deadLetter *prometheus.CounterVec // pipeline, reason

	commitDuration *prometheus.HistogramVec // pipeline
	handleDuration *prometheus.HistogramVec // pipeline
	latency        *prometheus.HistogramVec // pipeline

	lag              *prometheus.GaugeVec // pipeline, partition
	pending          *prometheus.GaugeVec // pipeline, partition
	oldestPendingAge *prometheus.GaugeVec // pipeline, partition

	owned        *prometheus.GaugeVec   // pipeline, partition: 1 while this worker owns it
	leasesLost   *prometheus.CounterVec // pipeline, partition
	acquisitions *prometheus.CounterVec // pipeline, partition
	rebalances   *prometheus.CounterVec // pipeline
	membersAlive *prometheus.GaugeVec   // pipeline

	redisUp    prometheus.Gauge
	redisProbe prometheus.Gauge

	timersFired    *prometheus.CounterVec   // pipeline, partition
	timerLateness  *prometheus.HistogramVec // pipeline
	wrongPartition *prometheus.CounterVec   // pipeline, partition

	produced  *prometheus.CounterVec // pipeline
	buildInfo *prometheus.GaugeVec   // version

	steps     stepSeries
	retention *retentionSeries

	pipelines    cowMap[string, *pipelineSeries]
	producedByPl cowMap[string, prometheus.Counter]
}

// New creates every collector and registers it on reg; a nil reg leaves
// them unregistered (for benchmarks). eddy_build_info is set from the
// binary's module version; cmd/eddy may override it with SetBuildInfo.
//
// Calling New twice with the same registry is allowed: the second Metrics
// shares the collectors registered by the first. New panics if reg already
// holds a different collector under one of these names, which is a wiring
// mistake, not a runtime condition.
func New(reg prometheus.Registerer) *Metrics {
	counter := func(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
		}, labels))
	}
	gauge := func(subsystem, name, help string, labels ...string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
		}, labels))
	}
	histogram := func(subsystem, name, help string, labels ...string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
			Buckets: durationBuckets,
		}, labels))
	}
	const proc = "processor"
	m := &Metrics{
		processed: counter(proc, "processed_total",
			"Entries whose handler succeeded and whose effects were committed.",
			labelPipeline, labelPartition),
		duplicates: counter(proc, "duplicates_total",
			"Entries acked without handling because their dedupe id was already seen.",
			labelPipeline, labelPartition),
		stale: counter(proc, "stale_total",
			"Entries that were already acked when their commit ran; their effects were not written again.",
			labelPipeline, labelPartition),
		retries: counter(proc, "retries_total",
			"Transient handler failures that were scheduled for another attempt.",
			labelPipeline, labelPartition),
		commits: counter(proc, "commits_total",
			"Commits (one atomic script per batch of a partition).",
			labelPipeline, labelPartition),
		deadLetter: counter(proc, "dead_letters_total",
			"Entries moved to the dead-letter stream, by reason.",
			labelPipeline, labelReason),
		commitDuration: histogram(proc, "commit_duration_seconds",
			"Time one commit took.",
			labelPipeline),
		handleDuration: histogram(proc, "handle_duration_seconds",
			"Time one handler call took.",
			labelPipeline),
		latency: histogram(proc, "end_to_end_latency_seconds",
			"Time from an entry's stream id (when it was added) to the commit that processed it.",
			labelPipeline),
		lag: gauge(proc, "lag_entries",
			"Entries in the partition stream not yet delivered to the consumer group, as last sampled.",
			labelPipeline, labelPartition),
		pending: gauge(proc, "pending_entries",
			"Entries delivered to the consumer group but not yet acked, as last sampled.",
			labelPipeline, labelPartition),
		oldestPendingAge: gauge(proc, "oldest_pending_age_seconds",
			"Age of the oldest pending entry of the partition, as last sampled; 0 when none is pending.",
			labelPipeline, labelPartition),
		owned: gauge(proc, "partition_owned",
			"1 while this worker holds the partition's lease (ordering key), else 0.",
			labelPipeline, labelPartition),
		leasesLost: counter(proc, "leases_lost_total",
			"Partition leases this worker found taken over (after a pause, a cut-off or a slow renewal); its work on them was fenced.",
			labelPipeline, labelPartition),
		acquisitions: counter(proc, "lease_acquisitions_total",
			"Partition leases this worker acquired (ordering key).",
			labelPipeline, labelPartition),
		rebalances: counter(proc, "rebalances_total",
			"Changes of the partitions this worker owns: each partition taken or given up (ordering key).",
			labelPipeline),
		membersAlive: gauge(proc, "members_alive",
			"Live workers of the pipeline's consumer group (its members set, ordering key), as last sampled.",
			labelPipeline),
		redisUp: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "redis", Name: "up",
			Help: "1 if the last sample read Redis, 0 if every read of it failed.",
		})),
		redisProbe: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "redis", Name: "probe_seconds",
			Help: "How long the last sample's probe of Redis took (reading a pipeline's members: two round trips); kept when it failed.",
		})),
		timersFired: counter(proc, "timers_fired_total",
			"Timer firings committed (each timer fires once).",
			labelPipeline, labelPartition),
		timerLateness: histogram(proc, "timer_lateness_seconds",
			"Time from when a processing-time timer was due to the commit of its firing.",
			labelPipeline),
		wrongPartition: counter(proc, "wrong_partition_total",
			"Entries whose key routes to another partition than the one they were read from (a producer that partitions differently).",
			labelPipeline, labelPartition),
		produced: counter("ingest", "produced_total",
			"Entries added to a pipeline's input stream by a producer or simulator.",
			labelPipeline),
		buildInfo: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; the version label names the running build.",
		}, []string{labelVersion})),
	}
	m.steps = newStepSeries(reg)
	m.retention = newRetentionSeries(reg)
	m.SetBuildInfo(moduleVersion())
	return m
}

// SetBuildInfo sets eddy_build_info{version} to 1, replacing any earlier version.
func (m *Metrics) SetBuildInfo(version string) {
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version).Set(1)
}

// collectors returns every collector of m, for tests.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.processed, m.duplicates, m.stale, m.retries, m.commits, m.deadLetter,
		m.commitDuration, m.handleDuration, m.latency,
		m.lag, m.pending, m.oldestPendingAge,
		m.timersFired, m.timerLateness, m.wrongPartition,
		m.owned, m.leasesLost, m.acquisitions, m.rebalances, m.membersAlive,
		m.redisUp, m.redisProbe,
		m.produced, m.buildInfo,
		m.steps.results, m.steps.late, m.steps.open,
		m.retention.trimmed, m.retention.length, m.retention.oldest, m.retention.held, m.retention.abandoned,
	}
}

// register registers c on reg and returns it, or the collector already
// registered under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("metrics: register collector: %v", err))
}

// moduleVersion is the main module's version as recorded by the go tool,
// "devel" for a build from a work tree, "unknown" without build info.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}
