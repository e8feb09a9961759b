package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

var eddyMetricName = regexp.MustCompile(`\beddy_[a-z0-9_]*[a-z0-9]`)

// deployQueries returns the PromQL expressions of the Grafana dashboards
// (deploy/grafana/dashboards/*.json: every "expr", and every variable's
// "query" and "definition") and of the alert rules
// (deploy/prometheus/rules.yml), each with where it is.
func deployQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	dashboards, err := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range dashboards {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var walk func(v any, path string)
		walk = func(v any, path string) {
			switch v := v.(type) {
			case map[string]any:
				for k, c := range v {
					if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") {
						out[file+": "+path+"."+k] = s
					}
					walk(c, path+"."+k)
				}
			case []any:
				for i, c := range v {
					walk(c, path+"["+strconv.Itoa(i)+"]")
				}
			}
		}
		walk(doc, "")
	}
	const rulesFile = "../../deploy/prometheus/rules.yml"
	b, err := os.ReadFile(rulesFile)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[rulesFile+": "+r.Alert+r.Record] = r.Expr
		}
	}
	return out
}

// Issue 12: every eddy_* series the dashboard and the alert rules query is
// exported by a freshly started eddy (the demo, with ingest, before any
// event: its simulators taken out), so that no panel and no rule waits for
// a first incident. A histogram's _bucket, _count and _sum count as its.
func TestDashboardAndRuleMetricsAreExported(t *testing.T) {
	queries := deployQueries(t)
	if len(queries) == 0 {
		t.Skip("no dashboard or rules under deploy/")
	}
	want := map[string][]string{} // metric → where
	for where, q := range queries {
		for _, name := range eddyMetricName.FindAllString(q, -1) {
			want[name] = append(want[name], where)
		}
	}
	if len(want) < 10 {
		t.Fatalf("found %d eddy_* names in %d queries, want the dashboard's and rules' (at least 10): %v", len(want), len(queries), want)
	}
	addr := freeAddr(t)
	cfg, _ := demoConfig(t, false, "\nhttp:\n  addr: "+addr+"\n")
	startEddy(t, "run", "-c", cfg)
	var page string
	waitFor(t, 20*time.Second, "the first sample (eddy_redis_up)", func() bool {
		page = scrape(addr)
		return regexp.MustCompile(`(?m)^eddy_redis_up 1$`).MatchString(page)
	})
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range want {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[{ ]`).MatchString(page) {
			t.Errorf("%s is not exported by a fresh eddy; used by %s", name, strings.Join(want[name], "; "))
		}
	}
}

// Done-when 5 of issue 12: on a fresh start, before any event, every
// partition's lost leases (and its acquisitions, 1 by then), and every
// pipeline's dead letters for every reason, exist at 0; so do each
// analytics step's results of each kind it emits and its late events.
func TestSeriesExistAtZeroOnAFreshStart(t *testing.T) {
	addr := freeAddr(t)
	cfg, _ := demoConfig(t, false, "\nhttp:\n  addr: "+addr+"\n")
	f, err := pipelines.Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	startEddy(t, "run", "-c", cfg)
	var page string
	waitFor(t, 20*time.Second, "the metrics endpoint", func() bool {
		page = scrape(addr)
		return strings.Contains(page, "eddy_processor_leases_lost_total")
	})
	reasons := []string{
		processor.ReasonInvalid, processor.ReasonNotJSON, processor.ReasonMissingKey, processor.ReasonTooLarge,
		processor.ReasonMaxAttempts, processor.ReasonMaxDeliveries, processor.ReasonInvalidEffect,
		processor.ReasonOutputFailed, processor.ReasonWrongPartition, processor.ReasonCommitFailed,
		pipelines.ReasonMissingID, pipelines.ReasonSchema, pipelines.ReasonLate, pipelines.ReasonFaultInjected,
	}
	var want []string
	steps, forgets := 0, 0
	for _, p := range f.Pipelines {
		for _, r := range reasons {
			want = append(want, `eddy_processor_dead_letters_total{pipeline="`+p.Name+`",reason="`+r+`"} 0`)
		}
		for n := range max(p.Input.Partitions, 1) {
			part := `{partition="` + strconv.Itoa(n) + `",pipeline="` + p.Name + `"} `
			want = append(want, "eddy_processor_leases_lost_total"+part+"0", "eddy_processor_retries_total"+part+"0",
				"eddy_processor_timers_fired_total"+part+"0",
				"eddy_processor_lease_acquisitions_total"+part) // the worker took it at once
		}
		want = append(want, `eddy_processor_rebalances_total{pipeline="`+p.Name+`"} `)
		for _, s := range metricsPipeline(p).Steps {
			steps++
			if len(s.Kinds) == 0 {
				t.Errorf("pipeline %s step %s: no result kinds known", p.Name, s.Name)
			}
			for _, k := range s.Kinds {
				want = append(want, `eddy_step_results_total{kind="`+k+`",pipeline="`+p.Name+`",step="`+s.Name+`"} 0`)
			}
			want = append(want, `eddy_step_late_events_total{pipeline="`+p.Name+`",step="`+s.Name+`"} 0`)
			if s.Forgets {
				forgets++
				want = append(want, `eddy_step_forgotten_total{pipeline="`+p.Name+`",step="`+s.Name+`"} 0`)
			}
		}
	}
	if steps == 0 || forgets == 0 {
		t.Fatalf("the demo has %d analytics steps, %d absence steps: the test checks their series", steps, forgets)
	}
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("fresh start: no %s", w)
		}
	}
}
