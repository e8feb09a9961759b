package metrics

import (
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// engineReasons are every dead-letter reason the engine itself sets.
// Their series are created at 0 with the pipeline, so that rate() and
// alerts on them work before the first dead letter.
var engineReasons = []string{
	processor.ReasonInvalid,
	processor.ReasonNotJSON,
	processor.ReasonMissingKey,
	processor.ReasonTooLarge,
	processor.ReasonMaxAttempts,
	processor.ReasonMaxDeliveries,
	processor.ReasonInvalidEffect,
	processor.ReasonOutputFailed,
	processor.ReasonWrongPartition,
	processor.ReasonCommitFailed,
}

// Pipeline says what one pipeline can report, for Prepare to create its
// series at 0 before the first event: a counter that appears only with its
// first increment makes rate() and increase() miss that increment, and an
// alert on it silent until the second one.
type Pipeline struct {
	// Name names the pipeline.
	Name string
	// Partitions is its partition count; 0 counts as 1.
	Partitions int
	// Owned: the partitions have owners (ordering key), so the ownership
	// series (partition_owned, lease acquisitions and losses, rebalances,
	// members alive) are created too. With ordering none nobody owns a
	// partition, and a partition_owned of 0 would read as "no owner".
	Owned bool
	// Reasons are the dead-letter reasons its steps and decoder may give
	// besides the engine's own (processor.Reason*), which are always
	// created.
	Reasons []string
	// Steps are its analytics steps and the kinds of result each emits.
	Steps []Step
}

// Step is an analytics step of a Pipeline.
type Step struct {
	// Name is the step's name, its "step" label.
	Name string
	// Kinds are the result kinds it emits, its "kind" labels ("window",
	// "alert", …).
	Kinds []string
	// Late: the step counts late events.
	Late bool
	// Forgets: the step can forget keys (absence).
	Forgets bool
}

// Prepare creates every series of p at 0 that is not created already:
// per partition, the commit counts, the sampled gauges, timers and wrong
// partitions (and, for an owned pipeline, ownership, acquisitions and
// lost leases); per pipeline, the histograms, dead letters by reason,
// rebalances and members alive; per analytics step, its results by kind,
// late events, forgotten keys and open gauge on each partition. It sets
// nothing that is already set: calling it after series moved is harmless.
func (m *Metrics) Prepare(p Pipeline) {
	ps := m.pipeline(p.Name)
	for _, r := range p.Reasons {
		m.deadLetters(ps, r)
	}
	m.timerLateness.WithLabelValues(p.Name)
	if p.Owned {
		m.rebalances.WithLabelValues(p.Name)
		m.membersAlive.WithLabelValues(p.Name)
	}
	for n := range max(p.Partitions, 1) {
		m.partition(ps, n)
		part := strconv.Itoa(n)
		m.timersFired.WithLabelValues(p.Name, part)
		m.wrongPartition.WithLabelValues(p.Name, part)
		if p.Owned {
			m.owned.WithLabelValues(p.Name, part)
			m.leasesLost.WithLabelValues(p.Name, part)
			m.acquisitions.WithLabelValues(p.Name, part)
		}
		for _, s := range p.Steps {
			m.steps.open.WithLabelValues(p.Name, part, s.Name)
		}
	}
	for _, s := range p.Steps {
		for _, k := range s.Kinds {
			m.steps.results.WithLabelValues(p.Name, s.Name, k)
		}
		if s.Late {
			m.steps.late.WithLabelValues(p.Name, s.Name)
		}
		if s.Forgets {
			m.steps.forgotten.WithLabelValues(p.Name, s.Name)
		}
	}
}

// SetMembers sets eddy_processor_members_alive: the live workers of the
// pipeline's group, as sampled from its members set.
func (m *Metrics) SetMembers(pipeline string, n int) {
	m.membersAlive.WithLabelValues(pipeline).Set(float64(n))
}

// SetRedis sets eddy_redis_up from whether a sample could read Redis, and,
// when it could, eddy_redis_probe_seconds from how long its probe took.
func (m *Metrics) SetRedis(up bool, probe time.Duration) {
	if !up {
		m.redisUp.Set(0)
		return
	}
	m.redisUp.Set(1)
	m.redisProbe.Set(seconds(probe))
}
