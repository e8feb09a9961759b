package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

func ingestCommand(g *globals) *cobra.Command {
	var file, httpAddr string
	var redisWaitLimit time.Duration
	cmd := &cobra.Command{
		Use:   "ingest -c FILE",
		Short: "Run the config file's ingest sources (HTTP, MQTT) without workers, until SIGINT or SIGTERM",
		Long: `Runs the sources section of FILE: the HTTP endpoint (sources.http) and the
MQTT subscriptions (sources.mqtt), appending what arrives to the pipelines'
input streams, with no workers: ingest scales apart from processing, and
eddy run --no-sources leaves the sources to it. /metrics, /healthz and
/readyz are served on http.addr (--http), as eddy run serves them.

It needs a real Redis (a redis section or --redis) and waits for it at start
(--redis-wait). On SIGINT or SIGTERM it stops taking new requests and
messages, finishes those in progress (each answered or acked only once
Redis has its events) and exits 0.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, _, log, err := setup(g, file, nil)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if f.Sources == nil || (f.Sources.HTTP == nil && len(f.Sources.MQTT) == 0) {
				return usageError{fmt.Errorf("%s has no sources section: nothing to ingest", f.Name)}
			}
			if cmd.Flags().Changed("http") {
				f.HTTP.Addr = httpAddr
				if httpAddr == "off" {
					f.HTTP.Addr = ""
				}
			}
			if redisWaitLimit < 0 {
				return usageError{fmt.Errorf("--redis-wait %v: must not be negative (0 fails at once)", redisWaitLimit)}
			}
			return runIngest(cmd.Context(), g, f, redisWaitLimit, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringVar(&httpAddr, "http", "", "listen address for /metrics, /healthz, /readyz (and a shared sources.http), overriding http.addr (off: none)")
	fl.DurationVar(&redisWaitLimit, "redis-wait", defaultRedisWait,
		"how long to wait at start for a Redis that refuses connections or is loading its dataset (0: fail at once)")
	return cmd
}

// runIngest runs f's sources until ctx is done.
func runIngest(ctx context.Context, g *globals, f *pipelines.File, redisWaitLimit time.Duration, log *zap.Logger) error {
	conn, err := openRedis(ctx, g, f, 0, 0, log)
	if err != nil {
		return err
	}
	defer conn.close()
	if conn.embedded {
		return usageError{errors.New("eddy ingest works on a Redis: give --redis URL or a redis section in the config (the embedded one lives only inside eddy run, whose sources feed it)")}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.New(reg).SetBuildInfo(eddyVersion())
	srcs, err := newSources(f, conn.client, metrics.NewIngest(reg), log)
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	grp, gctx := errgroup.WithContext(runCtx)
	var srv *httpServer
	wait := redisWait{limit: redisWaitLimit, log: log}
	if addr := f.HTTP.Addr; addr != "" {
		// As long as an own-address HTTP source's requests may take.
		srv = &httpServer{addr: addr, reg: reg, rdb: conn.client, routes: srcs.shared, grace: ingest.ShutdownGrace}
		ln, err := srv.listen(ctx)
		if err != nil {
			return err
		}
		wait.failed = srv.waitingFor
		grp.Go(func() error { return srv.Serve(gctx, ln) })
		log.Info("http_listening", zap.String("addr", ln.Addr().String()), zap.Strings("paths", srv.paths()))
	}
	err = conn.wait(gctx, wait)
	if err == nil {
		err = srcs.check(gctx, conn)
	}
	if err != nil {
		cancel()
		switch herr := grp.Wait(); {
		case herr != nil:
			return herr
		case ctx.Err() != nil:
			log.Info("eddy_stopped", zap.String("while", "waiting_for_redis"))
			return nil
		default:
			return err
		}
	}
	srcs.start(gctx, grp)
	if srv != nil {
		srv.ready.Store(true)
	}
	log.Info("eddy_ingest_started", zap.String("version", eddyVersion()), zap.String("redis", conn.where),
		zap.Strings("sources", srcs.names))
	if err := grp.Wait(); err != nil {
		return err
	}
	log.Info("eddy_stopped")
	return nil
}

// sources are a file's ingest sources, ready to run: eddy ingest runs
// them, and eddy run too unless --no-sources.
type sources struct {
	// shared are routes to mount on the http.addr listener.
	shared map[string]http.Handler
	// runs are the sources' Run methods, each started in the group by start.
	runs []func(context.Context) error
	// names name the sources for the log ("http", "mqtt:<name>").
	names []string
	// writes are the pipelines the sources append to, and probes those
	// whose backpressure they sample: for the permission check.
	writes, probes []*pipelines.Pipeline
	// unusable says why the sources cannot run as configured; check
	// returns it.
	unusable error
	sink     *ingest.Sink
	log      *zap.Logger
}

// newSources prepares the sources of f, appending through rdb, with their
// metrics on m. It reads their secrets now: a missing one fails at once,
// naming the token or source and the variable or file.
func newSources(f *pipelines.File, rdb redis.UniversalClient, m *metrics.Ingest, log *zap.Logger) (*sources, error) {
	s := &sources{shared: map[string]http.Handler{}, log: log}
	if f.Sources == nil {
		return s, nil
	}
	sink := ingest.NewSink(rdb, f)
	s.sink = sink
	if hc := f.Sources.HTTP; hc != nil {
		h, err := ingest.NewHTTP(f, sink, ingest.HTTPOptions{Metrics: m, Logger: log})
		if err != nil {
			return nil, err
		}
		if h.Shared() {
			if a := f.HTTP.Addr; a == "" || a == "off" { // eddy run --http off leaves "off"
				// Said after the checks of Redis and its permissions, which
				// come first for every command.
				s.unusable = usageError{errors.New("sources.http.addr is shared, but the http.addr listener is off (--http off): give sources.http an address of its own, turn the listener on, or run with --no-sources")}
			}
			s.shared[ingest.Route] = h.Handler()
			// On http.addr's listener: http_listening names the address bound.
			log.Info("http_source_shared", zap.String("route", ingest.Route))
		} else {
			s.runs = append(s.runs, h.Run)
		}
		s.names = append(s.names, ingest.SourceHTTP)
		written := map[string]bool{}
		for _, t := range hc.Tokens {
			for _, name := range t.Pipelines {
				if p := f.Pipeline(name); p != nil && !written[name] {
					written[name] = true
					s.writes = append(s.writes, p)
					if hc.Backpressure.MaxLag > 0 || hc.Backpressure.MaxLatency > 0 {
						s.probes = append(s.probes, p)
					}
				}
			}
		}
	}
	// MQTT sources (sources.mqtt[]) and the embedded broker: ingest_mqtt.go.
	ms, err := newMQTTSources(f, sink, m, log)
	if err != nil {
		return nil, err
	}
	s.runs, s.names = append(s.runs, ms.runs...), append(s.names, ms.names...)
	for _, p := range ms.writes {
		if !slices.Contains(s.writes, p) {
			s.writes = append(s.writes, p)
		}
	}
	return s, nil
}

// check checks, once Redis answers, that its user may append to every
// pipeline the sources write (processor.CheckAccess, as eddy produce
// does) and read the lag of those with backpressure on (RoleIngest), that
// the backpressure probe works on those whose lag they sample
// (it reads, once), and that the sources can run.
func (s *sources) check(ctx context.Context, conn *redisConn) error {
	var producer []*pipelines.Pipeline
	for _, p := range s.writes {
		if !slices.Contains(s.probes, p) {
			producer = append(producer, p)
		}
	}
	if err := errors.Join(checkAccess(ctx, conn, producer, processor.RoleProducer),
		checkAccess(ctx, conn, s.probes, processor.RoleIngest)); err != nil {
		return err
	}
	for _, p := range s.probes {
		if err := s.sink.Probe(ctx, p.Name); err != nil {
			return fmt.Errorf("sources: backpressure needs to read the lag of pipeline %s: %w", p.Name, conn.redact.err(err))
		}
	}
	return s.unusable
}

// start runs each source with its own listener or connection in grp.
func (s *sources) start(ctx context.Context, grp *errgroup.Group) {
	for _, run := range s.runs {
		grp.Go(func() error { return run(ctx) })
	}
	if len(s.names) > 0 {
		s.log.Info("sources_started", zap.Strings("sources", s.names))
	}
}
