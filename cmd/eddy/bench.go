package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/bench"
	"github.com/eddy-streams/eddy/internal/redisurl"
	"github.com/eddy-streams/eddy/pipelines"
)

func benchCommand(g *globals) *cobra.Command {
	o := bench.Standard()
	var quick, asJSON bool
	cmd := &cobra.Command{
		Use:   "bench [--quick] [--json]",
		Short: "Measure Eddy's engine against a hand-written go-redis consumer, side by side",
		Long: `Runs, in one invocation and on the same machine, Eddy's engine (eddy run on an
ordered pipeline with dedupe and one output) and a minimal hand-written go-redis
consumer doing the same Redis work (read a batch; SADD each id; XADD one output
per entry; XACK; pipelined), each as a child process of this binary, and
reports:

  throughput  events/s through a pre-filled stream (--events, 200-byte events
              over 10,000 keys), CPU seconds per million events of each side
              and of redis-server (= µs per event), and the ratios
              Eddy/baseline of events/s and of redis-server CPU per event,
              taken pair by pair over --runs paired runs (medians)
  steady      the same in the dedupe steady state (--steady-runs pairs):
              before each run every dedupe set of Eddy's window is made,
              holding --events ids together, and the baseline's one set
              gets as many, so that every look-up hits every set
  stateful    Eddy's pipeline with keyed state before its output, a counter
              per key (incr: {n: 1}) and the same read, changed and written
              back (fields: {n: '(state.counts.n ?? 0) + 1'}), each run in
              turn with the plain pipeline (--stateful-runs turns): events/s
              as a ratio to the plain pipeline's; the counters are checked
              to add up to the events
  windowed    Eddy's pipeline with a window step before its output: tumbling
              1-minute windows per key in event time (the events' "at"),
              each one's count and count of distinct pages, emitted when it
              closes; each run in turn with the plain pipeline
              (--windowed-runs turns): events/s (until the last window's
              result) as a ratio to the plain pipeline's, against the aim
              of 0.7. The windows close at the end by one event an hour
              ahead on each partition; every result is checked against the
              events (each event counted once, the distinct pages exact)
              and no window of the run may be left open
  memory      peak RSS of each side through a backlog of --backlog events
  latency     p50/p99/p999/max from XADD to the output being read, with a
              producer at each of --rates events/s and at the highest rate
              Eddy sustains (found by a short search)

By default it starts its own redis-server (on PATH) on a free loopback port
and stops it at the end. With --redis URL it uses that server instead (the
EDDY_REDIS_URL variable is ignored here, so a shell pointed at a real server
does not benchmark it by accident): it never flushes it, and writes and then
deletes only keys under a unique prefix "eddybench:<random>:".

Every run is verified (each event output exactly once, nothing pending); a
run that fails makes the command exit 1, naming the run and the side.
--quick runs a smaller set that finishes within about a minute.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if quick {
				applyQuick(cmd, &o)
			}
			if cmd.Flags().Changed("redis") {
				o.RedisURL = g.redisURL
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the eddy binary to run the sides with: %w", err)
			}
			o.Exe, o.Progress, o.Command = exe, g.stderr, redisurl.RedactText(commandLine(os.Args))
			if err := o.Check(); err != nil {
				return usageError{err}
			}
			rep, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return bench.WriteTable(g.stdout, rep)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Events, "events", o.Events, "pre-filled events per throughput run")
	fl.IntVar(&o.Runs, "runs", o.Runs, "paired throughput runs (baseline and Eddy each); figures are medians (0: none)")
	fl.IntVar(&o.SteadyRuns, "steady-runs", o.SteadyRuns, "paired throughput runs in the dedupe steady state (0: none)")
	fl.IntVar(&o.StatefulRuns, "stateful-runs", o.StatefulRuns, "turns of the plain and the two stateful pipelines (0: none)")
	fl.IntVar(&o.WindowedRuns, "windowed-runs", o.WindowedRuns, "turns of the plain and the windowed pipelines (0: none)")
	fl.StringVar(&o.ProfileDir, "profile-dir", "", "write CPU profiles of the windowed side's eddy process to this directory, one a second of each run (go tool pprof takes them all at once; the profiled runs are a little slower)")
	fl.IntVar(&o.Consumers, "consumers", o.Consumers, "the baseline's consumers on one stream, and Eddy's partitions (one eddy run process)")
	fl.IntVar(&o.Batch, "batch", o.Batch, "entries per read, both sides (Eddy's batch_size)")
	fl.IntVar(&o.Lanes, "lanes", o.Lanes, "Eddy's lanes: keys handled in parallel")
	fl.IntVar(&o.Backlog, "backlog", o.Backlog, "pre-filled events of the memory runs")
	fl.DurationVar(&o.Duration, "duration", o.Duration, "measured time of each latency run")
	fl.DurationVar(&o.Warmup, "warmup", o.Warmup, "discarded start of each latency run")
	fl.IntSliceVar(&o.Rates, "rates", o.Rates, "fixed producer rates of the latency runs, events/s")
	fl.IntVar(&o.LatencyRuns, "latency-runs", o.LatencyRuns, "paired runs per latency figure (medians)")
	fl.IntVar(&o.MaxRateTries, "max-rate-tries", o.MaxRateTries, "tries of the search for the highest rate Eddy sustains (0: no search)")
	fl.BoolVar(&o.SkipMemory, "skip-memory", false, "leave out the memory runs")
	fl.BoolVar(&o.SkipLatency, "skip-latency", false, "leave out the latency runs")
	fl.BoolVar(&quick, "quick", false, "the smaller set, for smoke checks: events 100k, runs 3, steady, stateful and windowed runs 1, backlog 200k, duration 2s, 1 latency run, 3 max-rate tries (flags given win)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object on stdout (progress stays on stderr)")
	return cmd
}

// applyQuick sets every option the command line did not set to the quick set's.
func applyQuick(cmd *cobra.Command, o *bench.Options) {
	q := bench.Quick()
	set := func(flag string, apply func()) {
		if !cmd.Flags().Changed(flag) {
			apply()
		}
	}
	set("events", func() { o.Events = q.Events })
	set("runs", func() { o.Runs = q.Runs })
	set("steady-runs", func() { o.SteadyRuns = q.SteadyRuns })
	set("stateful-runs", func() { o.StatefulRuns = q.StatefulRuns })
	set("windowed-runs", func() { o.WindowedRuns = q.WindowedRuns })
	set("backlog", func() { o.Backlog = q.Backlog })
	set("duration", func() { o.Duration = q.Duration })
	set("warmup", func() { o.Warmup = q.Warmup })
	set("rates", func() { o.Rates = q.Rates })
	set("latency-runs", func() { o.LatencyRuns = q.LatencyRuns })
	set("max-rate-tries", func() { o.MaxRateTries = q.MaxRateTries })
	o.SearchDuration = q.SearchDuration
}

// commandLine renders argv as "eddy arg …", quoting what a shell would split.
func commandLine(argv []string) string {
	parts := []string{"eddy"}
	for _, a := range argv[1:] {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]{}()<>|&;#~") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// benchBaselineCommand is the baseline side of eddy bench: the hand-written
// consumer loop (bench.Baseline) as a process of its own, so that its CPU
// and memory are measured as Eddy's are. It runs until SIGINT or SIGTERM.
func benchBaselineCommand(g *globals) *cobra.Command {
	var b bench.Baseline
	cmd := &cobra.Command{
		Use:    "bench-baseline --redis URL --stream S --group G --output O --seen SET",
		Short:  "The hand-written consumer eddy bench compares the engine with (internal)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.redisURL == "" || b.Stream == "" || b.Group == "" || b.Output == "" || b.Seen == "" {
				return usageError{errors.New("--redis, --stream, --group, --output and --seen are required")}
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			// The same client settings as eddy run's, for a fair comparison.
			conn, err := openRedis(cmd.Context(), g, &pipelines.File{}, 0, b.Consumers, log)
			if err != nil {
				return err
			}
			defer conn.close()
			if err := conn.ping(cmd.Context()); err != nil {
				return err
			}
			b.Client = conn.client
			return b.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&b.Stream, "stream", "", "input stream")
	fl.StringVar(&b.Group, "group", "", "consumer group (created at the stream's start if missing)")
	fl.StringVar(&b.Output, "output", "", "output stream")
	fl.StringVar(&b.Seen, "seen", "", "set of seen event ids")
	fl.Int64Var(&b.MaxLen, "max-len", 0, "MAXLEN ~ of the output (0: no cap)")
	fl.IntVar(&b.Consumers, "consumers", 1, "consumers (goroutines) in the group")
	fl.IntVar(&b.Batch, "batch", 256, "XREADGROUP COUNT")
	return cmd
}
