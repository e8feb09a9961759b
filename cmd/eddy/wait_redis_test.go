package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// waitClock is a processor.Clock for wait: each timer fires at once and
// moves the time on by its duration, which it records.
type waitClock struct {
	mu     sync.Mutex
	now    time.Time
	pauses []time.Duration
	hold   bool // timers never fire: a wait that only ctx can end
}

func (c *waitClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *waitClock) NewTimer(d time.Duration) processor.ClockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pauses = append(c.pauses, d)
	ch := make(chan time.Time, 1)
	if !c.hold {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return waitTimer(ch)
}

type waitTimer chan time.Time

func (t waitTimer) C() <-chan time.Time { return t }
func (t waitTimer) Stop() bool          { return true }

// miniConn is a redisConn on a miniredis whose client does not retry, so
// that each attempt of wait is one PING.
func miniConn(t *testing.T, o *redis.Options) (*miniredis.Miniredis, *redisConn) {
	t.Helper()
	mr := miniredis.RunT(t)
	o.Addr, o.MaxRetries = mr.Addr(), -1
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return mr, &redisConn{client: c, where: mr.Addr()}
}

// The pause between attempts starts at 100ms and doubles up to 5s; once
// Redis answers, wait returns nil and says so.
func TestWaitBacksOffUntilRedisAnswers(t *testing.T) {
	mr, conn := miniConn(t, &redis.Options{})
	mr.SetError("LOADING Redis is loading the dataset in memory")
	clock := &waitClock{now: time.Unix(0, 0)}
	core, logs := observer.New(zap.InfoLevel)
	fails := 0
	w := redisWait{limit: time.Minute, log: zap.New(core), clock: clock, failed: func(err error) {
		if !redis.IsLoadingError(err) {
			t.Errorf("failed(%v), want a LOADING error", err)
		}
		if fails++; fails == 10 {
			mr.SetError("")
		}
	}}
	if err := conn.wait(t.Context(), w); err != nil {
		t.Fatalf("wait = %v, want nil once Redis answers", err)
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms, 5000 * ms}
	if fmt.Sprint(clock.pauses) != fmt.Sprint(want) {
		t.Errorf("pauses = %v, want %v", clock.pauses, want)
	}
	// The same error is logged at the first attempt, then at most once
	// every 15s of waiting: attempts 1 to 11 are at 0, 0.1, 0.3, 0.7, 1.5,
	// 3.1, 6.3, 11.3, 16.3, 21.3 and 26.3s, so attempts 1 and 9 are logged.
	var attempts []int64
	for _, e := range logs.FilterMessage("redis_unavailable_waiting").All() {
		f := e.ContextMap()
		attempts = append(attempts, f["attempt"].(int64))
		if _, ok := f["waited"]; !ok || !strings.Contains(f["error"].(string), "LOADING") {
			t.Errorf("redis_unavailable_waiting fields = %v, want waited and the LOADING error", f)
		}
	}
	if fmt.Sprint(attempts) != "[1 9]" {
		t.Errorf("redis_unavailable_waiting logged at attempts %v, want [1 9]", attempts)
	}
	if got := logs.FilterMessage("redis_available").All(); len(got) != 1 || got[0].ContextMap()["attempt"] != int64(11) {
		t.Errorf("redis_available logs = %v, want one at attempt 11", got)
	}
}

// A failure that says something new is logged at once.
func TestWaitLogsANewError(t *testing.T) {
	mr, conn := miniConn(t, &redis.Options{})
	mr.SetError("LOADING Redis is loading the dataset in memory")
	core, logs := observer.New(zap.InfoLevel)
	n := 0
	w := redisWait{limit: time.Minute, log: zap.New(core), clock: &waitClock{}, failed: func(error) {
		switch n++; n {
		case 2:
			mr.SetError("MASTERDOWN Link with MASTER is down")
		case 3:
			mr.SetError("")
		}
	}}
	if err := conn.wait(t.Context(), w); err != nil {
		t.Fatalf("wait = %v, want nil", err)
	}
	var errs []string
	for _, e := range logs.FilterMessage("redis_unavailable_waiting").All() {
		errs = append(errs, strings.Fields(e.ContextMap()["error"].(string))[0])
	}
	if fmt.Sprint(errs) != "[LOADING MASTERDOWN]" {
		t.Errorf("logged errors %v, want [LOADING MASTERDOWN]", errs)
	}
}

// After --redis-wait the wait gives up, with one last attempt at the limit.
func TestWaitGivesUpAtTheLimit(t *testing.T) {
	mr, conn := miniConn(t, &redis.Options{})
	mr.SetError("LOADING Redis is loading the dataset in memory")
	clock := &waitClock{now: time.Unix(0, 0)}
	err := conn.wait(t.Context(), redisWait{limit: 2 * time.Second, clock: clock})
	if !redis.IsLoadingError(err) || !strings.Contains(err.Error(), "--redis-wait 2s") || !strings.Contains(err.Error(), mr.Addr()) {
		t.Errorf("wait = %v, want the LOADING error, the address and the limit", err)
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 500 * ms} // the last one ends at the limit
	if fmt.Sprint(clock.pauses) != fmt.Sprint(want) {
		t.Errorf("pauses = %v, want %v", clock.pauses, want)
	}
}

// --redis-wait 0 makes one attempt.
func TestWaitZeroFailsAtOnce(t *testing.T) {
	mr, conn := miniConn(t, &redis.Options{})
	mr.SetError("LOADING Redis is loading the dataset in memory")
	clock := &waitClock{}
	err := conn.wait(t.Context(), redisWait{clock: clock})
	if !redis.IsLoadingError(err) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("wait with no limit = %v, want the LOADING error", err)
	}
	if len(clock.pauses) != 0 {
		t.Errorf("pauses = %v, want none", clock.pauses)
	}
}

// Errors that waiting does not cure end the wait at the first attempt.
func TestWaitPermanentErrors(t *testing.T) {
	tests := []struct {
		name   string
		opt    redis.Options
		setup  func(*miniredis.Miniredis)
		prefix string
	}{
		{"wrong password", redis.Options{Password: "wrong"}, func(mr *miniredis.Miniredis) { mr.RequireAuth("secret") }, "WRONGPASS"},
		{"no password", redis.Options{}, func(mr *miniredis.Miniredis) { mr.RequireAuth("secret") }, "NOAUTH"},
		{"no permission", redis.Options{}, func(mr *miniredis.Miniredis) {
			mr.SetError("NOPERM User default has no permissions to run the 'ping' command")
		}, "NOPERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr, conn := miniConn(t, &tt.opt)
			tt.setup(mr)
			clock := &waitClock{}
			err := conn.wait(t.Context(), redisWait{limit: time.Minute, clock: clock})
			if !redis.HasErrorPrefix(err, tt.prefix) || !strings.Contains(err.Error(), "not waiting") {
				t.Errorf("wait = %v, want a %s error that says eddy does not wait", err, tt.prefix)
			}
			if len(clock.pauses) != 0 {
				t.Errorf("pauses = %v, want none", clock.pauses)
			}
		})
	}
}

// A ctx done during a pause ends the wait with ctx's error.
func TestWaitContextDone(t *testing.T) {
	mr, conn := miniConn(t, &redis.Options{})
	mr.SetError("LOADING Redis is loading the dataset in memory")
	ctx, cancel := context.WithCancel(t.Context())
	w := redisWait{limit: time.Minute, clock: &waitClock{hold: true}, failed: func(error) { cancel() }}
	if err := conn.wait(ctx, w); !errors.Is(err, context.Canceled) {
		t.Errorf("wait = %v, want context.Canceled", err)
	}
}

func TestRedisWaitable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("wrapped: %w", refused), true},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
		{&net.DNSError{Err: "no such host", Name: "redis", IsNotFound: true}, true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{&tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}, false},
	}
	for _, tt := range tests {
		if got := redisWaitable(tt.err); got != tt.want {
			t.Errorf("redisWaitable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	// Replies of Redis, as go-redis returns them.
	for msg, want := range map[string]bool{
		"LOADING Redis is loading the dataset in memory":                          true,
		"BUSY Redis is busy running a script.":                                    true,
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is no":  true,
		"CLUSTERDOWN The cluster is down":                                         true,
		"TRYAGAIN Multiple keys request during rehashing of slot":                 true,
		"ERR max number of clients reached":                                       true,
		"WRONGPASS invalid username-password pair or user is disabled.":           false,
		"NOAUTH Authentication required.":                                         false,
		"NOPERM User default has no permissions to run the 'ping' command":        false,
		"ERR AUTH <password> called without any password configured for the user": false,
		"BUSYGROUP Consumer Group name already exists":                            false,
	} {
		mr, conn := miniConn(t, &redis.Options{})
		mr.SetError(msg)
		err := conn.pingOnce(t.Context())
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			t.Fatalf("PING with miniredis answering %q = %v, want a Redis error", msg, err)
		}
		if got := redisWaitable(err); got != want {
			t.Errorf("redisWaitable(%v) = %v, want %v", err, got, want)
		}
	}
}

// logLines returns the JSON log lines with message msg.
func (p *process) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(p.stderr.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// rawRedisLog matches a line go-redis writes to stderr with its default
// logger ("redis: 2006/01/02 15:04:05 pool.go:770: …").
var rawRedisLog = regexp.MustCompile(`(?m)^redis: \d{4}/\d\d/\d\d `)

// get returns the status and body of GET url (0 if it failed).
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const waitConfig = `pipelines:
  - name: orders
    input: {stream: orders, partitions: 2, payload: data}
    key: customer
    steps:
      - output: {stream: "orders:out"}
`

// freePort returns a loopback port nothing listens on (as far as we know).
func freePort(t *testing.T) int {
	t.Helper()
	port, err := redisserver.FreePort(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// eddy run started before its Redis waits for it: /healthz and /metrics
// answer and /readyz says 503 while no Redis runs; once a redis-server
// starts on the port, eddy processes what is written there and turns ready.
func TestRunWaitsForRedis(t *testing.T) {
	port := freePort(t)
	url := "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	httpAddr := freeAddr(t)
	cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: "+httpAddr+"}\n")
	p := startEddy(t, "--redis", url, "run", "-c", cfg, "--consumer", "w1")

	// From eddy's first failed attempt on, and for 3s more without a
	// Redis (a few more attempts), /readyz must say not ready.
	waitFor(t, 30*time.Second, "eddy to log a failed attempt", func() bool { return len(p.logLines("redis_unavailable_waiting")) > 0 })
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if code, body := get("http://" + httpAddr + "/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d %q while no Redis runs, want 503", code, body)
		}
	}
	if code, body := get("http://" + httpAddr + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for redis") {
		t.Errorf("/readyz while waiting = %d %q, want 503 saying it waits for redis", code, body)
	}
	if code, body := get("http://" + httpAddr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting = %d %q, want 200", code, body)
	}
	if code, body := get("http://" + httpAddr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "eddy_build_info") {
		t.Errorf("/metrics while waiting = %d, want 200 with eddy_build_info", code)
	}
	first := p.logLines("redis_unavailable_waiting")[0]
	for _, k := range []string{"attempt", "error", "waited", "redis"} {
		if _, ok := first[k]; !ok {
			t.Errorf("redis_unavailable_waiting lacks field %q: %v", k, first)
		}
	}

	srv := redistest.StartWith(t, redisserver.Options{Port: port})
	c := srv.Client(t)
	ctx := t.Context()
	const n = 500
	recs := make([]processor.Record, n)
	for i := range recs {
		recs[i] = processor.Record{Key: fmt.Sprintf("c%d", i%20), Fields: []string{"data", fmt.Sprintf(`{"customer":"c%d","n":%d}`, i%20, i)}}
	}
	if _, err := processor.NewProducer(c, "orders", 2, 0).Send(ctx, recs); err != nil {
		t.Fatalf("produce %d events: %v", n, err)
	}
	waitFor(t, 60*time.Second, "every event in the output, none pending, /readyz 200", func() bool {
		if c.XLen(ctx, "orders:out").Val() != n {
			return false
		}
		for part := range 2 {
			pend, err := c.XPending(ctx, fmt.Sprintf("{orders:%d}", part), "orders").Result()
			if err != nil || pend.Count != 0 {
				return false
			}
		}
		code, _ := get("http://" + httpAddr + "/readyz")
		return code == http.StatusOK
	})
	if got := c.XLen(ctx, "orders:out").Val(); got != n {
		t.Errorf("outputs = %d, want %d", got, n)
	}
	if len(p.logLines("redis_available")) != 1 || len(p.logLines("eddy_started")) != 1 {
		t.Errorf("log lacks redis_available or eddy_started:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	if raw := rawRedisLog.FindString(p.stderr.String()); raw != "" {
		t.Errorf("stderr has a raw go-redis line %q; want every go-redis message through zap", raw)
	}
}

// A SIGINT while eddy waits for Redis stops it promptly with exit 0.
func TestRunInterruptedWhileWaiting(t *testing.T) {
	url := "redis://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/0"
	httpAddr := freeAddr(t)
	cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: "+httpAddr+"}\n")
	p := startEddy(t, "--redis", url, "run", "-c", cfg)
	waitFor(t, 30*time.Second, "eddy to wait for redis", func() bool { return len(p.logLines("redis_unavailable_waiting")) > 0 })
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after SIGINT while waiting = %d, want 0; log:\n%s", code, p.stderr.String())
	}
	if len(p.logLines("eddy_stopped")) != 1 {
		t.Errorf("log lacks eddy_stopped:\n%s", p.stderr.String())
	}
}

// --redis-wait bounds the wait; 0 fails at once, naming the Redis.
func TestRunRedisWaitLimit(t *testing.T) {
	for _, limit := range []string{"0", "1s"} {
		t.Run(limit, func(t *testing.T) {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
			cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: off}\n")
			p := startEddy(t, "--redis", "redis://"+addr+"/0", "run", "-c", cfg, "--redis-wait", limit)
			if code := p.wait(t, 30*time.Second); code != 1 {
				t.Fatalf("exit code = %d, want 1; log:\n%s", code, p.stderr.String())
			}
			log := p.stderr.String()
			if !strings.Contains(log, addr) || !strings.Contains(log, "does not answer") || !strings.Contains(log, "connection refused") {
				t.Errorf("error does not say which Redis is down and why:\n%s", log)
			}
			if limit != "0" && !strings.Contains(log, "--redis-wait 1s") {
				t.Errorf("error does not name the limit it reached:\n%s", log)
			}
		})
	}
	if code, _, errOut := eddy(t, "", "run", "-c", writeFile(t, "p.yaml", waitConfig), "--redis-wait=-1s"); code != 2 || !strings.Contains(errOut, "--redis-wait") {
		t.Errorf("run --redis-wait -1s = %d %q, want 2 naming the flag", code, errOut)
	}
}

// A wrong password, or none where one is needed, fails at once: waiting
// would not help.
func TestRunWrongPasswordFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "secret")
	cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: off}\n")
	for name, url := range map[string]string{
		"WRONGPASS": "redis://:wrong@" + srv.Addr() + "/0",
		"NOAUTH":    srv.URL(),
	} {
		t.Run(name, func(t *testing.T) {
			p := startEddy(t, "--redis", url, "run", "-c", cfg)
			if code := p.wait(t, 20*time.Second); code != 1 {
				t.Fatalf("exit code = %d, want 1; log:\n%s", code, p.stderr.String())
			}
			log := p.stderr.String()
			if !strings.Contains(log, name) || !strings.Contains(log, "not waiting") || len(p.logLines("redis_unavailable_waiting")) != 0 {
				t.Errorf("log does not say at once that the Redis refuses eddy (%s):\n%s", name, log)
			}
		})
	}
}

// A Redis still loading its dataset answers LOADING; eddy waits that out.
func TestRunWaitsOutLoading(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	// A dataset that takes seconds to load: 30,000 keys, loaded at 100µs
	// each (key-load-delay), the server answering LOADING between keys.
	first := redistest.StartWith(t, redisserver.Options{Dir: dir})
	c := first.Client(t)
	pipe := c.Pipeline()
	for i := range 30000 {
		pipe.Set(ctx, "k"+strconv.Itoa(i), i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE = %v", err)
	}
	first.Kill()

	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	type started struct {
		s   *redisserver.Server
		err error
	}
	loading := make(chan started, 1)
	go func() { // Start returns once the server has loaded its dataset
		s, err := redisserver.Start(ctx, redisserver.Options{Dir: dir, Port: port, ReadyTimeout: time.Minute,
			Args: []string{"--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"}})
		loading <- started{s, err}
	}()
	waitFor(t, 30*time.Second, "the server to answer LOADING", func() bool {
		err := redisserver.Ping(ctx, addr)
		return err != nil && strings.Contains(err.Error(), "LOADING")
	})

	httpAddr := freeAddr(t)
	cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: "+httpAddr+"}\n")
	p := startEddy(t, "--redis", "redis://"+addr+"/0", "run", "-c", cfg)
	waitFor(t, 60*time.Second, "/readyz 200", func() bool {
		code, _ := get("http://" + httpAddr + "/readyz")
		return code == http.StatusOK
	})
	st := <-loading
	if st.err != nil {
		t.Fatalf("start the loading server: %v", st.err)
	}
	t.Cleanup(func() { _ = st.s.Stop(context.WithoutCancel(ctx)) })
	sawLoading := false
	for _, l := range p.logLines("redis_unavailable_waiting") {
		sawLoading = sawLoading || strings.HasPrefix(l["error"].(string), "LOADING")
	}
	if !sawLoading || len(p.logLines("redis_available")) != 1 {
		t.Errorf("log lacks a wait on LOADING, or redis_available:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
}

// Every command that opens Redis sends go-redis's own messages (here the
// pool's "failed to dial") through the structured log, never as raw lines
// on stderr.
func TestRedisClientLogsThroughZap(t *testing.T) {
	dead := "redis://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))) + "/0"
	cfg := writeFile(t, "p.yaml", waitConfig+"http: {addr: off}\n")
	commands := [][]string{
		{"run", "-c", cfg, "--redis-wait", "0"},
		{"status", "-c", cfg},
		{"dlq", "list", "-c", cfg, "--pipeline", "orders"},
		{"produce", "-c", cfg, "--pipeline", "orders"},
		{"bench-baseline", "--stream", "s", "--group", "g", "--output", "o", "--seen", "x"},
	}
	for _, args := range commands {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(eddyBin, append([]string{"--redis", dead}, args...)...)
			cmd.Stdin = strings.NewReader("")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			_ = cmd.Run()
			if cmd.ProcessState.ExitCode() != 1 {
				t.Errorf("eddy %s against a dead Redis = exit %d, want 1; stderr:\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), stderr.String())
			}
			if raw := rawRedisLog.FindString(stderr.String()); raw != "" {
				t.Errorf("eddy %s: stderr has a raw go-redis line %q:\n%s", args[0], raw, stderr.String())
			}
			if !strings.Contains(stderr.String(), `"msg":"redis_client"`) || !strings.Contains(stderr.String(), "failed to dial") {
				t.Errorf("eddy %s: stderr lacks go-redis's message as a redis_client log line:\n%s", args[0], stderr.String())
			}
		})
	}
}
