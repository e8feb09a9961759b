package metrics

import (
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

var (
	_ processor.Observer          = (*Metrics)(nil)
	_ processor.OwnershipObserver = (*Metrics)(nil)
)

// Owned sets eddy_processor_partition_owned for a partition this worker
// took (true) or gave up (false), and counts the change as a rebalance
// (and a take as a lease acquisition).
func (m *Metrics) Owned(pipeline string, partition int, owned bool) {
	part := strconv.Itoa(partition)
	v := 0.0
	if owned {
		v = 1
		m.acquisitions.WithLabelValues(pipeline, part).Inc()
	}
	m.owned.WithLabelValues(pipeline, part).Set(v)
	m.rebalances.WithLabelValues(pipeline).Inc()
}

// LeaseLost counts a lease this worker found taken over.
func (m *Metrics) LeaseLost(pipeline string, partition int) {
	m.leasesLost.WithLabelValues(pipeline, strconv.Itoa(partition)).Inc()
}

// Committed counts one commit of a partition: its processed, duplicate,
// stale and dead-lettered entries, its duration, and each processed entry's
// end-to-end latency. A dead-letter reason of "" counts as "invalid".
func (m *Metrics) Committed(c processor.Commit) {
	p := m.pipeline(c.Pipeline)
	s := m.partition(p, c.Partition)
	s.commits.Inc()
	add(s.processed, c.Processed)
	add(s.duplicates, c.Duplicates)
	add(s.stale, c.Stale)
	for reason, n := range c.DeadLetters {
		if reason == "" {
			reason = processor.ReasonInvalid
		}
		add(m.deadLetters(p, reason), n)
	}
	if c.TimersFired > 0 {
		m.timersFired.WithLabelValues(c.Pipeline, strconv.Itoa(c.Partition)).Add(float64(c.TimersFired))
	}
	for _, d := range c.TimerLateness {
		m.timerLateness.WithLabelValues(c.Pipeline).Observe(seconds(d))
	}
	if c.WrongPartition > 0 {
		m.wrongPartition.WithLabelValues(c.Pipeline, strconv.Itoa(c.Partition)).Add(float64(c.WrongPartition))
	}
	m.steps.stepCounts(c)
	p.commitDuration.Observe(seconds(c.Duration))
	for _, d := range c.Latencies {
		p.latency.Observe(seconds(d))
	}
}

// Retried counts one transient failure that will be tried again. The error
// is not a label: its text is unbounded.
func (m *Metrics) Retried(pipeline string, partition int, _ error) {
	m.partition(m.pipeline(pipeline), partition).retries.Inc()
}

// Handled observes how long one handler call took.
func (m *Metrics) Handled(pipeline string, d time.Duration) {
	m.pipeline(pipeline).handleDuration.Observe(seconds(d))
}
