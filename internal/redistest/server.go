package redistest

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

// Server is one redis-server process started by Start: a
// redisserver.Server that the test owns. Its methods may be called from any
// goroutine; Restart and Client call tb.Fatal, so call them from the test's
// goroutine.
type Server struct {
	srv *redisserver.Server
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
	return StartWith(tb, redisserver.Options{Args: args})
}

// StartWith starts a redis-server as o says (see redisserver.Options), for
// a test that needs more than Start offers: a fixed Port, a Dir prepared
// beforehand (an RDB file to load, say), a longer ReadyTimeout, TLS (with
// certificates from NewCerts: o.TLS = certs.ServerTLS(tb, false)). An empty
// o.Dir is a tb.TempDir. The server is stopped when the test ends, as
// Start's are; StartWith fails the test as Start does, and also when a
// fixed o.Port is taken.
func StartWith(tb testing.TB, o redisserver.Options) *Server {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir() // removed after the server is stopped: cleanups run last-in first-out
	}
	srv, err := redisserver.Start(tb.Context(), o)
	if errors.Is(err, redisserver.ErrNotFound) {
		tb.Fatalf("redistest: %v — .ci/run does", err)
	}
	if err != nil {
		tb.Fatalf("redistest: start redis-server: %v", err)
	}
	s := &Server{srv: srv}
	tb.Cleanup(s.stop)
	return s
}

// Addr is the server's "host:port".
func (s *Server) Addr() string { return s.srv.Addr() }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.srv.Dir() }

// URL is the server's database 0 as a redis:// URL, or rediss:// for a
// server with TLS.
func (s *Server) URL() string { return s.srv.URL() }

// Client returns a new client of the server, closed when the test ends;
// over TLS (its Options.TLS.Client) for a server with TLS.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	o := &redis.Options{Addr: s.Addr()}
	if t := s.srv.TLS(); t != nil {
		o.TLSConfig = t.Client
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the server with SIGKILL, as a crash or a lost host would, and
// returns once it has exited. Clients see connection errors until Restart.
// Kill does nothing if the server is not running.
func (s *Server) Kill() { s.srv.Kill() }

// Restart starts the server again on the same port, with the same data
// directory and arguments, stopping it first (SIGTERM) if it is running.
// With the default persistence settings the data does not survive; pass
// "--appendonly", "yes" to Start for a server whose data does.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.srv.Restart(tb.Context()); err != nil {
		tb.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
	}
}

// stop ends the server at the test's end: SIGTERM, then SIGKILL. The
// test's own context is done by then, so the wait gets one without its
// cancellation; StopTimeout still bounds it.
func (s *Server) stop() {
	_ = s.srv.Stop(context.Background())
}
