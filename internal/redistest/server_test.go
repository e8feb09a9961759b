package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

// testCtx returns a context bounded well under the test timeout.
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// mustPing fails the test unless c answers PING.
func mustPing(tb testing.TB, ctx context.Context, c *redis.Client) {
	tb.Helper()
	if err := c.Ping(ctx).Err(); err != nil {
		tb.Fatalf("PING = %v, want nil", err)
	}
}

func TestStartPing(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := Start(t)
	c := s.Client(t)
	mustPing(t, ctx, c)

	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:<port>", s.Addr())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("redis.ParseURL(%q) = %v", s.URL(), err)
	}
	if opt.Addr != s.Addr() {
		t.Errorf("ParseURL(URL()).Addr = %q, want %q", opt.Addr, s.Addr())
	}
}

func TestStartArgs(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tests := []struct {
		name  string
		args  []string
		param string
		want  string
	}{
		{"defaults", nil, "appendonly", "no"},
		{"no save points", nil, "save", ""},
		{"data dir", nil, "dir", ""}, // checked against Dir() below
		{"extra args", []string{"--maxmemory-policy", "noeviction", "--hz", "50"}, "hz", "50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.args...)
			want := tt.want
			if tt.param == "dir" {
				want = s.Dir()
			}
			got, err := s.Client(t).ConfigGet(ctx, tt.param).Result()
			if err != nil {
				t.Fatalf("CONFIG GET %s = %v", tt.param, err)
			}
			if got[tt.param] != want {
				t.Errorf("CONFIG GET %s = %q, want %q", tt.param, got[tt.param], want)
			}
		})
	}
}

func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share address %s", a.Addr())
	}
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatalf("SET on a = %v", err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k on b = %v, want redis.Nil", err)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := Start(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET = %v", err)
	}

	s.Kill()
	if err := redisserver.Ping(ctx, s.Addr()); err == nil {
		t.Fatal("PING after Kill = nil, want an error")
	}
	s.Kill() // a second Kill is harmless

	s.Restart(t)
	mustPing(t, ctx, c) // the same client reconnects: same address
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after Kill and Restart without persistence = %v, want redis.Nil", err)
	}

	s.Restart(t) // restarting a running server stops it first
	mustPing(t, ctx, c)
}

func TestRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET = %v", err)
	}
	s.Kill()
	s.Restart(t)
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Errorf("GET k after Kill and Restart with appendonly = %q, %v, want \"v\", nil", got, err)
	}
}

func TestStartFailureQuotesLog(t *testing.T) {
	t.Parallel()
	msg := startFails(t, "--no-such-option", "1")
	if !strings.Contains(msg, "exited before answering PING") || !strings.Contains(msg, "no-such-option") {
		t.Errorf("Start with a bad option failed with %q, want the exit and the log line naming the option", msg)
	}
}

// StartWith on a fixed port runs the server there; on a taken fixed port
// it fails the test saying so (a free port is never taken: redisserver
// tries another).
func TestStartWithFixedPort(t *testing.T) {
	t.Parallel()
	port, err := redisserver.FreePort(testCtx(t))
	if err != nil {
		t.Fatalf("FreePort = %v", err)
	}
	s := StartWith(t, redisserver.Options{Port: port})
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(port)); s.Addr() != want {
		t.Errorf("Addr() = %q, want %q", s.Addr(), want)
	}
	mustPing(t, testCtx(t), s.Client(t))
}

func TestStartOnTakenPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen = %v", err)
	}
	defer func() { _ = l.Close() }()
	msg := fatalOf(t, func(tb testing.TB) {
		StartWith(tb, redisserver.Options{Port: l.Addr().(*net.TCPAddr).Port})
	})
	if !strings.Contains(msg, redisserver.ErrPortInUse.Error()) || !strings.Contains(msg, "Address already in use") {
		t.Errorf("StartWith on a port in use failed with %q, want it to say the port is in use, quoting the log", msg)
	}
}

func TestStartWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // not parallel: Setenv changes the whole process
	msg := startFails(t)
	if !strings.Contains(msg, "redis-server not found") || !strings.Contains(msg, "apt-get install -y redis-server") {
		t.Errorf("Start without redis-server on PATH failed with %q, want it to say how to install it", msg)
	}
}

// startFails runs Start(args...) with a TB whose Fatal is recorded, and
// returns the message it failed with ("" if it did not fail).
func startFails(t *testing.T, args ...string) string {
	t.Helper()
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // fatalRecorder panics to stop Start, as FailNow would
		Start(ft, args...)
	}()
	<-done
	return ft.msg
}

// fatalRecorder records the message of Fatal/Fatalf and panics instead of
// ending the test; everything else goes to the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(f)
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}
