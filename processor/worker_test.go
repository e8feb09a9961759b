package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Crash tests run the test binary itself as a worker process (the
// EDDY_TEST_WORKER environment variable selects the mode), so that a real
// process can be killed with SIGKILL or can crash on a poison entry.

func TestMain(m *testing.M) {
	if mode := os.Getenv("EDDY_TEST_WORKER"); mode != "" {
		os.Exit(runTestWorker(mode))
	}
	os.Exit(m.Run())
}

// workerOptions are the options every test worker shares.
func workerOptions(consumer string, h Handler) Options {
	return Options{
		Pipeline: "t", Stream: "in", Consumer: consumer,
		Decoder: jsonDecoder, Handler: h,
		BatchSize: 50, Lanes: 8, Block: 100 * time.Millisecond,
		MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		ReclaimAfter: time.Second, ReclaimInterval: 200 * time.Millisecond,
		Heartbeat: 200 * time.Millisecond, SessionTimeout: 1500 * time.Millisecond,
		DedupeWindow: time.Hour, ShutdownTimeout: 3 * time.Second,
	}
}

// emitHandler writes one output per entry: its key, dedupe id and seq.
func emitHandler(ctx context.Context, m *Message) error {
	v := m.Data.(map[string]any)
	m.Emit("out", 0, "key", m.Key, "id", m.DedupeID, "seq", fmt.Sprint(v["seq"]), "src", m.ID)
	return nil
}

func runTestWorker(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var rdb redis.UniversalClient
	if addrs := os.Getenv("EDDY_TEST_CLUSTER"); addrs != "" {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ","), ContextTimeoutEnabled: true})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: os.Getenv("EDDY_TEST_REDIS"), ContextTimeoutEnabled: true})
	}
	defer rdb.Close()
	h := HandlerFunc(emitHandler)
	switch mode {
	case "slow": // a few ms per entry, so a kill lands mid-batch
		h = func(ctx context.Context, m *Message) error {
			select {
			case <-time.After(3 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			// A second output in the partition's slot ("in" has one partition):
			// on Redis Cluster it stays in the atomic commit, "out" does not.
			v := m.Data.(map[string]any)
			m.Emit("{in}:out", 0, "key", m.Key, "id", m.DedupeID, "seq", fmt.Sprint(v["seq"]))
			return emitHandler(ctx, m)
		}
	case "poison": // the process dies on every entry marked poison
		h = func(ctx context.Context, m *Message) error {
			if m.Data.(map[string]any)["poison"] == true {
				fmt.Fprintln(os.Stderr, "poison entry", m.ID, "attempt", m.Attempt)
				os.Exit(2)
			}
			return emitHandler(ctx, m)
		}
	case "crash-before-commit": // dies once, after handling the target, before its commit
		marker, target := os.Getenv("EDDY_TEST_MARKER"), os.Getenv("EDDY_TEST_TARGET")
		testHookBeforeCommit = func(batch []*task) {
			for _, t := range batch {
				if t.m.DedupeID == target {
					if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
						_ = os.WriteFile(marker, nil, 0o600)
						os.Exit(3)
					}
				}
			}
		}
	case "stuck": // every entry takes far longer than the shutdown timeout
		h = func(ctx context.Context, m *Message) error {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	var states []string
	switch mode {
	case "count": // read-modify-write of a per-key counter and a HyperLogLog, 5% transient failures
		states = []string{"c"}
		h = countHandler
	case "timers": // events set timers; firings emit what fired and when
		h = timerHandler
	}
	o := workerOptions(os.Getenv("EDDY_TEST_CONSUMER"), h)
	o.StateNames = states
	o.TimerTick = 50 * time.Millisecond
	if mode == "count" || mode == "timers" {
		o.MaxAttempts = 20 // kills redeliver entries; none may reach max_deliveries
	}
	if os.Getenv("EDDY_TEST_LOG") != "" {
		o.Logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zap.InfoLevel))
	}
	if s := os.Getenv("EDDY_TEST_PARTITIONS"); s != "" {
		o.Partitions, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("EDDY_TEST_SHUTDOWN"); s != "" {
		o.ShutdownTimeout, _ = time.ParseDuration(s)
	}
	p, err := New(rdb, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// worker is a test worker process.
type worker struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	exited chan struct{}
	err    error
}

// syncBuffer is a bytes.Buffer that a process's output copier may write
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startWorker(tb testing.TB, addr, mode, consumer string, env ...string) *worker {
	tb.Helper()
	w := &worker{exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), "EDDY_TEST_WORKER="+mode, "EDDY_TEST_CONSUMER="+consumer)
	if addr != "" {
		w.cmd.Env = append(w.cmd.Env, "EDDY_TEST_REDIS="+addr)
	}
	// The race runtime sleeps 1s before exiting unless told not to; exit
	// times are measured here.
	w.cmd.Env = append(w.cmd.Env, "GORACE=atexit_sleep_ms=0")
	w.cmd.Env = append(w.cmd.Env, env...)
	w.cmd.Stderr = &w.stderr
	if err := w.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.exited) }()
	tb.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
	return w
}

// exitCode waits up to d for the worker to exit and returns its exit code.
func (w *worker) exitCode(tb testing.TB, d time.Duration) int {
	tb.Helper()
	select {
	case <-w.exited:
	case <-time.After(d):
		tb.Fatalf("worker did not exit within %v; stderr:\n%s", d, w.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(w.err, &ee) {
		return ee.ExitCode()
	}
	if w.err != nil {
		tb.Fatal(w.err)
	}
	return 0
}

// event returns the JSON payload of a test event.
func event(key string, seq int, extra ...string) string {
	v := map[string]any{"k": key, "id": key + "-" + strconv.Itoa(seq), "seq": seq}
	for i := 0; i+1 < len(extra); i += 2 {
		v[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// countHandler counts a key's events three ways: a counter read from the
// key's state and written back (HSET), an increment (HINCRBY), and the
// event's user added to a HyperLogLog. One attempt in 20 fails first.
func countHandler(_ context.Context, m *Message) error {
	v := m.Data.(map[string]any)
	if m.Attempt == 1 && fnv32a(m.ID)%20 == 0 {
		return errors.New("injected transient failure")
	}
	st, err := m.State("c")
	if err != nil {
		return err
	}
	n := st.Int("n") + 1
	m.StateSet("c", "n", strconv.FormatInt(n, 10), "last_seq", fmt.Sprint(v["seq"]))
	m.StateIncr("c", "incr", 1)
	m.AddDistinct("users", fmt.Sprint(v["user"]))
	return nil
}

// timerHandler sets the timer an event names (fields "timer", "due" in
// unix ms) and, when one fires, emits it to "fired" with the time the
// handler saw.
func timerHandler(_ context.Context, m *Message) error {
	if t := m.Timer; t != nil {
		m.Emit("{in}:fired", 0, "key", t.Key, "name", t.Name, "due", strconv.FormatInt(t.At.UnixMilli(), 10),
			"at", strconv.FormatInt(time.Now().UnixMilli(), 10), "payload", t.Payload)
		return nil
	}
	v := m.Data.(map[string]any)
	due, _ := v["due"].(float64)
	m.SetTimer(fmt.Sprint(v["timer"]), time.UnixMilli(int64(due)), fmt.Sprint(v["seq"]))
	return nil
}
