package promtest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/promtest"
)

// A started server scrapes itself, answers instant queries and label
// values, and reports a query it cannot parse as an error naming it.
func TestStartScrapesItself(t *testing.T) {
	s := promtest.Start(t, func(self string) string {
		return fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: [%q]}]\n", self)
	})
	var up []promtest.Sample
	for range 100 {
		var err error
		if up, err = s.Query(t.Context(), `up{job="self"}`); err != nil {
			t.Fatal(err)
		}
		if len(up) == 1 {
			break
		}
		waitTick(t)
	}
	if len(up) != 1 || up[0].Value != "1" || up[0].Metric["instance"] != s.Addr() {
		t.Fatalf(`Query(up{job="self"}) = %v, want one sample of value 1 with instance %s; log:\n%s`, up, s.Addr(), s.LogTail(20))
	}
	jobs, err := s.LabelValues(t.Context(), "job", "up")
	if err != nil || len(jobs) != 1 || jobs[0] != "self" {
		t.Fatalf("LabelValues(job, up) = %v, %v, want [self]", jobs, err)
	}
	if _, err := s.Query(t.Context(), "sum(up"); err == nil || !strings.Contains(err.Error(), `"sum(up"`) {
		t.Fatalf("Query(sum(up) = %v, want a parse error naming the query", err)
	}
	rules, err := s.Rules(t.Context())
	if err != nil || len(rules) != 0 {
		t.Fatalf("Rules() = %v, %v, want none", rules, err)
	}
}

// waitTick waits one scrape-sized moment, or fails once the test's context
// is done.
func waitTick(t *testing.T) {
	t.Helper()
	select {
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	case <-time.After(100 * time.Millisecond):
	}
}
