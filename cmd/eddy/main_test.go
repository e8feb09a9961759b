package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// eddyBin is the eddy binary built once for the tests that need a real
// process (signals, exit codes).
var eddyBin string

func TestMain(m *testing.M) {
	// configs/clickstream.yaml serves sources.http with a token read from
	// EDDY_INGEST_TOKEN, so every eddy run of that file that a test starts
	// needs one (the helpers pass the test's environment on).
	if os.Getenv("EDDY_INGEST_TOKEN") == "" {
		_ = os.Setenv("EDDY_INGEST_TOKEN", "cmd-eddy-tests-ingest-token")
	}
	dir, err := os.MkdirTemp("", "eddy-test")
	if err != nil {
		panic(err)
	}
	eddyBin = filepath.Join(dir, "eddy")
	out, err := exec.Command("go", "build", "-o", eddyBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// eddy runs the CLI in-process.
func eddy(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a running eddy binary.
type process struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	exited chan struct{}
	err    error
}

// lockedBuffer is a bytes.Buffer that the process's output copier writes
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

func startEddy(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(eddyBin, args...), exited: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	return p
}

func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("eddy did not exit within %v; log:\n%s", d, p.stderr.String())
	}
	if p.cmd.ProcessState == nil {
		t.Fatal(p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	code, out, _ := eddy(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "eddy ") {
		t.Errorf("eddy version = %d %q, want 0 and eddy <version>", code, out)
	}
}

func TestValidate(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".test.yaml") { // eddy test's files
			continue
		}
		if code, out, errOut := eddy(t, "", "validate", "-c", f); code != 0 || !strings.Contains(out, "ok") {
			t.Errorf("eddy validate -c %s = %d, %q %q; want 0 and ok", f, code, out, errOut)
		}
	}
	broken := writeFile(t, "broken.yaml", `pipelines:
  - name: a
    input:
      stream: s
      partitions: many
    key: k
    retry:
      max_attempts: 0
`)
	code, _, errOut := eddy(t, "", "validate", "-c", broken)
	if code != 1 {
		t.Errorf("eddy validate -c broken.yaml = %d, want 1", code)
	}
	for _, want := range []string{broken + ":5: pipelines[0].input.partitions", broken + ":8: pipelines[0].retry.max_attempts"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, _ := eddy(t, "", "validate"); code != 2 {
		t.Errorf("eddy validate without -c = %d, want 2 (usage)", code)
	}
}

// metricValue sums the samples of a metric in a Prometheus text page.
func metricValue(page, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		total += v
	}
	return total
}

func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Done-when 4: the demo config runs on the embedded Redis (no server
// anywhere), processes events within seconds, and the processed, duplicate,
// retry, dead-letter and latency series move.
func TestDemoOnEmbeddedRedis(t *testing.T) {
	addr := freeAddr(t)
	// The demo's embedded MQTT broker on a free port and its HTTP token file
	// by absolute path: demoConfig (ingest_demo_test.go).
	cfg, _ := demoConfig(t, true, "\nhttp:\n  addr: "+addr+"\n")
	p := startEddy(t, "run", "-c", cfg, "--pprof")
	series := []string{
		"eddy_processor_processed_total", "eddy_processor_duplicates_total", "eddy_processor_retries_total",
		"eddy_processor_dead_letters_total", "eddy_processor_end_to_end_latency_seconds_count",
		"eddy_processor_handle_duration_seconds_count",
	}
	first := map[string]float64{}
	waitFor(t, 20*time.Second, "every series to be non-zero", func() bool {
		page := scrape(addr)
		for _, s := range series {
			if metricValue(page, s) == 0 {
				return false
			}
			if _, ok := first[s]; !ok {
				first[s] = metricValue(page, s)
			}
		}
		return true
	})
	waitFor(t, 20*time.Second, "processed and latency series to move", func() bool {
		page := scrape(addr)
		return metricValue(page, series[0]) > first[series[0]] && metricValue(page, series[4]) > first[series[4]]
	})
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %v %v, want 200", resp, err)
	}
	resp, err = http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/heap with --pprof = %v %v, want 200", resp, err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	log := p.stderr.String()
	for _, want := range []string{"embedded_redis_in_memory_only", `"msg":"final_summary"`, `"in_memory_only":true`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// 3f through the CLI: events are produced with `eddy produce`, `eddy run`
// gets SIGTERM under load, exits 0 within shutdown_timeout, and a second
// run finishes the rest: every event has exactly one output.
func TestRunSIGTERMUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	cfg := writeFile(t, "p.yaml", `http:
  addr: off
pipelines:
  - name: orders
    input: {stream: orders, partitions: 3, payload: data}
    key: customer
    dedupe: {id: order_id, window: 1h}
    shutdown_timeout: 4s
    steps:
      - validate: 'amount >= 0'
      - map: {total: 'amount * 2'}
      - output: {stream: "orders:out"}
`)
	var in strings.Builder
	const n = 20000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, `{"order_id":"o%d","customer":"c%d","amount":%d}`+"\n", i, i%500, i%7)
	}
	in.WriteString("this line is not json\n")
	code, out, errOut := eddy(t, in.String(), "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "orders")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("produced %d events", n+1)) || !strings.Contains(out, "1 malformed") {
		t.Fatalf("eddy produce = %d %q %q", code, out, errOut)
	}

	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	waitFor(t, 30*time.Second, "some outputs", func() bool { return c.XLen(context.Background(), "orders:out").Val() > 1000 })
	sent := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	if took := time.Since(sent); took > 5*time.Second {
		t.Errorf("exit took %v, want within shutdown_timeout 4s", took)
	}
	t.Logf("stopped after %d outputs", c.XLen(context.Background(), "orders:out").Val())

	p2 := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	waitFor(t, 60*time.Second, "every output", func() bool { return c.XLen(context.Background(), "orders:out").Val() >= n })
	waitFor(t, 10*time.Second, "the malformed line in the dead-letter stream", func() bool {
		return c.XLen(context.Background(), "orders:dlq").Val() == 1
	})
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	if code := p2.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("second run exit code = %d; log:\n%s", code, p2.stderr.String())
	}
	seen := map[string]int{}
	es, err := c.XRange(context.Background(), "orders:out", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		seen[e.Values["id"].(string)]++
	}
	for i := 0; i < n; i++ {
		if id := "o" + strconv.Itoa(i); seen[id] != 1 {
			t.Fatalf("outputs of %s = %d, want 1", id, seen[id])
		}
	}
	dl, _ := c.XRange(context.Background(), "orders:dlq", "-", "+").Result()
	if dl[0].Values["data"] != "this line is not json" || dl[0].Values["eddy.reason"] != "not_json" {
		t.Errorf("dead letter = %v, want the line as it was, reason not_json", dl[0].Values)
	}
	for p := 0; p < 3; p++ {
		stream := fmt.Sprintf("{orders:%d}", p)
		if pend, err := c.XPending(context.Background(), stream, "orders").Result(); err != nil || pend.Count != 0 {
			t.Errorf("pending on %s = %v %v, want 0", stream, pend, err)
		}
	}
}

// A config naming a Redis that does not answer fails fast with the address.
func TestRunRedisDown(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	cfg := writeFile(t, "p.yaml", "redis: {url: redis://"+addr+"/0}\nhttp: {addr: off}\npipelines:\n  - name: a\n    input: {stream: s}\n    key: k\n")
	p := startEddy(t, "run", "-c", cfg, "--redis-wait", "0")
	if code := p.wait(t, 15*time.Second); code != 1 {
		t.Fatalf("exit code = %d, want 1", code)
	}
	if !strings.Contains(p.stderr.String(), addr) || !strings.Contains(p.stderr.String(), "does not answer") {
		t.Errorf("error does not say which Redis is down:\n%s", p.stderr.String())
	}
}

// EDDY_REDIS_URL overrides the config (which here names no Redis, so
// without it eddy would start the embedded one), and --pipeline must name a
// pipeline of the file.
func TestRedisFromEnvironmentAndPipelineSelection(t *testing.T) {
	cfg := writeFile(t, "p.yaml", "http: {addr: off}\npipelines:\n  - name: a\n    input: {stream: s}\n    key: k\n")
	code, _, errOut := eddy(t, "", "run", "-c", cfg, "--pipeline", "nope")
	if code != 2 || !strings.Contains(errOut, `--pipeline "nope": no such pipeline`) || !strings.Contains(errOut, "have: a") {
		t.Errorf("run --pipeline nope = %d %q, want 2 naming the pipelines there are", code, errOut)
	}
	dead := freeAddr(t)
	t.Setenv("EDDY_REDIS_URL", "redis://"+dead+"/0")
	code, _, errOut = eddy(t, "", "run", "-c", cfg, "--pipeline", "a", "--redis-wait", "0")
	if code != 1 || !strings.Contains(errOut, dead) || strings.Contains(errOut, "embedded_redis") {
		t.Errorf("run with EDDY_REDIS_URL at a dead address = %d %q, want 1 naming %s", code, errOut, dead)
	}
}

// The dead-letter workflow: events a pipeline rejects are listed with their
// reason, the pipeline is fixed, and a replay puts them back; they are then
// processed exactly once and the dead-letter stream is empty.
func TestDeadLetterListAndReplay(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	strict := `http: {addr: off}
pipelines:
  - name: pay
    input: {stream: pay, partitions: 2, payload: data}
    key: account
    dedupe: {id: id, window: 1h}
    steps:
      - validate: 'amount >= 0'
      - output: {stream: "pay:out"}
`
	cfg := writeFile(t, "strict.yaml", strict)
	fixed := writeFile(t, "fixed.yaml", strings.Replace(strict, "amount >= 0", "amount >= -100", 1))
	in := `{"id":"p1","account":"a","amount":5}
{"id":"p2","account":"b","amount":-3}
{"id":"p3","account":"c","amount":-7}
`
	if code, out, errOut := eddy(t, in, "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "pay"); code != 0 {
		t.Fatalf("produce = %d %s %s", code, out, errOut)
	}
	runOnce := func(config string, until func() bool) {
		t.Helper()
		p := startEddy(t, "--redis", srv.URL(), "run", "-c", config, "--consumer", "w1")
		waitFor(t, 20*time.Second, "the run to settle", until)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("run exit = %d; log:\n%s", code, p.stderr.String())
		}
	}
	runOnce(cfg, func() bool { return c.XLen(ctx, "pay:out").Val() == 1 && c.XLen(ctx, "pay:dlq").Val() == 2 })

	code, out, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "list", "-c", cfg, "--pipeline", "pay")
	if code != 0 || !strings.Contains(out, "pay:dlq: 2 dead letters") || strings.Count(out, "invalid") != 2 {
		t.Fatalf("dlq list = %d %q %q, want 2 dead letters with reason invalid", code, out, errOut)
	}
	code, out, _ = eddy(t, "", "--redis", srv.URL(), "dlq", "list", "-c", cfg, "--pipeline", "pay", "--json")
	if code != 0 || strings.Count(out, `"reason":"invalid"`) != 2 || !strings.Contains(out, `\"amount\":-3`) {
		t.Errorf("dlq list --json = %d %q, want both dead letters with their original fields", code, out)
	}
	if code, _, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "replay", "-c", cfg, "--pipeline", "pay"); code != 2 {
		t.Errorf("dlq replay without --id or --all = %d %q, want 2", code, errOut)
	}
	code, out, errOut = eddy(t, "", "--redis", srv.URL(), "dlq", "replay", "-c", fixed, "--pipeline", "pay", "--all")
	if code != 0 || !strings.Contains(out, "replayed 2 dead letters") {
		t.Fatalf("dlq replay --all = %d %q %q", code, out, errOut)
	}
	runOnce(fixed, func() bool { return c.XLen(ctx, "pay:out").Val() == 3 })
	if n := c.XLen(ctx, "pay:dlq").Val(); n != 0 {
		t.Errorf("dead letters after the replay = %d, want 0", n)
	}
	ids := map[string]int{}
	for _, e := range c.XRange(ctx, "pay:out", "-", "+").Val() {
		ids[e.Values["id"].(string)]++
	}
	if ids["p1"] != 1 || ids["p2"] != 1 || ids["p3"] != 1 {
		t.Errorf("outputs per id = %v, want p1, p2, p3 once each", ids)
	}
}
