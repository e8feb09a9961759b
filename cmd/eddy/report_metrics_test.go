package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// The sampler sets members alive for a pipeline with owners (none for one
// without), and eddy_redis_up: 1 while Redis answers, 0 once it does not.
func TestSampleHealth(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	f, err := pipelines.Parse("h.yaml", []byte(`
pipelines:
  - name: keyed
    input: {stream: a}
    key: k
  - name: free
    input: {stream: b}
    key: k
    ordering: none
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	r := &reporter{m: metrics.New(reg)}
	for _, p := range f.Pipelines {
		po := p.Options()
		po.Consumer = "w1"
		proc, err := processor.New(rdb, po)
		if err != nil {
			t.Fatal(err)
		}
		r.procs = append(r.procs, newLiveProc(proc))
	}
	// Two live members of keyed's group, one lapsed.
	now, _ := rdb.Time(t.Context()).Result()
	key := "{a}:eddy:members:keyed"
	for _, m := range []redis.Z{{Score: float64(now.Add(time.Minute).UnixMilli()), Member: "w1"},
		{Score: float64(now.Add(time.Minute).UnixMilli()), Member: "w2"}, {Score: float64(now.Add(-time.Minute).UnixMilli()), Member: "gone"}} {
		rdb.ZAdd(t.Context(), key, m)
	}
	if ms, err := r.procs[0].Members(t.Context()); err != nil || len(ms) != 2 {
		t.Fatalf("Members = %v, %v; want w1 and w2 (is %s the members key?)", ms, err, key)
	}

	r.sampleHealth(t.Context())
	const want = `
# HELP eddy_processor_members_alive Live workers of the pipeline's consumer group (its members set, ordering key), as last sampled.
# TYPE eddy_processor_members_alive gauge
eddy_processor_members_alive{pipeline="keyed"} 2
# HELP eddy_redis_up 1 if the last sample read Redis, 0 if every read of it failed.
# TYPE eddy_redis_up gauge
eddy_redis_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eddy_processor_members_alive", "eddy_redis_up"); err != nil {
		t.Error(err)
	}
	if got := gathered(t, reg, "eddy_redis_probe_seconds"); got <= 0 {
		t.Errorf("eddy_redis_probe_seconds = %v, want > 0", got)
	}

	// A ctx done (eddy stopping) changes nothing: Redis is not down.
	done, stop := context.WithCancel(t.Context())
	stop()
	r.sampleHealth(done)
	if got := gathered(t, reg, "eddy_redis_up"); got != 1 {
		t.Errorf("eddy_redis_up after a sample with a done ctx = %v, want it unchanged (1)", got)
	}

	mr.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r.sampleHealth(ctx)
	if got := gathered(t, reg, "eddy_redis_up"); got != 0 {
		t.Errorf("eddy_redis_up with Redis gone = %v, want 0", got)
	}
}

// gathered returns the value of the single series of gauge name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0
}

// Every analytics step of the shipped configs gets its result kinds, so
// that its series exist at 0: a step type missing from stepResults would
// leave every step of its pipeline without them.
func TestMetricsPipelineKnowsEveryAnalyticsStep(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, file := range files {
		if strings.HasSuffix(file, ".test.yaml") {
			continue
		}
		f, err := pipelines.Load(file, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range f.Pipelines {
			for _, s := range metricsPipeline(p).Steps {
				steps++
				if len(s.Kinds) == 0 {
					t.Errorf("%s: pipeline %s, step %s: no result kinds", file, p.Name, s.Name)
				}
			}
		}
	}
	if steps == 0 {
		t.Fatal("no analytics step in configs/: the test checks nothing")
	}
}
