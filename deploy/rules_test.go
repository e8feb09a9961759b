package deploy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/internal/promtest"
)

// rulesFile is what the tests read of deploy/prometheus/rules.yml.
type rulesFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alerts are the names of the alerts of rules.yml, with their runbook URLs.
func alerts(t testing.TB) map[string]string {
	t.Helper()
	var f rulesFile
	readYAML(t, promRules, &f)
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out[r.Alert] = r.Annotations["runbook_url"]
			}
		}
	}
	return out
}

// promtool accepts the scrape config and the rules, and the rules' unit
// tests pass; each alert has a case where it fires and one where it stays
// silent, and a runbook section in docs/observability.md that its
// runbook_url points to.
func TestPromtool(t *testing.T) {
	tool := promtest.Promtool(t)
	t.Log(runIn(t, nil, tool, "check", "config", promConfig))
	t.Log(runIn(t, nil, tool, "check", "rules", promRules))
	t.Log(runIn(t, nil, tool, "test", "rules", promRulesTest))

	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, promRulesTest, &tests)
	mustf(t, slices.Equal(tests.RuleFiles, []string{"rules.yml"}), "%s tests %v, want [rules.yml]", promRulesTest, tests.RuleFiles)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, g := range tests.Tests {
		for _, c := range g.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	doc := string(read(t, runbook))
	as := alerts(t)
	if len(as) < 7 {
		t.Errorf("%s has %d alerts, want the 7 of docs/observability.md at least", promRules, len(as))
	}
	for name, url := range as {
		mustf(t, fires[name], "%s: no case where %s fires", promRulesTest, name)
		mustf(t, silent[name], "%s: no case where %s stays silent", promRulesTest, name)
		mustf(t, strings.Contains(doc, "\n### "+name+"\n"), "%s: no section ### %s", runbook, name)
		mustf(t, strings.HasSuffix(url, "/docs/observability.md#"+strings.ToLower(name)), "%s: runbook_url %q, want …/docs/observability.md#%s", name, url, strings.ToLower(name))
	}
}

// The Dockerfile's build line, run outside Docker, makes a static binary
// (the image's base has no C library) that runs.
func TestStaticBinary(t *testing.T) {
	bin := buildStatic(t)
	checkStatic(t, bin)
	out := runIn(t, nil, bin, "version")
	mustf(t, strings.HasPrefix(out, "eddy deploy-test "), "eddy version = %q, want eddy deploy-test … (VERSION through -ldflags)", out)
}
