package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

func runCommand(g *globals) *cobra.Command {
	var file, consumer, httpAddr string
	var withPprof, noSources bool
	var names []string
	var redisWaitLimit time.Duration
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the pipelines of a config file until SIGINT or SIGTERM",
		Long: `Runs every pipeline in FILE (or those named with --pipeline) as one worker of
each pipeline's consumer group. On SIGINT or SIGTERM it stops reading, finishes
and commits what is in flight within each pipeline's shutdown_timeout and exits
0; entries still unfinished then stay pending for the next worker.

At start it waits for Redis (--redis-wait, 2m by default) while Redis refuses
connections or is still loading its dataset, retrying with a pause of 100ms
doubling up to 5s; /healthz and /metrics answer meanwhile and /readyz says
503. A wrong password or a user without permission fails at once.

With no redis section in FILE and no --redis flag, eddy starts an embedded
in-memory Redis and the config's simulators feed it: a demo that needs nothing
installed. Its data is lost on exit.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, ps, log, err := setup(g, file, names)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if consumer == "" {
				consumer = processor.DefaultConsumer()
			}
			if cmd.Flags().Changed("http") {
				f.HTTP.Addr = httpAddr
			}
			if redisWaitLimit < 0 {
				return usageError{fmt.Errorf("--redis-wait %v: must not be negative (0 fails at once)", redisWaitLimit)}
			}
			return run(cmd.Context(), g, f, ps, runOptions{consumer: consumer, pprof: withPprof, redisWait: redisWaitLimit, noSources: noSources}, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringSliceVar(&names, "pipeline", nil, "run only these pipelines (repeat or comma-separate; default all)")
	fl.BoolVar(&noSources, "no-sources", false, "do not run the file's ingest sources (sources.http, sources.mqtt): leave them to a separate eddy ingest")
	fl.BoolVar(&withPprof, "pprof", false, "serve the Go profiler (CPU, heap, allocations) under /debug/pprof/ on the HTTP listener")
	fl.StringVar(&httpAddr, "http", "", "listen address for /metrics, /healthz, /readyz, overriding http.addr (off: none); one per worker on a machine")
	fl.StringVar(&consumer, "consumer", "", "consumer name, stable across restarts so that a restarted worker finishes its own pending entries (default <hostname>-<pid>)")
	fl.DurationVar(&redisWaitLimit, "redis-wait", defaultRedisWait,
		"how long to wait at start for a Redis that refuses connections or is loading its dataset, retrying with backoff (0: fail at once)")
	return cmd
}

// workerGCPercent is the GOGC of `eddy run` unless GOGC is set: a worker's
// live heap is small (reads stop at max_inflight entries per partition),
// and collecting it at 100% growth cost a sixth of the worker's CPU in the
// throughput run (6.6 -> 5.5 µs per event at 400). 400 let the heap grow
// to five times what is live: 156-193 MB peak RSS at 4 partitions × batch
// 1024 on a 1,000,000 backlog, where 200 gave 107-112 MB with no
// measurable change in CPU.
const workerGCPercent = 200

// runOptions are eddy run's flags that run needs.
type runOptions struct {
	consumer  string
	pprof     bool          // serve /debug/pprof/
	noSources bool          // leave the file's sources to eddy ingest
	redisWait time.Duration // see redisWait.limit
}

// run runs the pipelines ps until ctx is done. The HTTP server starts
// first, then run waits for Redis (o.redisWait), then the pipelines and
// simulators start and /readyz turns ready. A ctx done while waiting is a
// clean stop: run returns nil.
func run(ctx context.Context, g *globals, f *pipelines.File, ps []*pipelines.Pipeline, o runOptions, log *zap.Logger) error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(workerGCPercent)
	}
	maxBlock, partitions := time.Duration(0), 0
	for _, p := range ps {
		maxBlock = max(maxBlock, p.Block)
		partitions += max(p.Input.Partitions, 1)
	}
	conn, err := openRedis(ctx, g, f, maxBlock+2*time.Second, partitions, log)
	if err != nil {
		return err
	}
	defer conn.close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	m.SetBuildInfo(eddyVersion())
	prepareMetrics(m, ps)
	tracer, stopTracing, err := newTracer(ctx, f.Tracing, os.LookupEnv, log)
	if err != nil {
		return err
	}
	defer stopTracer(ctx, stopTracing, log)
	t := &tally{}
	srcs := &sources{log: log}
	if !o.noSources {
		if srcs, err = newSources(f, conn.client, metrics.NewIngest(reg), log); err != nil {
			return err
		}
	}

	gate := &failGate{} // /readyz unready once a pipeline fails
	build := func(p *pipelines.Pipeline) (*processor.Processor, error) {
		po := p.Options()
		po.Consumer, po.Logger, po.Observer, po.Tracer = o.consumer, log, observers{m, t, gate}, tracer
		proc, err := processor.New(conn.client, po)
		if err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", p.Name, err)
		}
		return proc, nil
	}
	procs := make([]*liveProc, 0, len(ps))
	for _, p := range ps {
		proc, err := build(p)
		if err != nil {
			return err
		}
		procs = append(procs, newLiveProc(proc))
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	grp, gctx := errgroup.WithContext(runCtx)
	var srv *httpServer
	var httpAddr string // the http.addr listener's address, once bound
	wait := redisWait{limit: o.redisWait, log: log}
	if addr := f.HTTP.Addr; addr != "" && addr != "off" {
		routes, err := withConsole(srcs.shared, f, ps, conn.client, log)
		if err != nil {
			return err
		}
		srv = &httpServer{addr: addr, reg: reg, rdb: conn.client, pprof: o.pprof, routes: routes, grace: shutdownTimeout(ps)}
		ln, err := srv.listen(ctx)
		if err != nil {
			return err
		}
		wait.failed = srv.waitingFor
		httpAddr = ln.Addr().String()
		grp.Go(func() error { return srv.Serve(gctx, ln) })
		log.Info("http_listening", zap.String("addr", ln.Addr().String()), zap.Strings("paths", srv.paths()))
	}
	err = conn.waitAndCheck(gctx, wait, f, ps)
	if err == nil {
		err = srcs.check(gctx, conn)
	}
	if err != nil {
		cancel()
		switch herr := grp.Wait(); {
		case herr != nil:
			return herr // the HTTP server failed, which ended the wait
		case ctx.Err() != nil:
			log.Info("eddy_stopped", zap.String("while", "waiting_for_redis"))
			return nil
		default:
			return err
		}
	}

	for i, p := range ps {
		_, v, err := atCurrentVersion(gctx, conn.client, p)
		if err != nil {
			cancel()
			_ = grp.Wait()
			return err
		}
		if p.Rebuildable() != nil {
			proc := procs[i].p.Load()
			grp.Go(func() error { return proc.Run(gctx) })
			continue
		}
		// A read model eddy rebuild may version: run the version readers
		// read, and follow a switch.
		if v > 1 {
			proc, err := build(p.AtVersion(v))
			if err != nil {
				cancel()
				_ = grp.Wait()
				return err
			}
			procs[i].p.Store(proc)
			log.Info("read_model_version", zap.String("pipeline", p.Name), zap.Int("version", v), zap.String("group", proc.Options().Group))
		}
		fw := &follower{base: p, version: v, live: procs[i], rdb: conn.client, build: build, log: log}
		grp.Go(func() error { return fw.Run(gctx) })
	}
	srcs.start(gctx, grp)
	for i, s := range f.Simulate {
		p := pipelineNamed(ps, s.Pipeline)
		if p == nil {
			continue // its pipeline is not selected
		}
		sink, closeSink, err := simulateSink(f, i, s, p, conn, m, log, httpAddr, o.noSources)
		if err != nil {
			cancel()
			_ = grp.Wait()
			return err
		}
		feeder := &simulate.Feeder{Generator: generator(s), Sink: sink, Rate: s.Rate}
		grp.Go(func() error {
			defer closeSink()
			return feeder.Run(gctx)
		})
		log.Info("simulator_started", zap.String("pipeline", p.Name), zap.String("kind", s.Kind), zap.Float64("rate", s.Rate),
			zap.String("via", cmp.Or(s.Via, "stream")))
	}
	rep := &reporter{procs: procs, m: m, t: t, log: log, inMemory: conn.embedded}
	grp.Go(func() error { return rep.Run(gctx) })
	gate.open(srv)
	log.Info("eddy_started", zap.String("version", eddyVersion()), zap.String("consumer", o.consumer),
		zap.String("redis", conn.where), zap.Int("pipelines", len(procs)))

	err = grp.Wait()
	rep.summary(context.WithoutCancel(ctx), "final_summary")
	if err != nil {
		return err
	}
	log.Info("eddy_stopped")
	return nil
}

// shutdownTimeout is the longest shutdown_timeout of ps (each defaulted):
// what eddy run gives the work in flight once it is told to stop, the
// HTTP listener's requests included.
func shutdownTimeout(ps []*pipelines.Pipeline) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d = max(d, cmp.Or(p.ShutdownTimeout, processor.DefaultShutdownTimeout))
	}
	return cmp.Or(d, processor.DefaultShutdownTimeout)
}

func pipelineNamed(ps []*pipelines.Pipeline, name string) *pipelines.Pipeline {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func generator(s pipelines.Simulate) simulate.Generator {
	o := simulate.Options{Seed: uint64(time.Now().UnixNano()), Keys: s.Keys, Duplicates: s.Duplicates, Bad: s.Bad}
	if s.Kind == pipelines.SimulateIoT {
		return simulate.NewIoT(o)
	}
	return simulate.NewClickstream(o)
}
