package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCurl is the README's "Ingest over HTTP" example, as a test sends
// it: the token's secret, and the request.
type readmeCurl struct {
	secret  string
	url     string
	headers map[string]string
	body    string
	answer  string // the answer the README shows
}

// parseReadmeCurl reads the example from the README's section: the
// `export EDDY_INGEST_TOKEN=…` line, the printf of NDJSON lines piped to
// curl (its URL, its -H headers, $EDDY_INGEST_TOKEN expanded), and the
// JSON answer shown after it.
func parseReadmeCurl(t *testing.T) readmeCurl {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Ingest over HTTP\n")
	if !ok {
		t.Fatal("README.md has no section \"Ingest over HTTP\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var c readmeCurl
	m := regexp.MustCompile(`(?m)^export EDDY_INGEST_TOKEN=(\S+)$`).FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README: no export EDDY_INGEST_TOKEN=… line")
	}
	c.secret = m[1]
	_, block, ok := strings.Cut(section, "```sh\nprintf '%s\\n' \\\n")
	if !ok {
		t.Fatal("README: no printf … | curl block")
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []string
	for _, l := range regexp.MustCompile(`(?m)^\s+'(\{.*\})' \\$`).FindAllStringSubmatch(block, -1) {
		lines = append(lines, l[1])
	}
	c.body = strings.Join(lines, "\n") + "\n"
	if m = regexp.MustCompile(`curl -sS -X POST (http://\S+)`).FindStringSubmatch(block); m == nil {
		t.Fatal("README: the curl line has no URL")
	}
	c.url = m[1]
	c.headers = map[string]string{}
	for _, h := range regexp.MustCompile(`-H ["']([^"']+)["']`).FindAllStringSubmatch(block, -1) {
		name, value, _ := strings.Cut(h[1], ": ")
		c.headers[name] = strings.ReplaceAll(value, "$EDDY_INGEST_TOKEN", c.secret)
	}
	if !strings.Contains(block, "--data-binary @-") || len(lines) == 0 || len(c.headers) != 2 {
		t.Fatalf("README: the curl block is not printf | curl --data-binary @- with two headers:\n%s", block)
	}
	_, ans, ok := strings.Cut(section, "```json\n")
	if !ok {
		t.Fatal("README: no JSON answer")
	}
	c.answer, _, _ = strings.Cut(ans, "\n```")
	return c
}

// The README's curl request, sent as written (its URL's host and port
// aside) to eddy run -c configs/clickstream.yaml on the embedded Redis (the
// file's redis section taken out), gets the answer the README shows, and
// the workers process the two events it accepts.
func TestReadmeIngestOverHTTP(t *testing.T) {
	c := parseReadmeCurl(t)
	src, err := os.ReadFile("../../configs/clickstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The embedded demo: no redis section, and a free port for http.addr.
	text := regexp.MustCompile(`(?m)^redis:\n(  .*\n)+`).ReplaceAllString(string(src), "")
	if strings.Contains(text, "\nredis:") {
		t.Fatal("could not take the redis section out of configs/clickstream.yaml")
	}
	addr := freeAddr(t)
	text = strings.Replace(text, "addr: 127.0.0.1:9182", "addr: "+addr, 1)
	if !strings.Contains(c.url, "127.0.0.1:9182") || !strings.Contains(string(src), "addr: 127.0.0.1:9182") {
		t.Fatalf("the README's URL %s is not configs/clickstream.yaml's http.addr", c.url)
	}
	cfg := writeFile(t, "clickstream.yaml", text)
	p := startEddyEnv(t, []string{"EDDY_INGEST_TOKEN=" + c.secret}, "run", "-c", cfg)
	waitFor(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	req, err := http.NewRequest(http.MethodPost, strings.Replace(c.url, "127.0.0.1:9182", addr, 1), strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("the README's request = %d %s, want 207 as the README says", resp.StatusCode, b)
	}
	// The answer is the README's, entry ids aside (they are the time).
	ids := regexp.MustCompile(`"id":"\d+-\d+"`)
	var got, want any
	if err := json.Unmarshal(ids.ReplaceAll(b, []byte(`"id":"ID"`)), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ids.ReplaceAll([]byte(c.answer), []byte(`"id":"ID"`)), &want); err != nil {
		t.Fatalf("the README's answer is not JSON: %v", err)
	}
	if gb, _ := json.Marshal(got); string(gb) != mustJSON(t, want) {
		t.Errorf("answer\n%s\nwant the README's\n%s", b, c.answer)
	}
	waitFor(t, 30*time.Second, "the two accepted events processed", func() bool {
		return metricValue(scrape(addr), "eddy_processor_processed_total") >= 2
	})
	if v := metricValue(scrape(addr), "eddy_ingest_accepted_total"); v != 2 {
		t.Errorf("eddy_ingest_accepted_total = %v, want 2", v)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit = %d; log:\n%s", code, p.stderr.String())
	}
	log := p.stderr.String()
	for _, want := range []string{"embedded_redis_in_memory_only", `"msg":"http_source_shared"`, `"route":"/v1/pipelines/{pipeline}/events"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
