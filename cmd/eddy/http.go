package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
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
	routes  map[string]http.Handler
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

// Run listens until ctx is done, then shuts down within 2s.
func (s *httpServer) Run(ctx context.Context) error {
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
	var lc net.ListenConfig
	if s.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("http.addr %s: %w", s.addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
