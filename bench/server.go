package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedisServer is returned by StartServer when redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server not found: install it (apt-get install -y redis-server) or pass --redis URL")

const (
	// serverReadyTimeout bounds the wait for a new server to answer PING.
	serverReadyTimeout = 5 * time.Second
	// serverStopTimeout is how long a server gets to exit after SHUTDOWN
	// NOSAVE before it is killed.
	serverStopTimeout = 5 * time.Second
	// serverPortAttempts is how many free ports StartServer tries when
	// another process takes the chosen one before the server binds it.
	serverPortAttempts = 5
)

// Server is a redis-server process of the benchmark's own, on a free
// loopback port, without persistence.
type Server struct {
	cmd  *exec.Cmd
	addr string
	log  string
	done chan struct{} // closed once the process has exited and been reaped
}

// StartServer starts redis-server on a free 127.0.0.1 port with dir as its
// data directory (and log file) and persistence off, and returns once it
// answers PING. The caller stops it with Stop, or Kill on an error path.
func StartServer(ctx context.Context, dir string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	for attempt := 1; ; attempt++ {
		port, err := freePort(ctx)
		if err != nil {
			return nil, fmt.Errorf("find a free port for redis-server: %w", err)
		}
		s, err := startServer(ctx, bin, dir, port)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == serverPortAttempts {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port already in use")

func startServer(ctx context.Context, bin, dir string, port int) (*Server, error) {
	s := &Server{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		log:  filepath.Join(dir, "redis-server-"+strconv.Itoa(port)+".log"),
		done: make(chan struct{}),
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	//nolint:noctx // the server outlives ctx's calls; Stop and Kill end it
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	s.cmd.Dir, s.cmd.Stdout, s.cmd.Stderr = dir, logf, logf
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		_ = logf.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Kill()
		log, _ := os.ReadFile(s.log)
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, fmt.Errorf("%w\n--- %s ---\n%s", err, s.log, bytes.TrimSpace(log))
	}
	return s, nil
}

// waitReady polls PING every 20ms until the server answers, exits, or
// serverReadyTimeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, serverReadyTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 250 * time.Millisecond})
	defer c.Close() //nolint:errcheck // a probe client
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on %s exited before answering PING (%v)", s.addr, s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %w", s.addr, serverReadyTimeout, err)
		case <-tick.C:
		}
	}
}

// URL is the server's database 0 as a redis:// URL.
func (s *Server) URL() string { return "redis://" + s.addr + "/0" }

// Stop ends the server with SHUTDOWN NOSAVE and waits for it to exit,
// killing it if it has not within 5s.
func (s *Server) Stop(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close() //nolint:errcheck // a one-command client
	// The server closes the connection instead of replying: an error here
	// is what success looks like, and waiting for the exit is the check.
	_ = c.ShutdownNoSave(ctx).Err()
	t := time.NewTimer(serverStopTimeout)
	defer t.Stop()
	select {
	case <-s.done:
		return nil
	case <-t.C:
		s.Kill()
		return fmt.Errorf("redis-server on %s did not exit within %v of SHUTDOWN NOSAVE; killed it", s.addr, serverStopTimeout)
	}
}

// Kill ends the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; StartServer then tries another.
func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close() //nolint:errcheck // a port probe
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
	}
	return addr.Port, nil
}
