package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoTokenFile is the demo HTTP source's token file as configs/demo.yaml
// names it, relative to the config's directory; demoTokenPath is the same
// file from the repository's root, as the README's curl reads it.
const (
	demoTokenFile = "demo-token.txt"
	demoTokenPath = "configs/" + demoTokenFile
)

// demoConfig returns configs/demo.yaml made to run from a test: its
// embedded MQTT broker on a free port (not 1884, which something on the
// machine may hold), its token file by absolute path (the test's working
// directory is cmd/eddy, not the root), and extra appended. Without
// simulators (keep false) nothing but the test feeds the pipelines. It
// returns the file's path and the broker's address.
func demoConfig(t *testing.T, keepSimulators bool, extra string) (path, brokerAddr string) {
	t.Helper()
	b, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	demo := string(b)
	for _, line := range []string{"      broker: embedded\n", "file: " + demoTokenFile + ","} {
		if !strings.Contains(demo, line) {
			t.Fatalf("configs/demo.yaml has no %q", line)
		}
	}
	brokerAddr = freeAddr(t)
	demo = strings.Replace(demo, "      broker: embedded\n", "      broker: embedded://"+brokerAddr+"\n", 1)
	abs, err := filepath.Abs(filepath.Join("../../configs", demoTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	demo = strings.Replace(demo, "file: "+demoTokenFile+",", "file: "+abs+",", 1)
	if !keepSimulators {
		sims := regexp.MustCompile(`(?m)^simulate:\n(( .*)?\n)+`)
		if !sims.MatchString(demo) {
			t.Fatal("configs/demo.yaml: no simulate section to take out")
		}
		demo = sims.ReplaceAllString(demo, "")
	}
	return writeFile(t, "demo.yaml", demo+extra), brokerAddr
}

// readmeDemoCurl returns the README's curl line for the demo's HTTP source
// ("Ingest over HTTP"): its URL, headers (the token file read as the
// shell would) and body.
func readmeDemoCurl(t *testing.T) (url string, headers map[string]string, body string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Ingest over HTTP\n")
	if !ok {
		t.Fatal(`README.md has no "## Ingest over HTTP" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```sh\ncurl -sS -X POST http://127.0.0.1:9180/")
	if !ok {
		t.Fatal("README.md, Ingest over HTTP: no curl block for the demo (curl -sS -X POST http://127.0.0.1:9180/…)")
	}
	block, _, _ = strings.Cut("curl -sS -X POST http://127.0.0.1:9180/"+block, "```")
	// configs/demo.yaml's comment gives the same line.
	demo, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	commented := "#   " + strings.ReplaceAll(strings.TrimSuffix(block, "\n"), "\n  ", "\n#     ")
	if !strings.Contains(string(demo), commented) {
		t.Errorf("configs/demo.yaml lacks the README's curl line as a comment:\n%s", commented)
	}
	url = regexp.MustCompile(`curl -sS -X POST (http://\S+)`).FindStringSubmatch(block)[1]
	secret, err := os.ReadFile(filepath.Join("../..", demoTokenPath))
	if err != nil {
		t.Fatal(err)
	}
	headers = map[string]string{}
	for _, h := range regexp.MustCompile(`-H ["']([^"']+)["']`).FindAllStringSubmatch(block, -1) {
		name, value, _ := strings.Cut(h[1], ": ")
		headers[name] = strings.ReplaceAll(value, "$(cat "+demoTokenPath+")", strings.TrimSuffix(string(secret), "\n"))
	}
	m := regexp.MustCompile(`--data-binary '([^']+)'`).FindStringSubmatch(block)
	if m == nil || len(headers) != 2 || !strings.Contains(headers["Authorization"], "Bearer ") {
		t.Fatalf("README.md: the demo's curl block is not curl -H Authorization -H Content-Type --data-binary '…':\n%s", block)
	}
	return url, headers, m[1]
}

// The demo takes events over HTTP with nothing set up, as the README
// says: its curl line, sent as written (host and port aside) to eddy run
// -c configs/demo.yaml, is answered 200 with the event accepted, and the
// clickstream pipeline processes it. The listener is on port 0, and the
// port bound is read from http_listening.
func TestDemoIngestOverHTTP(t *testing.T) {
	url, headers, body := readmeDemoCurl(t)
	cfg, _ := demoConfig(t, false, "")
	p := startEddy(t, "run", "-c", cfg, "--http", "127.0.0.1:0")
	listening := regexp.MustCompile(`"msg":"http_listening","addr":"([^"]+)"`)
	var addr string
	waitFor(t, 20*time.Second, "/readyz 200 on the address http_listening names", func() bool {
		if m := listening.FindStringSubmatch(p.stderr.String()); m != nil {
			addr = m[1]
		}
		if addr == "" {
			return false
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	req, err := http.NewRequest(http.MethodPost, strings.Replace(url, "127.0.0.1:9180", addr, 1), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var a ingestAnswer
	if err := json.Unmarshal(b, &a); err != nil || resp.StatusCode != http.StatusOK || a.Accepted != 1 {
		t.Fatalf("the README's demo request = %d %s, want 200 with 1 accepted", resp.StatusCode, b)
	}
	// No simulators here: the one event processed is the README's.
	waitFor(t, 30*time.Second, "the event processed", func() bool {
		return metricValue(scrape(addr), "eddy_processor_processed_total") >= 1
	})
	page := scrape(addr)
	if !strings.Contains(page, `eddy_ingest_accepted_total{pipeline="clickstream",source="http"} 1`+"\n") {
		t.Errorf("/metrics: want eddy_ingest_accepted_total{pipeline=\"clickstream\",source=\"http\"} 1")
	}
	if v := metricValue(page, "eddy_processor_dead_letters_total"); v != 0 {
		t.Errorf("eddy_processor_dead_letters_total = %v, want 0: the README's event was dead-lettered", v)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit = %d; log:\n%s", code, p.stderr.String())
	}
	if log := p.stderr.String(); strings.Contains(log, strings.TrimPrefix(headers["Authorization"], "Bearer ")) {
		t.Error("the demo token's secret is in the log")
	}
}
