package bench

// eddy bench-ingest: how fast events get into Redis by each way in, in one
// run on one Redis. The three paths, each into a pipeline of its own (same
// shape: IoT readings keyed by device, Partitions partitions, dedupe id
// reading_id) and each verified by counting the entries it left:
//
//   - produce: eddy produce's path in this process: each event encoded as
//     eddy produce encodes it (pipelines.Pipeline.EncodeEvent) and sent
//     through processor.Producer in pipelined batches of produceBatch, one
//     batch at a time, as eddy produce sends them. The baseline.
//   - http: HTTPClients clients (simulate.HTTP) posting NDJSON batches of
//     HTTPBatch events to package ingest's HTTP source, served in this
//     process on a loopback port; done when every request is answered,
//     which the source does only once Redis has the events.
//   - mqtt: MQTTConnections connections (simulate.MQTT) publishing each
//     event at QoS 1, MQTTInFlight awaiting their PUBACK at once, to a
//     Mosquitto of our own, which delivers them to package ingest's MQTT
//     source in this process; done when the source has appended them all.
//
// Each path's events/s is reported next to produce's as a ratio, taken
// round by round (each round runs the three once, in a rotating order).
// Then, at a fixed rate, the latency: of an HTTP request (its events
// appended and answered), and of an MQTT reading from its publish to its
// entry being read from Redis.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redisurl"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// Paths of bench-ingest: the pipeline each writes to has its name.
const (
	PathProduce = "produce"
	PathHTTP    = "http"
	PathMQTT    = "mqtt"
)

// paths in the order of the first round.
var paths = []string{PathProduce, PathHTTP, PathMQTT}

const (
	// produceBatch is eddy produce's default --batch.
	produceBatch = 500
	// ingestToken is the bearer token the HTTP clients send; it never
	// leaves this process.
	ingestToken = "eddy-bench-ingest"
	// ingestTimeout fails a path that has not finished its run by then.
	ingestTimeout = 10 * time.Minute
	// mqttTick is how often the fixed-rate MQTT publisher sends.
	mqttTick = 5 * time.Millisecond
)

// IngestOptions set what RunIngest measures. StandardIngest returns the
// standard set and QuickIngest the smoke-check one; a zero field is not a
// default.
type IngestOptions struct {
	// RedisURL is the server to use; "" starts a redis-server of our own.
	// On another server only keys under a unique prefix are written, and
	// deleted at the end.
	RedisURL string
	// Command is the command line, for the report.
	Command string
	// Progress receives a line per run (stderr); nil discards them.
	Progress io.Writer

	// Events is how many readings each path sends in each throughput run.
	Events int
	// Runs is how many rounds there are (each path once a round); 0 leaves
	// the throughput runs out.
	Runs int
	// Keys is how many devices the readings are spread over.
	Keys int
	// Partitions is the partitions of each path's pipeline.
	Partitions int
	// HTTPClients is the HTTP requests in flight; HTTPBatch the events in
	// each.
	HTTPClients, HTTPBatch int
	// MQTTConnections is the publishers' connections; MQTTInFlight the
	// publishes awaiting their PUBACK at once.
	MQTTConnections, MQTTInFlight int
	// LatencyRate is the fixed rate of the latency runs, events/s;
	// LatencyBatch the events of each HTTP request then.
	LatencyRate, LatencyBatch int
	// LatencyRuns is how many runs each latency figure is the median of;
	// 0 leaves them out.
	LatencyRuns int
	// Warmup is discarded at the start of each latency run; Duration is
	// then measured.
	Warmup, Duration time.Duration
}

// StandardIngest returns the standard set (make bench-ingest).
func StandardIngest() IngestOptions {
	return IngestOptions{
		Events: 200_000, Runs: 5, Keys: 1000, Partitions: 4,
		HTTPClients: 4, HTTPBatch: 500, MQTTConnections: 4, MQTTInFlight: 64,
		LatencyRate: 2000, LatencyBatch: 20, LatencyRuns: 3, Warmup: time.Second, Duration: 10 * time.Second,
	}
}

// QuickIngest returns the smoke-check set: well under a minute on two cores.
func QuickIngest() IngestOptions {
	o := StandardIngest()
	o.Events, o.Runs = 10_000, 2
	o.LatencyRuns, o.Warmup, o.Duration = 1, 500*time.Millisecond, 2*time.Second
	return o
}

// Check returns every problem with o, naming the flag.
func (o IngestOptions) Check() error {
	var errs []error
	atLeast := func(name string, v, lo int) {
		if v < lo {
			errs = append(errs, fmt.Errorf("--%s %d: must be at least %d", name, v, lo))
		}
	}
	atLeast("events", o.Events, 1)
	atLeast("runs", o.Runs, 0)
	atLeast("keys", o.Keys, 1)
	atLeast("http-clients", o.HTTPClients, 1)
	atLeast("mqtt-connections", o.MQTTConnections, 1)
	atLeast("mqtt-inflight", o.MQTTInFlight, 1)
	atLeast("latency-runs", o.LatencyRuns, 0)
	if o.Partitions < 1 || o.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("--partitions %d: must be 1..1024", o.Partitions))
	}
	if o.HTTPBatch < 1 || o.HTTPBatch > pipelines.DefaultHTTPMaxEvents {
		errs = append(errs, fmt.Errorf("--http-batch %d: must be 1..%d (the source's max_events)", o.HTTPBatch, pipelines.DefaultHTTPMaxEvents))
	}
	if o.LatencyRuns > 0 {
		if o.LatencyRate < 1 || o.LatencyRate > 1_000_000 {
			errs = append(errs, fmt.Errorf("--latency-rate %d: must be 1..1000000 events/s", o.LatencyRate))
		}
		if o.LatencyBatch < 1 || o.LatencyBatch > pipelines.DefaultHTTPMaxEvents {
			errs = append(errs, fmt.Errorf("--latency-batch %d: must be 1..%d", o.LatencyBatch, pipelines.DefaultHTTPMaxEvents))
		}
		if o.Duration <= 0 || o.Warmup < 0 {
			errs = append(errs, fmt.Errorf("--duration %v, --warmup %v: the duration must be positive, the warmup not negative", o.Duration, o.Warmup))
		}
	}
	if o.Runs == 0 && o.LatencyRuns == 0 {
		errs = append(errs, errors.New("--runs 0 and --latency-runs 0: nothing to measure"))
	}
	return errors.Join(errs...)
}

// ingester is one RunIngest: its Redis, broker, sources and pipelines.
type ingester struct {
	o      IngestOptions
	url    string
	rdb    *redis.Client
	own    *redisserver.Server // nil on a server given by RedisURL
	broker *mosquitto
	dir    string
	prefix string // every key's prefix, and the topics' (with / for :)

	file    *pipelines.File
	httpURL string       // the HTTP source's base URL
	client  *http.Client // the HTTP clients' connections
	mqtt    *ingest.MQTT
	topic   *simulate.Topic
	seed    uint64 // the readings' seed, one per run of a path
}

// RunIngest measures the three paths as o says and returns the report. A
// run whose entries do not match what was sent fails it, naming the run
// and the path. Everything it starts is stopped, and on a server it did
// not start every key it wrote deleted, before it returns.
func RunIngest(ctx context.Context, o IngestOptions) (*IngestReport, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	started := time.Now()
	in := &ingester{o: o, prefix: newPrefix()}
	dir, err := os.MkdirTemp("", "eddy-bench-ingest-")
	if err != nil {
		return nil, err
	}
	in.dir = dir
	defer os.RemoveAll(dir) //nolint:errcheck // best effort: a temp dir

	in.url = o.RedisURL
	if in.url == "" {
		if in.own, err = StartServer(ctx, dir); err != nil {
			return nil, err
		}
		in.url = in.own.URL()
		defer func() {
			if err := in.own.Stop(context.WithoutCancel(ctx)); err != nil {
				in.progress("warning: %v", err)
			}
		}()
	}
	opt, err := redisurl.ParseURL(in.url)
	if err != nil {
		return nil, fmt.Errorf("redis url %q: %w", redisurl.Redact(in.url), err)
	}
	opt.PoolSize = 10*runtime.GOMAXPROCS(0) + 4*o.HTTPClients + 8
	in.rdb = redis.NewClient(opt)
	defer in.rdb.Close() //nolint:errcheck // nothing to do about it
	if err := in.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s does not answer: %w", opt.Addr, err)
	}
	if in.own == nil {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, err := Cleanup(cctx, in.rdb, in.prefix); err != nil {
				in.progress("warning: keys under %s may be left: %v", in.prefix, err)
			}
		}()
	}

	mdir := dir + "/mosquitto"
	if err := os.Mkdir(mdir, 0o700); err != nil {
		return nil, err
	}
	if in.broker, err = startMosquitto(ctx, mdir); err != nil {
		return nil, err
	}
	defer func() {
		if err := in.broker.stop(); err != nil {
			in.progress("warning: %v", err)
		}
	}()

	rep := &IngestReport{Command: o.Command, Settings: ingestSettingsOf(o)}
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUModel: cpuModel(), Redis: "own redis-server"}
	if in.own == nil {
		m.Redis = "--redis server"
	}
	info, err := in.rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO server: %w", err)
	}
	m.RedisVersion = infoField(info, "redis_version")
	rep.Machine = IngestMachine{Machine: m, Mosquitto: mosquittoVersion(ctx, in.broker), LoadStart: loadAverage()}

	stop, err := in.startSources(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	in.progress("eddy bench-ingest on %s (%s) and mosquitto %s, prefix %s", m.Redis, m.RedisVersion, rep.Machine.Mosquitto, in.prefix)

	if o.Runs > 0 {
		if rep.Throughput, err = in.throughput(ctx); err != nil {
			return nil, err
		}
	}
	if o.LatencyRuns > 0 {
		if rep.Latency, err = in.latency(ctx); err != nil {
			return nil, err
		}
	}
	rep.Seconds = time.Since(started).Seconds()
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// loadAverage is the first three fields of /proc/loadavg (the 1, 5 and
// 15 minute load averages), or "" where there is none: on a machine shared
// with other jobs it says how much the figures had to share.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// config is the YAML of the bench's three pipelines and two sources.
func (in *ingester) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `http: {addr: "off"}
sources:
  http:
    addr: 127.0.0.1:1
    backpressure: {max_lag: -1}
    tokens:
      bench: {env: EDDY_BENCH_INGEST_TOKEN, pipelines: [%s]}
  mqtt:
    - name: bench
      broker: %s
      client_id: %s
      topics:
        - {filter: %q, pipeline: %s, key: device_id}
pipelines:
`, PathHTTP, in.broker.URL(), strings.ReplaceAll(strings.TrimSuffix(in.prefix, ":"), ":", "-")+"-source",
		in.topicPrefix()+"{device_id}/{sensor}", PathMQTT)
	for _, p := range paths {
		fmt.Fprintf(&b, `  - name: %s
    input: {stream: %q, partitions: %d, payload: data}
    key: device_id
    dedupe: {id: reading_id, window: 1h}
    steps:
      - filter: 'true'
`, p, in.prefix+p, in.o.Partitions)
	}
	return b.String()
}

// topicPrefix is the first levels of the bench's MQTT topics:
// "eddybench/<hex>/sensors/".
func (in *ingester) topicPrefix() string {
	return strings.ReplaceAll(in.prefix, ":", "/") + "sensors/"
}

// startSources parses the config and runs the HTTP source on a free
// loopback port and the MQTT source, until the returned stop is called.
// It returns once the MQTT source has subscribed.
func (in *ingester) startSources(ctx context.Context) (stop func(), err error) {
	f, err := pipelines.Parse("bench-ingest.yaml", []byte(in.config()), nil)
	if err != nil {
		return nil, fmt.Errorf("the bench's config: %w", err)
	}
	in.file = f
	if in.topic, err = simulate.ParseTopic(in.topicPrefix() + "{device_id}/{sensor}"); err != nil {
		return nil, err
	}
	sink := ingest.NewSink(in.rdb, f)
	m := metrics.NewIngest(prometheus.NewRegistry()) // as eddy ingest counts, so costs
	h, err := ingest.NewHTTP(f, sink, ingest.HTTPOptions{Metrics: m, LookupEnv: func(string) (string, bool) { return ingestToken, true }})
	if err != nil {
		return nil, err
	}
	if in.mqtt, err = ingest.NewMQTT(f, &f.Sources.MQTT[0], sink, ingest.MQTTOptions{Metrics: m}); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in.httpURL = "http://" + ln.Addr().String()
	tr := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // the standard library's
	tr.MaxIdleConnsPerHost = max(in.o.HTTPClients, latencyInFlight)
	in.client = &http.Client{Timeout: simulate.DefaultHTTPTimeout, Transport: tr}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- h.Serve(runCtx, ln) }()
	go func() { defer wg.Done(); errs <- in.mqtt.Run(runCtx) }()
	stop = func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				in.progress("warning: an ingest source stopped with: %v", err)
			}
		}
	}
	if err := in.waitSubscribed(ctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// waitSubscribed publishes a probe reading until the MQTT source has
// appended one (it subscribes once connected; what is published before is
// not for it), then deletes the probes' entries.
func (in *ingester) waitSubscribed(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pub := &simulate.MQTT{Broker: in.broker.URL(), Topic: in.topic, Connections: 1, InFlight: 1}
	defer pub.Close() //nolint:errcheck // closes connections
	probe := []simulate.Event{{Key: "probe", Data: []byte(`{"reading_id":"probe","device_id":"probe","sensor":"probe","value":0}`)}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for in.mqtt.Stats().Appended == 0 {
		if err := pub.Send(ctx, probe); err != nil {
			return fmt.Errorf("publish a probe to the bench's mosquitto: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the MQTT source did not take a probe within 30s: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return in.clear(ctx, PathMQTT)
}

// clear deletes the partition streams of path's pipeline.
func (in *ingester) clear(ctx context.Context, path string) error {
	p := in.file.Pipeline(path)
	keys := make([]string, p.Input.Partitions)
	for i := range keys {
		keys[i] = processor.PartitionStream(p.Input.Stream, i, p.Input.Partitions)
	}
	if err := in.rdb.Unlink(context.WithoutCancel(ctx), keys...).Err(); err != nil {
		return fmt.Errorf("delete the streams of %s: %w", path, err)
	}
	return nil
}

// readings returns n readings of a new seed, made before they are timed.
func (in *ingester) readings(n int) []simulate.Event {
	in.seed++
	g := simulate.NewIoT(simulate.Options{Seed: in.seed, Keys: in.o.Keys})
	evs := make([]simulate.Event, n)
	for i := range evs {
		evs[i].Data, evs[i].Key = g.Next()
	}
	return evs
}

func (in *ingester) progress(format string, args ...any) {
	fmt.Fprintf(in.o.Progress, format+"\n", args...)
}

// mosquittoVersion is what "mosquitto -h" says of its version, or "".
func mosquittoVersion(ctx context.Context, m *mosquitto) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, m.cmd.Path, "-h").CombinedOutput() // exits 3 after printing its help
	first, _, _ := strings.Cut(string(out), "\n")
	if v, ok := strings.CutPrefix(strings.TrimSpace(first), "mosquitto version "); ok {
		return v
	}
	return ""
}
