package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/internal/promtest"
	"github.com/eddy-streams/eddy/internal/redisserver"
)

const (
	// testScrapeInterval is the real test's scrape and evaluation interval,
	// in place of the file's 10s.
	testScrapeInterval = "1s"
	// testRateInterval stands in for Grafana's $__rate_interval.
	testRateInterval = "15s"
	// scrapeWait bounds the wait until Prometheus has scraped Eddy's
	// processing for a rate window.
	scrapeWait = 60 * time.Second
)

// lockedBuffer is a bytes.Buffer safe to write from a process's output
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// demoFile writes configs/demo.yaml with its embedded MQTT broker moved to a
// free loopback port (the demo's 1884 may be taken) and its HTTP source's
// token files made absolute, and returns its path and those files (paths
// from the root).
func demoFile(t *testing.T) (string, []string) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(read(t, demoConfig), &doc); err != nil {
		t.Fatalf("%s: %v", demoConfig, err)
	}
	var tokenFiles []string
	moved := 0
	walk(&doc, nil, func(keys []string, n *yaml.Node) {
		k := strings.Join(keys, ".")
		switch {
		case k == "sources.mqtt.broker" && n.Value == "embedded":
			port, err := redisserver.FreePort(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			n.Value = fmt.Sprintf("embedded://127.0.0.1:%d", port)
			moved++
		case strings.HasPrefix(k, "sources.http.tokens.") && strings.HasSuffix(k, ".file"):
			// relative to the config's directory, which the copy leaves
			rel := filepath.Join(filepath.Dir(demoConfig), n.Value)
			abs, err := filepath.Abs(path(rel))
			if err != nil {
				t.Fatal(err)
			}
			tokenFiles, n.Value = append(tokenFiles, rel), abs
		}
	})
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d embedded MQTT broker(s) moved to free ports, HTTP token files %v", demoConfig, moved, tokenFiles)
	return p, tokenFiles
}

// walk calls fn for every scalar under n with the mapping keys leading to it.
func walk(n *yaml.Node, keys []string, fn func([]string, *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walk(c, keys, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], append(slices.Clone(keys), n.Content[i].Value), fn)
		}
	case yaml.ScalarNode:
		fn(keys, n)
	}
}

// startDemo runs `eddy run -c configs/demo.yaml` (built as the Dockerfile
// builds it) from the root with its HTTP listener on a free port, and
// returns that address once /readyz says ready, and the demo's HTTP token
// secrets.
func startDemo(t *testing.T) (addr string, secrets []string) {
	t.Helper()
	bin := buildStatic(t)
	cfg, tokenFiles := demoFile(t)
	for _, f := range tokenFiles {
		secrets = append(secrets, strings.TrimSuffix(string(read(t, f)), "\n"))
	}
	var stderr lockedBuffer
	cmd := exec.Command(bin, "run", "-c", cfg, "--http", "127.0.0.1:0") //nolint:noctx // stopped in Cleanup
	cmd.Dir = root
	cmd.Stderr = &stderr
	redisserver.Detach(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	listening := regexp.MustCompile(`"msg":"http_listening","addr":"([^"]+)"`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil && addr == "" {
			addr = m[1]
		}
		if addr != "" && get(t, "http://"+addr+"/readyz") == http.StatusOK {
			return addr, secrets
		}
		select {
		case <-done:
			t.Fatalf("eddy run exited before it was ready:\n%s", stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("eddy run not ready within 30s:\n%s", stderr.String())
		}
	}
}

// get returns the status of GET url, 0 when there is no answer.
func get(t testing.TB, url string) int {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// post sends body to the demo's HTTP source for pipeline and returns the
// status.
func post(t testing.TB, addr, pipeline, secret, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/pipelines/"+pipeline+"/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST to the demo's HTTP source: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// testPromConfig is deploy/prometheus/prometheus.yml for the test: the
// same rule files (absolute paths), scraped and evaluated every second,
// each job's service discovery replaced by static targets: job eddy the
// test's Eddy, job prometheus the server itself.
func testPromConfig(t *testing.T, eddyAddr string) func(self string) string {
	t.Helper()
	var cfg map[string]any
	readYAML(t, promConfig, &cfg)
	return func(self string) string {
		global, _ := cfg["global"].(map[string]any)
		if global == nil {
			t.Fatalf("%s: no global section", promConfig)
		}
		global["scrape_interval"] = testScrapeInterval
		global["evaluation_interval"] = testScrapeInterval
		var rules []any
		for _, r := range cfg["rule_files"].([]any) {
			rules = append(rules, mustAbs(t, "deploy/prometheus/"+r.(string)))
		}
		cfg["rule_files"] = rules
		targets := map[string]string{"eddy": eddyAddr, "prometheus": self}
		for _, sc := range cfg["scrape_configs"].([]any) {
			job := sc.(map[string]any)
			name := job["job_name"].(string)
			target, ok := targets[name]
			if !ok {
				t.Fatalf("%s: job %q, which the test has no target for", promConfig, name)
			}
			for k := range job {
				if strings.HasSuffix(k, "_sd_configs") || k == "static_configs" {
					delete(job, k)
				}
			}
			job["static_configs"] = []any{map[string]any{"targets": []any{target}}}
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
}

// waitFor asks prom expr until it returns data, failing the test when ctx
// is done first.
func waitFor(ctx context.Context, t *testing.T, prom *promtest.Server, expr string) {
	t.Helper()
	for {
		s, err := prom.Query(ctx, expr)
		if err == nil && len(s) > 0 {
			return
		}
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no data for %s within %v; Prometheus's log:\n%s", expr, scrapeWait, prom.LogTail(30))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// query substitutes Grafana's variables in a panel's or rule's expression:
// each template variable takes its "All" value and $__rate_interval a
// window of several test scrapes.
func query(d dashboard, expr string) string {
	for _, v := range d.Templating.List {
		expr = strings.ReplaceAll(expr, "$"+v.Name, v.AllValue)
	}
	return strings.ReplaceAll(expr, "$__rate_interval", testRateInterval)
}

// The dashboard works on a real Prometheus scraping a real Eddy: Eddy runs
// configs/demo.yaml (its simulators, and events posted to its HTTP source,
// some refused), Prometheus runs deploy/prometheus/prometheus.yml's jobs
// and rule files; every template variable's and every panel's query
// returns data, every alert rule evaluates without error.
func TestDashboardOnRealPrometheus(t *testing.T) {
	promtest.Binary(t) // fail first, with the install command, when it is missing
	addr, secrets := startDemo(t)
	if len(secrets) == 0 {
		t.Fatalf("%s has no HTTP source token: the ingest panels would have no traffic", demoConfig)
	}
	prom := promtest.Start(t, testPromConfig(t, addr))
	ctx, cancel := context.WithTimeout(t.Context(), scrapeWait)
	defer cancel()
	// Once Prometheus has a first scrape, events are posted, so that the
	// ingest counters grow within the rate window: two accepted, and a
	// request refused for a line that is not JSON.
	waitFor(ctx, t, prom, `count_over_time(up{job="eddy"}[1m]) >= 1`)
	good := `{"event_id":"deploy-1","user_id":"u1","type":"view","page":"/home","ts":1767225600000}` + "\n" +
		`{"event_id":"deploy-2","user_id":"u2","type":"click","page":"/cart","ts":1767225600001}` + "\n"
	if st := post(t, addr, "clickstream", secrets[0], good); st != http.StatusOK {
		t.Fatalf("POST two good events: status %d, want 200", st)
	}
	if st := post(t, addr, "clickstream", secrets[0], good+"not json\n"); st == http.StatusOK {
		t.Fatalf("POST with a line that is not JSON: status 200, want it refused")
	}
	waitFor(ctx, t, prom, `sum(rate(eddy_processor_processed_total[`+testRateInterval+`])) > 0`+
		` and on() sum(rate(eddy_ingest_accepted_total[`+testRateInterval+`])) > 0`+
		` and on() count_over_time(up{job="eddy"}[`+testRateInterval+`]) >= 5`)

	d, _ := readDashboard(t)
	for _, v := range d.Templating.List {
		m := labelValues.FindStringSubmatch(v.Query.Query)
		var match []string
		if m[1] != "" {
			match = []string{m[1]}
		}
		vals, err := prom.LabelValues(t.Context(), m[2], match...)
		switch {
		case err != nil:
			t.Errorf("variable %s: %v", v.Name, err)
		case len(vals) == 0:
			t.Errorf("variable %s: %s lists nothing", v.Name, v.Query.Query)
		default:
			t.Logf("variable %s: %s = %v", v.Name, v.Query.Query, vals)
		}
	}
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			q := query(d, tg.Expr)
			s, err := prom.Query(t.Context(), q)
			switch {
			case err != nil:
				t.Errorf("panel %q %s: %v", p.Title, tg.RefID, err)
			case len(s) == 0:
				t.Errorf("panel %q %s: no data: %s", p.Title, tg.RefID, q)
			default:
				one := s[0]
				for _, x := range s {
					if x.Value != "0" && x.Value != "NaN" {
						one = x
						break
					}
				}
				t.Logf("panel %q %s: %s\n    = %s %v (%d series)", p.Title, tg.RefID, q, one.Value, one.Metric, len(s))
			}
		}
	}

	// The rules are loaded from the same file and evaluate without error.
	rules, err := prom.Rules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := alerts(t)
	for _, r := range rules {
		mustf(t, r.Health != "err", "rule %s: %s", r.Name, r.LastError)
		delete(want, r.Name)
	}
	mustf(t, len(want) == 0, "Prometheus did not load the rules %v", want)
}
