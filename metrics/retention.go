package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/processor"
)

// Series of retention (processor.Retention): what each trim of a stream
// under a policy did, and which consumer group holds it back.
type retentionSeries struct {
	trimmed   *prometheus.CounterVec // stream
	length    *prometheus.GaugeVec   // stream
	oldest    *prometheus.GaugeVec   // stream
	held      *prometheus.GaugeVec   // stream, group
	abandoned *prometheus.GaugeVec   // stream, group

	mu     sync.Mutex
	holder map[string]string // stream -> group last reported holding it back
}

func newRetentionSeries(reg prometheus.Registerer) *retentionSeries {
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "retention", Name: name, Help: help,
		}, labels))
	}
	return &retentionSeries{
		trimmed: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "retention", Name: "trimmed_total",
			Help: "Entries trimmed from a stream under retention (never one a consumer group had not acknowledged).",
		}, []string{labelStream})),
		length: gauge("length",
			"Length of a stream under retention after its last trim.", labelStream),
		oldest: gauge("oldest_age_seconds",
			"Age of the oldest entry of a stream under retention after its last trim; 0 when empty.", labelStream),
		held: gauge("held_back_entries",
			"Entries past a stream's retention kept because this consumer group has not acknowledged them (for an age cap, counted up to 2,000); 0 once the group caught up.",
			labelStream, labelGroup),
		abandoned: gauge("abandoned",
			"1 while the consumer group holding a stream's trimming back is abandoned: none of its consumers has read or acked for the policy's abandoned_after (with no consumer left, the last entry it read is that old).",
			labelStream, labelGroup),
		holder: map[string]string{},
	}
}

// Trimmed records one trim of a stream under retention.
func (m *Metrics) Trimmed(r processor.TrimReport) {
	s := m.retention
	s.trimmed.WithLabelValues(r.Stream).Add(float64(r.Removed))
	s.length.WithLabelValues(r.Stream).Set(float64(r.Length))
	age := 0.0
	if !r.Oldest.IsZero() {
		age = max(0, time.Since(r.Oldest).Seconds())
	}
	s.oldest.WithLabelValues(r.Stream).Set(age)

	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.holder[r.Stream]; ok && last != r.HeldBy {
		// The holder changed or caught up: its series says so.
		s.held.WithLabelValues(r.Stream, last).Set(0)
		s.abandoned.WithLabelValues(r.Stream, last).Set(0)
		delete(s.holder, r.Stream)
	}
	if r.HeldBy == "" {
		return
	}
	s.holder[r.Stream] = r.HeldBy
	s.held.WithLabelValues(r.Stream, r.HeldBy).Set(float64(r.Over))
	ab := 0.0
	if r.Abandoned {
		ab = 1
	}
	s.abandoned.WithLabelValues(r.Stream, r.HeldBy).Set(ab)
}
