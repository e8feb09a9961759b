package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Label names of the ingest series.
const (
	labelSource = "source"
	labelStatus = "status"
)

// Ingest holds the series of the ingest sources (package ingest): for
// each source ("http", "mqtt:<name>") and pipeline,
//
//	eddy_ingest_accepted_total{source,pipeline}            events appended
//	eddy_ingest_rejected_total{source,pipeline,reason}     events refused (or forwarded to be dead-lettered)
//	eddy_ingest_requests_total{source,pipeline,status}     requests (HTTP status) or messages (MQTT outcome)
//	eddy_ingest_received_bytes_total{source,pipeline}      bytes received, as sent (compressed)
//	eddy_ingest_request_duration_seconds{source,pipeline}  histogram: arrival to answer
//	eddy_ingest_publish_duration_seconds{source,pipeline}  histogram: the append to Redis
//	eddy_ingest_in_flight_requests{source,pipeline}        gauge: requests or messages being handled
//
// A request that names no pipeline of the file (404) or is refused before
// its pipeline is known counts under pipeline "". Source creates every
// series of a source at zero, so that rate() and alerts work before the
// first event. Create it with NewIngest; its methods are safe for
// concurrent use.
type Ingest struct {
	accepted        *prometheus.CounterVec   // source, pipeline
	rejected        *prometheus.CounterVec   // source, pipeline, reason
	requests        *prometheus.CounterVec   // source, pipeline, status
	bytes           *prometheus.CounterVec   // source, pipeline
	requestDuration *prometheus.HistogramVec // source, pipeline
	publishDuration *prometheus.HistogramVec // source, pipeline
	inFlight        *prometheus.GaugeVec     // source, pipeline
}

// NewIngest creates the ingest series and registers them on reg (nil:
// unregistered). Like New, it may be called twice with one registry.
func NewIngest(reg prometheus.Registerer) *Ingest {
	const sub = "ingest"
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: name, Help: help,
		}, labels))
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: name, Help: help, Buckets: durationBuckets,
		}, []string{labelSource, labelPipeline}))
	}
	return &Ingest{
		accepted: counter("accepted_total",
			"Events an ingest source appended to a pipeline's input.",
			labelSource, labelPipeline),
		rejected: counter("rejected_total",
			"Events an ingest source refused (HTTP) or forwarded to be dead-lettered (MQTT), by reason.",
			labelSource, labelPipeline, labelReason),
		requests: counter("requests_total",
			"Requests (HTTP, by status code) or messages (MQTT, by outcome) an ingest source answered.",
			labelSource, labelPipeline, labelStatus),
		bytes: counter("received_bytes_total",
			"Bytes of request bodies or message payloads received, as sent (before decompression).",
			labelSource, labelPipeline),
		requestDuration: histogram("request_duration_seconds",
			"Time from a request's or message's arrival to its answer."),
		publishDuration: histogram("publish_duration_seconds",
			"Time one append of a request's or message's events to Redis took."),
		inFlight: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "in_flight_requests",
			Help: "Requests or messages an ingest source is handling now.",
		}, []string{labelSource, labelPipeline})),
	}
}

// collectors returns every collector of m, for tests.
func (m *Ingest) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.accepted, m.rejected, m.requests, m.bytes,
		m.requestDuration, m.publishDuration, m.inFlight}
}

// IngestSource is the series of one source. A nil *IngestSource records
// nothing.
type IngestSource struct {
	m      *Ingest
	source string
}

// Source returns the series of the named source and creates them at zero
// for each of pipelines, each rejection reason and each status; the
// request series by status also for pipeline "".
func (m *Ingest) Source(source string, pipelines, reasons, statuses []string) *IngestSource {
	for _, p := range pipelines {
		m.accepted.WithLabelValues(source, p)
		m.bytes.WithLabelValues(source, p)
		m.requestDuration.WithLabelValues(source, p)
		m.publishDuration.WithLabelValues(source, p)
		m.inFlight.WithLabelValues(source, p)
		for _, r := range reasons {
			m.rejected.WithLabelValues(source, p, r)
		}
	}
	for _, p := range append([]string{""}, pipelines...) {
		for _, st := range statuses {
			m.requests.WithLabelValues(source, p, st)
		}
	}
	return &IngestSource{m: m, source: source}
}

// Accepted counts n events appended to pipeline.
func (s *IngestSource) Accepted(pipeline string, n int) {
	if s != nil && n > 0 {
		s.m.accepted.WithLabelValues(s.source, pipeline).Add(float64(n))
	}
}

// Rejected counts n events of pipeline refused for reason.
func (s *IngestSource) Rejected(pipeline, reason string, n int) {
	if s != nil && n > 0 {
		s.m.rejected.WithLabelValues(s.source, pipeline, reason).Add(float64(n))
	}
}

// Answered counts one request or message answered with status, having
// received size bytes, took long after its arrival.
func (s *IngestSource) Answered(pipeline, status string, size int64, took time.Duration) {
	if s == nil {
		return
	}
	s.m.requests.WithLabelValues(s.source, pipeline, status).Inc()
	if size > 0 {
		s.m.bytes.WithLabelValues(s.source, pipeline).Add(float64(size))
	}
	if pipeline != "" {
		s.m.requestDuration.WithLabelValues(s.source, pipeline).Observe(took.Seconds())
	}
}

// Published records one append to Redis that took d.
func (s *IngestSource) Published(pipeline string, d time.Duration) {
	if s != nil {
		s.m.publishDuration.WithLabelValues(s.source, pipeline).Observe(d.Seconds())
	}
}

// InFlight adds delta (+1 on arrival, -1 once answered) to the requests or
// messages of pipeline being handled.
func (s *IngestSource) InFlight(pipeline string, delta int) {
	if s != nil {
		s.m.inFlight.WithLabelValues(s.source, pipeline).Add(float64(delta))
	}
}
