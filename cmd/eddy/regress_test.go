package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Regression tests for defects a review found; each failed before its fix.

// `dlq replay --all` while the pipeline runs and keeps failing the events:
// re-dead-lettered entries land behind the point where the replay began and
// are left for the next replay (they used to be replayed without end).
func TestReplayStopsAtTheEndItFound(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "p.yaml", `http: {addr: off}
pipelines:
  - name: pay
    input: {stream: pay, payload: data}
    key: account
    steps:
      - validate: 'amount >= 0'
`)
	var in strings.Builder
	const n = 1200
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, `{"account":"a%d","amount":-1}`+"\n", i)
	}
	if code, out, errOut := eddy(t, in.String(), "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "pay"); code != 0 {
		t.Fatal(code, out, errOut)
	}
	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	waitFor(t, 20*time.Second, "all dead-lettered", func() bool { return c.XLen(ctx, "pay:dlq").Val() == n })

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	var out, errb strings.Builder
	code := execute(rctx, []string{"--redis", srv.URL(), "dlq", "replay", "-c", cfg, "--pipeline", "pay", "--all"}, strings.NewReader(""), &out, &errb)
	t.Logf("replay: code %d after %v: %s %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()))
	if !strings.Contains(out.String(), fmt.Sprintf("replayed %d ", n)) {
		t.Errorf("replay --all of %d dead letters did not finish with exactly %d replays", n, n)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 15*time.Second)
}

// Two pipelines read one stream (different groups). A replay for one
// would re-deliver the event to the other, which has no dedupe: replay
// refuses unless --force.
func TestReplayRefusesWhenOthersReadTheStream(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	base := `http: {addr: off}
pipelines:
  - name: a
    input: {stream: s, payload: data}
    key: k
    steps:
      - validate: 'amount >= 0'
      - output: {stream: "a:out"}
  - name: b
    input: {stream: s, payload: data}
    key: k
    steps:
      - output: {stream: "b:out"}
`
	cfg := writeFile(t, "p.yaml", base)
	fixed := writeFile(t, "f.yaml", strings.Replace(base, "amount >= 0", "amount >= -10", 1))
	if code, out, errOut := eddy(t, `{"k":"x","amount":-1}`+"\n", "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "a"); code != 0 {
		t.Fatal(code, out, errOut)
	}
	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	waitFor(t, 20*time.Second, "a dead-letters, b outputs", func() bool {
		return c.XLen(ctx, "s:dlq").Val() == 1 && c.XLen(ctx, "b:out").Val() == 1
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 15*time.Second)
	code, _, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "replay", "-c", fixed, "--pipeline", "a", "--all")
	if code != 2 || !strings.Contains(errOut, "pipelines b also read this input stream") {
		t.Fatalf("dlq replay with pipeline b (no dedupe) on the same stream = %d %q, want 2 naming b", code, errOut)
	}
	if n := c.XLen(ctx, "s:dlq").Val(); n != 1 {
		t.Errorf("dead letters after a refused replay = %d, want 1", n)
	}
	// With --force the operator accepts that b sees the event again.
	if code, out, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "replay", "-c", fixed, "--pipeline", "a", "--all", "--force"); code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("dlq replay --force = %d %q %q", code, out, errOut)
	}
}

// produce sends a partial batch after a short while (it used to wait for
// EOF), and on SIGINT stops reading and sends what it read.
func TestProduceFlushesByTimeAndOnInterrupt(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "p.yaml", "http: {addr: off}\npipelines:\n  - name: a\n    input: {stream: s, payload: data}\n    key: k\n")
	cmd := exec.Command(eddyBin, "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "a")
	stdin, _ := cmd.StdinPipe()
	var stderr, stdout strings.Builder
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	_, _ = io.WriteString(stdin, `{"k":"a"}`+"\n"+`{"k":"b"}`+"\n")
	time.Sleep(2 * time.Second)
	t.Logf("2s after writing 2 events: XLEN s = %d", c.XLen(ctx, "s").Val())
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
		t.Logf("exited on SIGINT")
	case <-time.After(3 * time.Second):
		t.Errorf("produce still running 3s after SIGINT (stdin open)")
		stdin.Close()
		<-done
	}
	t.Logf("exit %d, XLEN s = %d, stdout %q, stderr %q", cmd.ProcessState.ExitCode(), c.XLen(ctx, "s").Val(), stdout.String(), stderr.String())
	if c.XLen(ctx, "s").Val() != 2 {
		t.Errorf("the 2 events read before SIGINT were never sent")
	}
}

// A second SIGINT/SIGTERM cuts a long soft stop short.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeFile(t, "p.yaml", `http: {addr: off}
pipelines:
  - name: a
    input: {stream: s, payload: data}
    key: k
    shutdown_timeout: 20s
    retry: {max_attempts: 100, backoff: 30s, max_backoff: 30s}
    steps:
      - fault: {transient: 1}
`)
	if code, out, errOut := eddy(t, `{"k":"x"}`+"\n", "--redis", srv.URL(), "produce", "-c", cfg, "--pipeline", "a"); code != 0 {
		t.Fatal(code, out, errOut)
	}
	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
	time.Sleep(2 * time.Second)
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	code := p.wait(t, 40*time.Second)
	t.Logf("exit %d %v after the first SIGINT (second one 0.5s later)", code, time.Since(start).Round(100*time.Millisecond))
}

// An entry in the dead-letter stream that eddy did not write is skipped
// (it used to stop list and replay); --count 0 is a usage error.
func TestDLQForeignEntriesAndCount(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "p.yaml", "http: {addr: off}\npipelines:\n  - name: a\n    input: {stream: s, payload: data}\n    key: k\n")
	good := []any{"data", "{}", "eddy.reason", "not_json", "eddy.stream", "s", "eddy.pipeline", "a"}
	c.XAdd(ctx, &redisXAddArgs{Stream: "s:dlq", Values: good})
	code, out, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "list", "-c", cfg, "--pipeline", "a", "--count", "0")
	t.Logf("--count 0: code %d\n%s%s", code, out, errOut)
	c.Del(ctx, "s:dlq")
	c.XAdd(ctx, &redisXAddArgs{Stream: "s:dlq", Values: []any{"note", "written by hand"}})
	c.XAdd(ctx, &redisXAddArgs{Stream: "s:dlq", Values: good})
	code, out, errOut = eddy(t, "", "--redis", srv.URL(), "dlq", "list", "-c", cfg, "--pipeline", "a")
	t.Logf("with a foreign entry first: code %d\n%s%s", code, out, errOut)
	if code != 0 {
		t.Errorf("one foreign entry makes dlq list fail; the real dead letter behind it is unreachable")
	}
}

type redisXAddArgs = redis.XAddArgs

// /readyz answers on a pipeline with more partitions (each holding a
// connection in a blocking read) than go-redis's default pool.
func TestReadyzWithManyPartitions(t *testing.T) {
	srv := redistest.Start(t)
	addr := freeAddr(t)
	cfg := writeFile(t, "p.yaml", "http: {addr: "+addr+"}\npipelines:\n  - name: a\n    input: {stream: s, partitions: 64, payload: data}\n    key: k\n")
	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg)
	p.cmd.Env = append(p.cmd.Env, "GOMAXPROCS=1")
	time.Sleep(3 * time.Second)
	fails := 0
	for i := 0; i < 10; i++ {
		start := time.Now()
		resp, err := httpGet("http://" + addr + "/readyz")
		t.Logf("/readyz: %v %v in %v", resp, err, time.Since(start).Round(time.Millisecond))
		if err != nil || resp != 200 {
			fails++
		}
		time.Sleep(300 * time.Millisecond)
	}
	if fails > 0 {
		t.Errorf("/readyz failed %d of 10 times on a healthy idle worker", fails)
	}
	if code, err := httpGet("http://" + addr + "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof = %d %v, want 404", code, err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 20*time.Second)
}

func httpGet(u string) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
