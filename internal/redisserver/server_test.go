package redisserver

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// start starts a server for the test, with a data directory of its own,
// and stops it when the test ends.
func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Start(t.Context(), o)
	if err != nil {
		t.Fatalf("Start(%+v) = %v", o, err)
	}
	t.Cleanup(func() { _ = s.Stop(context.WithoutCancel(t.Context())) })
	return s
}

// gone reports whether no process pid exists any more (Linux: /proc).
func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

func needProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs /proc to check that the server is gone")
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	needProc(t)
	s := start(t, Options{})
	if err := Ping(t.Context(), s.Addr()); err != nil {
		t.Fatalf("Ping(%s) = %v, want nil", s.Addr(), err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Addr() != "127.0.0.1:"+strconv.Itoa(s.Port()) {
		t.Errorf("Addr() = %q, Port() = %d, want 127.0.0.1:<port>", s.Addr(), s.Port())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	pid := s.Pid()
	if pid == 0 {
		t.Fatal("Pid() of a running server = 0")
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("Stop = %v, want nil (SIGTERM is enough)", err)
	}
	if !gone(pid) {
		t.Errorf("redis-server %d still there after Stop", pid)
	}
	if s.Pid() != 0 {
		t.Errorf("Pid() after Stop = %d, want 0", s.Pid())
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("second Stop = %v, want nil (nothing to do)", err)
	}
	if err := Ping(t.Context(), s.Addr()); err == nil {
		t.Error("Ping after Stop = nil, want an error")
	}
}

// Stop with a done ctx does not wait for SIGTERM to work: it kills.
func TestStopWithDoneContextKills(t *testing.T) {
	t.Parallel()
	needProc(t)
	s := start(t, Options{})
	pid := s.Pid()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop(done ctx) = %v, want an error wrapping context.Canceled", err)
	}
	if !gone(pid) {
		t.Errorf("redis-server %d still there after Stop", pid)
	}
}

func TestFixedPort(t *testing.T) {
	t.Parallel()
	port, err := FreePort(t.Context())
	if err != nil {
		t.Fatalf("FreePort = %v", err)
	}
	s := start(t, Options{Port: port})
	if s.Port() != port {
		t.Errorf("Port() = %d, want %d", s.Port(), port)
	}
	if err := Ping(t.Context(), "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Errorf("Ping on the fixed port = %v, want nil", err)
	}
}

// A fixed port that is taken fails with ErrPortInUse, the error Start's
// own port search retries on.
func TestFixedPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen = %v", err)
	}
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = Start(t.Context(), Options{Dir: t.TempDir(), Port: port})
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("Start on a port in use = %v, want ErrPortInUse quoting the log", err)
	}
}

func TestArgsAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, Options{Dir: dir, Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	if s.Dir() != dir || s.LogPath() != dir+"/"+LogFile {
		t.Errorf("Dir(), LogPath() = %q, %q, want %q and the log in it", s.Dir(), s.LogPath(), dir)
	}
	if !strings.Contains(s.LogTail(100), "Ready to accept connections") {
		t.Errorf("LogTail(100) = %q, want the server's ready line", s.LogTail(100))
	}
	if _, err := os.Stat(dir + "/appendonlydir"); err != nil {
		t.Errorf("no appendonlydir in the data dir with --appendonly yes: %v", err)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	needProc(t)
	s := start(t, Options{})
	pid := s.Pid()
	s.Kill()
	if !gone(pid) {
		t.Errorf("redis-server %d still there after Kill", pid)
	}
	s.Kill() // a second Kill is harmless
	if err := s.Restart(t.Context()); err != nil {
		t.Fatalf("Restart = %v", err)
	}
	if err := Ping(t.Context(), s.Addr()); err != nil {
		t.Errorf("Ping after Restart = %v, want nil", err)
	}
	if err := s.Restart(t.Context()); err != nil { // a running server is stopped first
		t.Fatalf("Restart of a running server = %v", err)
	}
	if err := Ping(t.Context(), s.Addr()); err != nil {
		t.Errorf("Ping after a second Restart = %v, want nil", err)
	}
}

func TestStartFailureQuotesLog(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{Dir: t.TempDir(), Args: []string{"--no-such-option", "1"}})
	if err == nil || !strings.Contains(err.Error(), "exited before answering PING") || !strings.Contains(err.Error(), "no-such-option") {
		t.Errorf("Start with a bad option = %v, want the exit and the log line naming the option", err)
	}
}

// A ctx that ends during the ready wait ends the start, and no server is
// left behind.
func TestStartContextDone(t *testing.T) {
	t.Parallel()
	port, err := FreePort(t.Context())
	if err != nil {
		t.Fatalf("FreePort = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = Start(ctx, Options{Dir: t.TempDir(), Port: port})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a done ctx = %v, want an error wrapping context.Canceled", err)
	}
	if err := Ping(t.Context(), "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		t.Error("a server answers PING after Start failed, want none left")
	}
}

func TestStartWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // not parallel: Setenv changes the whole process
	if _, err := Start(t.Context(), Options{Dir: t.TempDir()}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Start without redis-server on PATH = %v, want ErrNotFound", err)
	}
	if !strings.Contains(ErrNotFound.Error(), "apt-get install -y redis-server") {
		t.Errorf("ErrNotFound = %q, want it to say how to install redis-server", ErrNotFound)
	}
}

func TestStartWithoutDir(t *testing.T) {
	t.Parallel()
	if _, err := Start(t.Context(), Options{}); err == nil || !strings.Contains(err.Error(), "Dir is required") {
		t.Errorf("Start without Dir = %v, want an error asking for it", err)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"\n\na", 1, "a"},
	}
	for _, tt := range tests {
		if got := string(tail([]byte(tt.in), tt.n)); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// A server with a password is ready once it answers, NOAUTH included.
func TestStartWithPassword(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Args: []string{"--requirepass", "secret"}})
	err := Ping(t.Context(), s.Addr())
	var re ReplyError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "NOAUTH ") {
		t.Errorf("Ping without the password = %v, want a NOAUTH ReplyError", err)
	}
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, true},
		{ReplyError("NOAUTH Authentication required."), true},
		{ReplyError("LOADING Redis is loading the dataset in memory"), false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
	}
	for _, tt := range tests {
		if got := answers(tt.err); got != tt.want {
			t.Errorf("answers(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
