package redisserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultReadyTimeout is Options.ReadyTimeout's default.
	DefaultReadyTimeout = 5 * time.Second
	// DefaultStopTimeout is Options.StopTimeout's default.
	DefaultStopTimeout = 3 * time.Second
	// portAttempts is how many free ports Start tries when another process
	// takes the chosen one between our probe and the server's bind.
	portAttempts = 5
	// logTailLines is how much of the server's log a start error quotes.
	logTailLines = 30
	// readyPoll is how often the ready wait sends PING.
	readyPoll = 20 * time.Millisecond
	// LogFile is the name of the server's log in its data directory.
	LogFile = "redis-server.log"
)

var (
	// ErrNotFound is returned by Start when Options.Bin is empty and there
	// is no redis-server on PATH.
	ErrNotFound = errors.New("redis-server not found on PATH; install it (apt-get install -y redis-server)")
	// ErrPortInUse is wrapped by Start's error when the server could not
	// bind its port (its log says "Address already in use").
	ErrPortInUse = errors.New("port already in use")
)

// Options say how Start runs redis-server. Only Dir is required.
type Options struct {
	// Bin is the redis-server binary. Default (""): redis-server on PATH;
	// Start returns ErrNotFound when there is none.
	Bin string
	// Dir is the server's data directory (--dir), which also holds its log,
	// LogFile. Required; the caller creates it and removes it after Stop.
	Dir string
	// Port is the 127.0.0.1 port the server listens on (its TLS port with
	// TLS). Default (0): a free port chosen by the kernel, and another (up
	// to 5 in all) when a different process takes it before the server
	// binds it. A fixed Port is tried once: Start's error wraps
	// ErrPortInUse when it is taken.
	Port int
	// Args are appended to the command line after the defaults, so they
	// override them: --save "" --appendonly no (no persistence) --bind
	// 127.0.0.1 --port Port --dir Dir, and with TLS the --tls-* options.
	// Example: "--appendonly", "yes".
	Args []string
	// ReadyTimeout bounds the wait, after each start, until the server
	// answers PING: PONG, or NOAUTH from a server started with
	// --requirepass (a server loading a large dataset answers LOADING until
	// it is done). Default (0): DefaultReadyTimeout, 5s.
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop and Restart give the server to exit
	// after SIGTERM before they send SIGKILL. Default (0):
	// DefaultStopTimeout, 3s.
	StopTimeout time.Duration
	// TLS, when set, makes the server speak TLS only, on Port (--port 0
	// --tls-port Port), replication and the cluster bus included; the wait
	// until it answers then pings over TLS. Default (nil): no TLS.
	TLS *TLS
}

// TLS is how a server started by Start speaks TLS. The files are PEM.
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key
	// (--tls-cert-file, --tls-key-file), which it also shows as a client
	// to other nodes (cluster bus, replication). Required.
	CertFile, KeyFile string
	// CAFile holds the CAs that certificates of clients and other nodes
	// must chain to (--tls-ca-cert-file). Required: redis-server wants one
	// even when it asks clients for no certificate.
	CAFile string
	// AuthClients makes the server require a client certificate
	// (--tls-auth-clients yes). Default false: --tls-auth-clients no.
	AuthClients bool
	// Client is the client configuration of Ping and the ready wait: it
	// must trust the server's certificate, and carry a client certificate
	// when AuthClients is set. Required.
	Client *tls.Config
}

// Server is one redis-server started by Start. Its methods may be called
// from any goroutine; exactly one caller gets to stop each run of the
// process.
type Server struct {
	o    Options // with Bin resolved and defaults set
	port int     // fixed once Start returns

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

// Start runs redis-server as o says and returns once it answers PING. ctx
// bounds that wait (as does o.ReadyTimeout) but not the server, which runs
// until Stop or Kill. On an error no process is left running, and the error
// quotes the end of the server's log.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("redisserver: Options.Dir is required")
	}
	if o.Bin == "" {
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, ErrNotFound
		}
		o.Bin = bin
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if t := o.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" || t.Client == nil) {
		return nil, errors.New("redisserver: Options.TLS needs CertFile, KeyFile, CAFile and Client")
	}
	s := &Server{o: o, port: o.Port}
	if o.Port != 0 {
		if err := s.start(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort(ctx)
		if err != nil {
			return nil, fmt.Errorf("find a free port for redis-server: %w", err)
		}
		s.port = port
		err = s.start(ctx)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrPortInUse) || attempt == portAttempts {
			return nil, err
		}
	}
}

// Addr is the server's "host:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is the server's database 0 as a redis:// URL, or rediss:// for a
// server with TLS.
func (s *Server) URL() string {
	if s.o.TLS != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// TLS is how the server speaks TLS, as Options.TLS said; nil for none.
func (s *Server) TLS() *TLS { return s.o.TLS }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.o.Dir }

// LogPath is the server's log file, LogFile in Dir. Every run of the
// server appends to it.
func (s *Server) LogPath() string { return filepath.Join(s.o.Dir, LogFile) }

// Pid is the process id of the running server, or 0 if none runs.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// LogTail returns the last n lines of the server's log (a note instead if
// it cannot be read).
func (s *Server) LogTail(n int) string {
	return string(tail(s.logSince(0), n))
}

// Stop ends the server gracefully with SIGTERM (with the default Args it
// saves nothing) and waits for it to exit. If it has not exited after
// StopTimeout, or when ctx is done, it is sent SIGKILL, and Stop returns an
// error saying so once the process is gone. Stop does nothing if the
// server is not running.
func (s *Server) Stop(ctx context.Context) error {
	p := s.take()
	if p == nil || p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = signal(pid, syscall.SIGTERM)
	t := time.NewTimer(s.o.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = signal(pid, syscall.SIGKILL)
	<-p.done
	if ctx.Err() != nil {
		return fmt.Errorf("redis-server on %s: killed before it exited after SIGTERM: %w", s.Addr(), ctx.Err())
	}
	return fmt.Errorf("redis-server on %s did not exit within %v of SIGTERM; killed it", s.Addr(), s.o.StopTimeout)
}

// Kill ends the server with SIGKILL, as a crash or a lost host would, and
// returns once it has exited. Kill does nothing if the server is not
// running.
func (s *Server) Kill() {
	p := s.take()
	if p == nil || p.exited() {
		return
	}
	_ = signal(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Restart starts the server again on the same port, with the same data
// directory and arguments, stopping it first (as Stop does) if it is
// running, and returns once it answers PING. With the default persistence
// settings the data does not survive; Args "--appendonly", "yes" make a
// server whose data does.
func (s *Server) Restart(ctx context.Context) error {
	_ = s.Stop(ctx) // a server that had to be killed is stopped all the same
	return s.start(ctx)
}

// start runs redis-server on s.port and waits until it answers PING. On
// failure the process is gone and the error quotes what the server logged
// in this run.
func (s *Server) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
		"--dir", s.o.Dir,
	}
	if t := s.o.TLS; t != nil {
		auth := "no"
		if t.AuthClients {
			auth = "yes"
		}
		argv = append(argv,
			"--port", "0", // the last --port wins: no plain port
			"--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", t.CertFile,
			"--tls-key-file", t.KeyFile,
			"--tls-ca-cert-file", t.CAFile,
			"--tls-auth-clients", auth,
			"--tls-replication", "yes",
			"--tls-cluster", "yes",
		)
	}
	cmd := exec.Command(s.o.Bin, append(argv, s.o.Args...)...) //nolint:noctx // the server outlives ctx; Stop and Kill end it
	cmd.Dir = s.o.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	Detach(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", s.o.Bin, err)
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

	if err := s.waitReady(ctx, p); err != nil {
		s.Kill()
		log := s.logSince(logStart)
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		return fmt.Errorf("%w\n--- end of %s ---\n%s", err, s.LogPath(), tail(log, logTailLines))
	}
	return nil
}

// waitReady polls PING until the server answers (PONG, or NOAUTH from a
// server with a password), exits, ctx is done or ReadyTimeout passes.
func (s *Server) waitReady(parent context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(parent, s.o.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var err error // the last Ping's, or the one before if ctx cut the last one short
	var cfg *tls.Config
	if s.o.TLS != nil {
		cfg = s.o.TLS.Client
	}
	for {
		perr := PingTLS(ctx, s.Addr(), cfg)
		if answers(perr) {
			return nil
		}
		if err == nil || ctx.Err() == nil {
			err = perr
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server on %s exited before answering PING (%v)", s.Addr(), p.cmd.ProcessState)
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("redis-server on %s: wait for PING cut short: %w (last: %w)", s.Addr(), parent.Err(), err)
			}
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %w", s.Addr(), s.o.ReadyTimeout, err)
		case <-tick.C:
		}
	}
}

// take detaches the running process from s, so that exactly one caller
// stops it.
func (s *Server) take() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// logSince returns the server's log from byte offset off on.
func (s *Server) logSince(off int64) []byte {
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		return fmt.Appendf(nil, "(cannot read log: %v)", err)
	}
	if off > int64(len(b)) {
		off = 0
	}
	return b[off:]
}

// tail returns the last n lines of b, without the final newline.
func tail(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
