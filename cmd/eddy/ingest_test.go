package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// startEddyEnv is startEddy with env added to the test's environment.
func startEddyEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(eddyBin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	return p
}

// ingestAnswer is the JSON answer of the ingest route.
type ingestAnswer struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Entries  []struct {
		Line   int    `json:"line"`
		Stream string `json:"stream"`
		ID     string `json:"id"`
	} `json:"entries"`
	Rejections []struct {
		Line    int    `json:"line"`
		Pointer string `json:"pointer"`
		Reason  string `json:"reason"`
		Error   string `json:"error"`
	} `json:"rejections"`
	Error string `json:"error"`
}

// postEvents posts body to the ingest route of pipeline at addr.
func postEvents(t *testing.T, addr, pipeline, token, contentType, body string) (int, ingestAnswer, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/pipelines/"+pipeline+"/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a ingestAnswer
	_ = json.Unmarshal(b, &a)
	return resp.StatusCode, a, string(b)
}

const ingestConfig = `http: {addr: %s}
sources:
  http:
    addr: %s
    tokens:
      web: {env: INGEST_TEST_WEB, pipelines: [clicks]}
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 2, payload: data}
    key: user_id
    steps:
      - output: {stream: "clicks:out"}
`

// eddy ingest runs the file's HTTP source on its own listener, without
// workers, with /metrics and /readyz on http.addr, until SIGTERM.
func TestIngestCommand(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	metricsAddr, ingestAddr := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, "ingest.yaml", fmt.Sprintf(ingestConfig, metricsAddr, ingestAddr))
	p := startEddyEnv(t, []string{"INGEST_TEST_WEB=s3cret-web"}, "--redis", srv.URL(), "ingest", "-c", cfg)
	waitFor(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	page := scrape(metricsAddr)
	if !strings.Contains(page, `eddy_ingest_requests_total{pipeline="clicks",source="http",status="200"} 0`) {
		t.Errorf("/metrics lacks the ingest series at zero before any request:\n%s", page)
	}
	status, a, raw := postEvents(t, ingestAddr, "clicks", "s3cret-web", "application/x-ndjson", "{\"user_id\":\"u1\"}\n{\"user_id\":\"u2\"}\n")
	if status != 200 || a.Accepted != 2 {
		t.Fatalf("POST = %d %s, want 200 with 2 accepted", status, raw)
	}
	for _, e := range a.Entries {
		if n := len(c.XRange(context.Background(), e.Stream, e.ID, e.ID).Val()); n != 1 {
			t.Errorf("entry %s %s answered 200 is not in Redis", e.Stream, e.ID)
		}
	}
	if status, _, raw := postEvents(t, ingestAddr, "clicks", "wrong", "application/json", `{"user_id":"u1"}`); status != 401 {
		t.Errorf("wrong token = %d %s, want 401", status, raw)
	}
	if v := metricValue(scrape(metricsAddr), "eddy_ingest_accepted_total"); v != 2 {
		t.Errorf("eddy_ingest_accepted_total = %v, want 2", v)
	}
	// No workers: nothing reads the stream.
	if n := c.XLen(context.Background(), "clicks:out").Val(); n != 0 {
		t.Errorf("clicks:out has %d entries: eddy ingest ran workers", n)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eddy ingest exit after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	log := p.stderr.String()
	for _, want := range []string{`"msg":"http_source_listening"`, `"msg":"eddy_ingest_started"`, `"sources":["http"]`, `"msg":"eddy_stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "s3cret-web") {
		t.Errorf("the log shows the token's secret:\n%s", log)
	}
}

// A token whose secret is missing stops eddy ingest and eddy run at
// start, naming the token and the variable, and showing no secret.
func TestIngestMissingSecret(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeFile(t, "ingest.yaml", fmt.Sprintf(ingestConfig, "off", freeAddr(t)))
	for _, cmd := range []string{"ingest", "run"} {
		code, out, errOut := eddy(t, "", "--redis", srv.URL(), cmd, "-c", cfg, "--redis-wait", "0")
		want := "sources.http.tokens.web: environment variable INGEST_TEST_WEB is unset or empty"
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("eddy %s without the token's variable = %d %s %s, want 1 and %q", cmd, code, out, errOut, want)
		}
	}
	// Without any sources there is nothing to ingest.
	plain := writeFile(t, "plain.yaml", "pipelines: [{name: p, input: {stream: s}, key: k}]\n")
	if code, _, errOut := eddy(t, "", "--redis", srv.URL(), "ingest", "-c", plain); code != 2 || !strings.Contains(errOut, "has no sources section: nothing to ingest") {
		t.Errorf("eddy ingest of a file without sources = %d %s, want 2", code, errOut)
	}
	// eddy ingest needs a real Redis.
	noRedis := writeFile(t, "noredis.yaml", fmt.Sprintf(ingestConfig, "off", freeAddr(t)))
	code, _, errOut := eddy(t, "", "ingest", "-c", noRedis)
	if os.Getenv("EDDY_REDIS_URL") == "" && (code != 2 || !strings.Contains(errOut, "eddy ingest works on a Redis")) {
		t.Errorf("eddy ingest on the embedded Redis = %d %s, want 2", code, errOut)
	}
}

// eddy run serves a shared sources.http on its http.addr listener, and its
// workers process what comes in; with --no-sources the route is not there.
func TestRunServesSharedSource(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	addr := freeAddr(t)
	cfg := writeFile(t, "run.yaml", fmt.Sprintf(ingestConfig, addr, "shared"))
	env := []string{"INGEST_TEST_WEB=s3cret-web"}
	p := startEddyEnv(t, env, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	waitFor(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	var body strings.Builder
	for i := range 50 {
		fmt.Fprintf(&body, `{"user_id":"u%d","i":%d}`+"\n", i%7, i)
	}
	status, a, raw := postEvents(t, addr, "clicks", "s3cret-web", "application/json", body.String())
	if status != 200 || a.Accepted != 50 {
		t.Fatalf("POST = %d %s, want 200 with 50 accepted", status, raw)
	}
	waitFor(t, 30*time.Second, "the 50 events processed", func() bool {
		return c.XLen(context.Background(), "clicks:out").Val() == 50
	})
	for _, e := range a.Entries {
		if want := processor.PartitionStream("clicks", 0, 2); e.Stream != want && e.Stream != processor.PartitionStream("clicks", 1, 2) {
			t.Errorf("entry in %s, want a partition of clicks", e.Stream)
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eddy run exit = %d; log:\n%s", code, p.stderr.String())
	}

	addr2 := freeAddr(t)
	cfg2 := writeFile(t, "run2.yaml", fmt.Sprintf(ingestConfig, addr2, "shared"))
	p = startEddyEnv(t, nil, "--redis", srv.URL(), "run", "-c", cfg2, "--consumer", "w1", "--no-sources")
	waitFor(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr2 + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if status, _, raw := postEvents(t, addr2, "clicks", "s3cret-web", "application/json", `{"user_id":"u1"}`); status != 404 {
		t.Errorf("POST to eddy run --no-sources = %d %s, want 404 (no route)", status, raw)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eddy run --no-sources exit = %d; log:\n%s", code, p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), "sources_started") {
		t.Errorf("eddy run --no-sources started sources:\n%s", p.stderr.String())
	}

	// A shared source with the listener turned off cannot run: said once
	// Redis and its permissions are checked.
	t.Setenv("INGEST_TEST_WEB", "s3cret-web") // eddy runs in this process
	code, _, errOut := eddy(t, "", "--redis", srv.URL(), "run", "-c", cfg2, "--http", "off", "--redis-wait", "0")
	if code != 2 || !strings.Contains(errOut, "sources.http.addr is shared, but the http.addr listener is off") {
		t.Errorf("eddy run --http off with a shared source = %d %s, want 2", code, errOut)
	}
}
