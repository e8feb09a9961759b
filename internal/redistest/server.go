package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds the wait for a new server to answer PING.
	readyTimeout = 5 * time.Second
	// stopTimeout is how long a server gets to exit after SIGTERM before it
	// is sent SIGKILL.
	stopTimeout = 3 * time.Second
	// portAttempts is how many free ports Start tries when another process
	// takes the chosen one between our probe and the server's bind.
	portAttempts = 5
	// logTailLines is how much of the server's log a start error quotes.
	logTailLines = 30
)

// errPortInUse reports that the server could not bind its port.
var errPortInUse = errors.New("port already in use")

// Server is one redis-server process started by Start. Its methods may be
// called from any goroutine; Restart and Client call tb.Fatal, so call them
// from the test's goroutine.
type Server struct {
	bin     string
	dir     string
	logPath string
	args    []string
	port    int // fixed once Start returns

	mu   sync.Mutex
	proc *process // nil while the server is not running
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// exited reports whether the process has exited already; its process group
// id may then be reused, so it must not be signalled.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a redis-server on a free loopback port with a data directory
// of its own (tb.TempDir), persistence off (--save "" --appendonly no) and
// args appended to its command line, e.g. "--appendonly", "yes". It returns
// once the server answers PING and stops it when the test ends: SIGTERM,
// then SIGKILL after 3s.
//
// Start fails the test if redis-server is not on PATH or does not answer
// PING within 5s; the failure quotes the end of the server's log.
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatal("redistest: redis-server not found; install it (apt-get install -y redis-server) — .ci/run does")
	}
	return startOn(tb, bin, tb.TempDir(), freePort, args...)
}

// startOn starts a server with data directory dir on a port from pick,
// trying another port when the one picked turns out to be taken.
func startOn(tb testing.TB, bin, dir string, pick func() (int, error), args ...string) *Server {
	tb.Helper()
	s := &Server{
		bin:     bin,
		dir:     dir, // a TempDir, removed after the server is stopped: cleanups run last-in first-out
		logPath: filepath.Join(dir, "redis-server.log"),
		args:    args,
	}
	tb.Cleanup(s.stop)
	for attempt := 1; ; attempt++ {
		port, err := pick()
		if err != nil {
			tb.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		err = s.start()
		if err == nil {
			return s
		}
		// A taken cluster bus port is logged as "Address already in use" too.
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			tb.Fatalf("redistest: start redis-server: %v", err)
		}
	}
}

// Addr is the server's "host:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is the server's database 0 as a redis:// URL.
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Dir is the server's data directory.
func (s *Server) Dir() string {
	return s.dir
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the server with SIGKILL, as a crash or a lost host would, and
// returns once it has exited. Clients see connection errors until Restart.
// Kill does nothing if the server is not running.
func (s *Server) Kill() {
	p := s.take()
	if p == nil || p.exited() {
		return
	}
	_ = signal(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Restart starts the server again on the same port, with the same data
// directory and arguments, stopping it first (SIGTERM) if it is running.
// With the default persistence settings the data does not survive; pass
// "--appendonly", "yes" to Start for a server whose data does.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.stop()
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
	}
}

// start runs redis-server on s.port and waits until it answers PING. On
// failure the process is gone and the error quotes the server's log.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var logStart int64
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	argv := []string{
		"--save", "",
		"--appendonly", "no",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--dir", s.dir,
	}
	cmd := exec.Command(s.bin, append(argv, s.args...)...) //nolint:noctx // the server outlives any one call; Cleanup stops it
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	detach(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(p); err != nil {
		s.Kill()
		log := s.logSince(logStart)
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("%w\n--- end of %s ---\n%s", err, s.logPath, tail(log, logTailLines))
	}
	return nil
}

// waitReady polls PING until the server answers, exits, or readyTimeout passes.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ping(ctx, s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server on %s exited before answering PING (%v)", s.Addr(), p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %w", s.Addr(), readyTimeout, err)
		case <-tick.C:
		}
	}
}

// ping sends one PING over a new connection and wants +PONG back. It speaks
// RESP itself rather than through go-redis, whose pool retries and logs each
// refused dial while the server is still coming up.
func ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line) // e.g. -LOADING while a large dataset loads
	}
	return nil
}

// stop ends the running server gracefully (SIGTERM), or with SIGKILL if it
// has not exited after stopTimeout. It does nothing if none is running.
func (s *Server) stop() {
	p := s.take()
	if p == nil || p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = signal(pid, syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = signal(pid, syscall.SIGKILL)
		<-p.done
	}
}

// take detaches the running process from s, so that exactly one caller stops it.
func (s *Server) take() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// logSince returns the server's log from byte offset off on.
func (s *Server) logSince(off int64) []byte {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return []byte(fmt.Sprintf("(cannot read log: %v)", err))
	}
	if off > int64(len(b)) {
		off = 0
	}
	return b[off:]
}

// tail returns the last n lines of b.
func tail(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; Start then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe, closed at once
	if err != nil {
		return 0, err
	}
	addr, ok := l.Addr().(*net.TCPAddr)
	_ = l.Close()
	if !ok {
		return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
	}
	return addr.Port, nil
}
