package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redisurl"
)

// Options set what Run measures. Standard returns the standard set and
// Quick the smoke-check one; a zero field is not a default.
type Options struct {
	// Exe is the eddy binary both sides run as (os.Executable in cmd/eddy).
	Exe string
	// RedisURL is the server to use; "" starts a redis-server of our own.
	RedisURL string
	// Command is the command line, for the report.
	Command string
	// Progress receives a line per run (stderr); nil discards them.
	Progress io.Writer

	// Events is how many pre-filled events each throughput run processes.
	Events int
	// Runs is how many paired throughput runs (baseline and Eddy) there
	// are on fresh data; 0 leaves them out (then the latency runs need
	// MaxRateTries 0).
	Runs int
	// SteadyRuns is how many paired runs there are in the dedupe steady
	// state (every dedupe set of the window present); 0 leaves them out.
	SteadyRuns int
	// StatefulRuns is how many turns of Eddy's plain pipeline and its two
	// stateful variants there are; 0 leaves them out.
	StatefulRuns int
	// WindowedRuns is how many turns of Eddy's plain pipeline and the
	// windowed one (see Windowed) there are; 0 leaves them out.
	WindowedRuns int
	// ProfileDir, if set, is where the windowed side's eddy process leaves
	// CPU profiles, one a second of each run (ProfileFiles names them); ""
	// takes none. A profiled run is a little slower.
	ProfileDir string
	// Consumers is the baseline's consumers on one stream and Eddy's
	// partitions (all read by one eddy run process).
	Consumers int
	// Batch is both sides' read count (Eddy's batch_size).
	Batch int
	// Lanes is Eddy's lanes.
	Lanes int
	// Backlog is the pre-filled events of the memory runs.
	Backlog int
	// Warmup is discarded at the start of each latency run; Duration is
	// then measured.
	Warmup, Duration time.Duration
	// Rates are the fixed producer rates of the latency runs, events/s.
	Rates []int
	// LatencyRuns is how many paired runs each latency figure is the median of.
	LatencyRuns int
	// MaxRateTries bounds the search for the highest rate Eddy sustains
	// (0: no search); each try lasts Warmup + SearchDuration.
	MaxRateTries   int
	SearchDuration time.Duration
	// SkipMemory and SkipLatency leave those scenarios out.
	SkipMemory, SkipLatency bool
}

// Standard returns the standard set (make bench).
func Standard() Options {
	return Options{
		Events: 500_000, Runs: 5, SteadyRuns: 5, StatefulRuns: 5, WindowedRuns: 5, Consumers: 1, Batch: 512, Lanes: 16, Backlog: 1_000_000,
		Warmup: time.Second, Duration: 10 * time.Second, Rates: []int{5000, 20000},
		LatencyRuns: 3, MaxRateTries: 4, SearchDuration: 3 * time.Second,
	}
}

// Quick returns the smoke-check set: under a minute on two cores.
func Quick() Options {
	o := Standard()
	o.Events, o.Runs, o.SteadyRuns, o.StatefulRuns, o.WindowedRuns, o.Backlog = 100_000, 3, 1, 1, 1, 200_000
	o.Warmup, o.Duration = 500*time.Millisecond, 2*time.Second
	o.LatencyRuns, o.MaxRateTries, o.SearchDuration = 1, 3, 1500*time.Millisecond
	return o
}

// Check returns every problem with o, naming the flag.
func (o Options) Check() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("--%s %d: must be at least 1", name, v))
		}
	}
	positive("events", o.Events)
	notNegative := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("--%s %d: must be at least 0", name, v))
		}
	}
	notNegative("runs", o.Runs)
	notNegative("steady-runs", o.SteadyRuns)
	notNegative("stateful-runs", o.StatefulRuns)
	notNegative("windowed-runs", o.WindowedRuns)
	if o.Runs == 0 && !o.SkipLatency && o.MaxRateTries > 0 {
		errs = append(errs, errors.New("--runs 0: the search for the highest rate starts from Eddy's throughput; give --max-rate-tries 0 or --skip-latency"))
	}
	positive("batch", o.Batch)
	positive("lanes", o.Lanes)
	positive("backlog", o.Backlog)
	positive("latency-runs", o.LatencyRuns)
	if o.Consumers < 1 || o.Consumers > 1024 {
		errs = append(errs, fmt.Errorf("--consumers %d: must be 1..1024 (Eddy's partitions)", o.Consumers))
	}
	if o.Duration <= 0 || o.SearchDuration <= 0 || o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--duration %v, --warmup %v: must be positive", o.Duration, o.Warmup))
	}
	if o.MaxRateTries < 0 {
		errs = append(errs, fmt.Errorf("--max-rate-tries %d: must be at least 0", o.MaxRateTries))
	}
	for _, r := range o.Rates {
		if r < 1 || r > 10_000_000 {
			errs = append(errs, fmt.Errorf("--rates: %d events/s: must be 1..10000000", r))
		}
	}
	if o.Exe == "" {
		errs = append(errs, errors.New("no eddy binary to run the sides with"))
	}
	return errors.Join(errs...)
}

// bencher is one Run: the Redis it uses and where runs put their files.
type bencher struct {
	o      Options
	url    string
	rdb    *redis.Client
	own    *redisserver.Server // nil on a server given by RedisURL
	dir    string              // config files, the own server's data
	prefix string              // every key's prefix
	runs   int                 // scenario runs so far; names each run's keys
}

// Run measures both sides as o says and returns the report. It fails on
// the first run that does not verify (every event output exactly once,
// nothing pending), naming the scenario and the side. Everything it starts
// is stopped, and every key it wrote deleted, before it returns.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	started := time.Now()
	b := &bencher{o: o, prefix: newPrefix()}
	dir, err := os.MkdirTemp("", "eddy-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	defer os.RemoveAll(dir) //nolint:errcheck // best effort: a temp dir

	b.url = o.RedisURL
	if b.url == "" {
		if b.own, err = StartServer(ctx, dir); err != nil {
			return nil, err
		}
		b.url = b.own.URL()
		defer func() {
			if err := b.own.Stop(context.WithoutCancel(ctx)); err != nil {
				b.progress("warning: %v", err)
			}
		}()
	}
	opt, err := redisurl.ParseURL(b.url)
	if err != nil {
		return nil, fmt.Errorf("redis url %q: %w", redisurl.Redact(b.url), err)
	}
	opt.PoolSize = 10*runtime.GOMAXPROCS(0) + 4 // the latency reader blocks on one
	b.rdb = redis.NewClient(opt)
	defer b.rdb.Close() //nolint:errcheck // nothing to do about it
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s does not answer: %w", opt.Addr, err)
	}
	if b.own == nil {
		defer b.cleanupAll(ctx)
	}

	rep := &Report{Command: o.Command, Settings: settingsOf(o)}
	if rep.Machine, err = b.machine(ctx); err != nil {
		return nil, err
	}
	b.progress("eddy bench on %s (%s), prefix %s", rep.Machine.Redis, rep.Machine.RedisVersion, b.prefix)
	if o.Runs > 0 {
		if rep.Throughput, err = b.throughput(ctx); err != nil {
			return nil, err
		}
	}
	if o.SteadyRuns > 0 {
		if rep.Steady, err = b.steady(ctx); err != nil {
			return nil, err
		}
	}
	if o.StatefulRuns > 0 {
		if rep.Stateful, err = b.stateful(ctx); err != nil {
			return nil, err
		}
	}
	if o.WindowedRuns > 0 {
		if rep.Windowed, err = b.windowed(ctx); err != nil {
			return nil, err
		}
	}
	if !o.SkipMemory {
		if rep.Memory, err = b.memory(ctx); err != nil {
			return nil, err
		}
	}
	if !o.SkipLatency {
		var eddyThroughput float64
		if rep.Throughput != nil {
			eddyThroughput = rep.Throughput.Eddy.EventsPerSec
		}
		if rep.Latency, err = b.latency(ctx, eddyThroughput); err != nil {
			return nil, err
		}
	}
	rep.Seconds = time.Since(started).Seconds()
	return rep, nil
}

// next returns the names of a new scenario run.
func (b *bencher) next() names {
	b.runs++
	return runNames(b.prefix, b.runs)
}

// clean removes a finished run's keys: FLUSHALL SYNC on our own server
// (synchronous, so that freeing them does not add to the next run's Redis
// CPU), only the run's own keys on any other.
func (b *bencher) clean(ctx context.Context, n names) error {
	ctx = context.WithoutCancel(ctx)
	if b.own != nil {
		if err := b.rdb.Do(ctx, "FLUSHALL", "SYNC").Err(); err != nil {
			return fmt.Errorf("flushall on our own redis-server: %w", err)
		}
		return nil
	}
	if _, err := Cleanup(ctx, b.rdb, n.prefix); err != nil {
		return fmt.Errorf("delete the keys of %s*: %w", n.prefix, err)
	}
	return nil
}

// cleanupAll deletes whatever is left under the bench's prefix on a server
// we did not start (a run that failed half way).
func (b *bencher) cleanupAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := Cleanup(ctx, b.rdb, b.prefix); err != nil {
		b.progress("warning: keys under %s may be left: %v", b.prefix, err)
	}
}

// progress writes one line to Options.Progress.
func (b *bencher) progress(format string, args ...any) {
	fmt.Fprintf(b.o.Progress, format+"\n", args...)
}

// machine describes where the bench runs.
func (b *bencher) machine(ctx context.Context) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUModel: cpuModel(), Redis: "own redis-server"}
	if b.own == nil {
		m.Redis = "--redis server"
	}
	info, err := b.rdb.Info(ctx, "server").Result()
	if err != nil {
		return m, fmt.Errorf("INFO server: %w", err)
	}
	m.RedisVersion = infoField(info, "redis_version")
	return m, nil
}

// redisCPU returns redis-server's CPU time so far, user plus system, from
// INFO cpu.
func (b *bencher) redisCPU(ctx context.Context) (float64, error) {
	info, err := b.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	user, err1 := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
	sys, err2 := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("INFO cpu: used_cpu_user, used_cpu_sys: %w", err)
	}
	return user + sys, nil
}

// infoField returns the value of field in an INFO reply, or "".
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
