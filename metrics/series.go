package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// pipelineSeries caches the children of one pipeline's series.
type pipelineSeries struct {
	name           string
	commitDuration prometheus.Observer
	handleDuration prometheus.Observer
	latency        prometheus.Observer

	deadLetters cowMap[string, prometheus.Counter] // by reason
	partitions  cowMap[int, *partitionSeries]
}

// partitionSeries caches the children of one partition's series.
type partitionSeries struct {
	processed        prometheus.Counter
	duplicates       prometheus.Counter
	stale            prometheus.Counter
	retries          prometheus.Counter
	commits          prometheus.Counter
	lag              prometheus.Gauge
	pending          prometheus.Gauge
	oldestPendingAge prometheus.Gauge
}

// pipeline returns the series of the named pipeline, creating them on first use.
func (m *Metrics) pipeline(name string) *pipelineSeries {
	if p, ok := m.pipelines.load(name); ok {
		return p
	}
	return m.pipelines.loadOrCreate(name, m.newPipelineSeries)
}

func (m *Metrics) newPipelineSeries(name string) *pipelineSeries {
	p := &pipelineSeries{
		name:           name,
		commitDuration: m.commitDuration.WithLabelValues(name),
		handleDuration: m.handleDuration.WithLabelValues(name),
		latency:        m.latency.WithLabelValues(name),
	}
	for _, r := range engineReasons {
		m.deadLetters(p, r)
	}
	return p
}

// partition returns the series of partition n of pipeline p.
func (m *Metrics) partition(p *pipelineSeries, n int) *partitionSeries {
	if s, ok := p.partitions.load(n); ok {
		return s
	}
	return p.partitions.loadOrCreate(n, func(n int) *partitionSeries {
		l := []string{p.name, strconv.Itoa(n)}
		return &partitionSeries{
			processed:        m.processed.WithLabelValues(l...),
			duplicates:       m.duplicates.WithLabelValues(l...),
			stale:            m.stale.WithLabelValues(l...),
			retries:          m.retries.WithLabelValues(l...),
			commits:          m.commits.WithLabelValues(l...),
			lag:              m.lag.WithLabelValues(l...),
			pending:          m.pending.WithLabelValues(l...),
			oldestPendingAge: m.oldestPendingAge.WithLabelValues(l...),
		}
	})
}

// deadLetters returns the dead-letter counter of pipeline p for reason.
func (m *Metrics) deadLetters(p *pipelineSeries, reason string) prometheus.Counter {
	if c, ok := p.deadLetters.load(reason); ok {
		return c
	}
	return p.deadLetters.loadOrCreate(reason, func(reason string) prometheus.Counter {
		return m.deadLetter.WithLabelValues(p.name, reason)
	})
}

// seconds converts d for an observation; a negative duration (clock skew
// between the Redis host and this one) counts as 0.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

// add adds n to c; counters cannot go down, so n <= 0 is ignored.
func add(c prometheus.Counter, n int) {
	if n > 0 {
		c.Add(float64(n))
	}
}
