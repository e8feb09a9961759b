package main

import (
	"context"
	"time"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// pipelineReasons are the dead-letter reasons package pipelines gives
// besides the engine's own, whose series metrics.Prepare creates at 0.
var pipelineReasons = []string{
	pipelines.ReasonMissingID,
	pipelines.ReasonSchema,
	pipelines.ReasonLate,
	pipelines.ReasonFaultInjected,
}

// stepResults are the result kinds each analytics step type emits
// (pipelines.Kind*), whether it counts late events and whether it can
// forget keys.
var stepResults = map[string]struct {
	kinds         []string
	late, forgets bool
}{
	"window":    {[]string{pipelines.KindWindow, pipelines.KindUpdate}, true, false},
	"session":   {[]string{pipelines.KindSession}, true, false},
	"funnel":    {[]string{pipelines.KindFunnel}, true, false},
	"threshold": {[]string{pipelines.KindAlert, pipelines.KindResolve}, true, false},
	"absence":   {[]string{pipelines.KindAlert, pipelines.KindResolve}, true, true},
	"saga":      {[]string{pipelines.KindCommand, pipelines.KindSaga}, false, false},
}

// prepareMetrics creates the series of every pipeline of ps at 0 (see
// metrics.Prepare), so that rate() and alerts work from the start.
func prepareMetrics(m *metrics.Metrics, ps []*pipelines.Pipeline) {
	for _, p := range ps {
		m.Prepare(metricsPipeline(p))
	}
}

// metricsPipeline describes p for metrics.Prepare. The analytics steps'
// types come from the configured steps of those types, in order, matched
// to AnalyticsSteps' names; a step of an analytics type this table does
// not know makes the match unsure, and then only the steps' open gauges
// are created.
func metricsPipeline(p *pipelines.Pipeline) metrics.Pipeline {
	mp := metrics.Pipeline{Name: p.Name, Partitions: p.Input.Partitions, Reasons: pipelineReasons,
		Owned: p.Options().Ordering != processor.OrderingNone}
	names := p.AnalyticsSteps()
	var types []string
	for _, sc := range p.Steps {
		if _, ok := stepResults[sc.Type]; ok {
			types = append(types, sc.Type)
		}
	}
	for i, name := range names {
		s := metrics.Step{Name: name}
		if len(types) == len(names) {
			r := stepResults[types[i]]
			s.Kinds, s.Late, s.Forgets = r.kinds, r.late, r.forgets
		}
		mp.Steps = append(mp.Steps, s)
	}
	return mp
}

// sampleHealth sets the members alive of each pipeline with owners and
// whether Redis answered (eddy_redis_up) with the time of its first answer.
// A ctx done (eddy stopping) sets nothing.
func (r *reporter) sampleHealth(ctx context.Context) {
	up, first := false, time.Duration(-1)
	for _, p := range r.procs {
		start := time.Now()
		members, err := p.Members(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			continue
		}
		if first < 0 {
			first = time.Since(start)
		}
		up = true
		if o := p.Options(); o.Ordering != processor.OrderingNone {
			r.m.SetMembers(o.Pipeline, len(members))
		}
	}
	if len(r.procs) > 0 {
		r.m.SetRedis(up, first)
	}
}
