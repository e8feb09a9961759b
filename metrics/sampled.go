package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SetPartitionStats sets the sampled gauges of one partition: lag (entries
// not yet delivered to the group), pending (delivered, not acked) and the age
// of the oldest pending entry. A negative lag means Redis could not tell it
// (XINFO GROUPS reports no lag after some deletions); the lag gauge then keeps
// its last value.
func (m *Metrics) SetPartitionStats(pipeline string, partition int, lag, pending int64, oldestPendingAge time.Duration) {
	s := m.partition(m.pipeline(pipeline), partition)
	if lag >= 0 {
		s.lag.Set(float64(lag))
	}
	s.pending.Set(float64(pending))
	s.oldestPendingAge.Set(seconds(oldestPendingAge))
}

// Produced counts n entries added to the pipeline's input stream by a
// producer or simulator.
func (m *Metrics) Produced(pipeline string, n int) {
	c, ok := m.producedByPl.load(pipeline)
	if !ok {
		c = m.producedByPl.loadOrCreate(pipeline, func(pipeline string) prometheus.Counter {
			return m.produced.WithLabelValues(pipeline)
		})
	}
	add(c, n)
}
