package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

// httpServer serves /metrics, /healthz (the process is up) and /readyz
// (the pipelines have started and Redis answers), and with pprof set the
// Go profiler under /debug/pprof/. It starts before Redis answers: while
// eddy run waits for Redis, /healthz and /metrics answer and /readyz says
// 503 and why.
type httpServer struct {
	addr  string
	reg   *prometheus.Registry
	rdb   redis.UniversalClient
	pprof bool
	// routes are more routes to serve (a shared sources.http), by pattern.
	routes map[string]http.Handler
	// grace bounds the soft stop: once ctx is done, how long requests in
	// progress (a shared sources.http's ingest requests) may take to
	// finish before their connections are closed. The command's shutdown
	// timeout; 0: processor.DefaultShutdownTimeout.
	grace   time.Duration
	active  activeRequests
	ready   atomic.Bool
	waiting atomic.Pointer[string] // why it is not ready yet; nil: starting
}

// waitingFor records why the server is not ready yet, for /readyz.
func (s *httpServer) waitingFor(err error) {
	msg := "waiting for redis: " + err.Error()
	s.waiting.Store(&msg)
}

// paths lists what the server serves, for the log.
func (s *httpServer) paths() []string {
	out := []string{"/metrics", "/healthz", "/readyz"}
	for pattern := range s.routes {
		out = append(out, pattern)
	}
	return out
}

// listen binds s.addr (":0" picks a free port: the listener's Addr says
// which). The caller logs the address bound and passes the listener to
// Serve.
func (s *httpServer) listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr %s: cannot listen: %w", s.addr, err)
	}
	return ln, nil
}

// Serve serves on ln (closing it) until ctx is done, then shuts down in
// two phases: soft, it stops accepting and lets the requests in progress
// finish (an ingest request is answered only once Redis has its events),
// for up to s.grace; hard, past that, it closes the connections still
// open, whose requests are then answered nothing and must be resent. It
// returns once every request's handler has returned, so that the caller
// may close the Redis client they use.
func (s *httpServer) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			msg := "starting"
			if p := s.waiting.Load(); p != nil {
				msg = *p
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := s.rdb.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	for pattern, h := range s.routes {
		mux.Handle(pattern, h)
	}
	if s.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: s.active.track(mux), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	grace := s.grace
	if grace <= 0 {
		grace = processor.DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // the hard phase
	}
	// A handler still running after Close ends with its connection (its
	// request's ctx is done) or its write timeout.
	s.active.wait()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// activeRequests counts the requests being handled, so that Serve can
// wait for them.
type activeRequests struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// track wraps h so that each request is counted while h handles it; one
// that comes once wait has begun is answered 503.
func (a *activeRequests) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		a.wg.Add(1)
		a.mu.Unlock()
		defer a.wg.Done()
		h.ServeHTTP(w, r)
	})
}

// wait takes no more requests and waits for those being handled.
func (a *activeRequests) wait() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.wg.Wait()
}
