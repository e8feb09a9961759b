package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/internal/redisurl"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/simulate"
)

// Defaults of eddy simulate --to.
const (
	// defaultSimulateRate is --rate's default, events per second.
	defaultSimulateRate = 1000
	// simulateGrace is how long, after SIGINT or SIGTERM, the events
	// already generated are still delivered before the rest is given up.
	simulateGrace = 10 * time.Second
	// simulateLogEvery rate-limits the retry warnings, per cause.
	simulateLogEvery = 5 * time.Second
)

// envNameRE is what --token-env and --password-env take: the name of an
// environment variable.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// defaultTopics are --topic's defaults by kind.
var defaultTopics = map[string]string{
	pipelines.SimulateIoT:         "sensors/{device_id}/{sensor}",
	pipelines.SimulateClickstream: "clicks/{user_id}",
}

// simulateFlags are eddy simulate's flags.
type simulateFlags struct {
	kind     string
	count    int64
	o        simulate.Options
	to       string
	rate     float64
	duration time.Duration
	tokenEnv string
	topic    string
	batch    int
	conc     int
	conns    int
	gzip     bool
	user     string
	passEnv  string
	ca       string
}

func simulateCommand(g *globals) *cobra.Command {
	var sf simulateFlags
	cmd := &cobra.Command{
		Use:   "simulate --kind clickstream|iot [--count N] [--to URL --rate R]",
		Short: "Generate clickstream or IoT events: NDJSON on stdout (pipe into eddy produce), or sent to an HTTP or MQTT ingest source",
		Long: `Generates clickstream events (users browsing a shop) or IoT readings
(devices with one sensor each), deterministic for a --seed (timestamps
aside), with --duplicates and --bad (malformed) events mixed in, keys that
send in --bursts or go quiet for a while (--silences; a silence lasts half to
one and a half times --silence), and IoT readings that --drift away from
their sensor's typical value.

Without --to the events go to stdout as NDJSON, as fast as they are made.

With --to they are sent at --rate events/s, until --count events (0: no
limit) or --duration, or SIGINT/SIGTERM (the events already made are still
delivered, for up to 10s; a second signal stops at once):

  --to http://HOST:PORT/v1/pipelines/NAME/events   (https:// too)
      NDJSON posts of up to --batch events, --concurrency at a time, to Eddy's
      HTTP source, with the bearer token read from the environment variable
      --token-env names. 429 and 503 are waited out (Retry-After) and sent
      again, as are network errors and other 5xx; what the answer rejects is
      counted, not sent again. 401, 403, 404 and 415 stop with the message.
  --to mqtt://HOST:PORT   (mqtts:// for TLS)
      every event published at QoS 1 on the --topic its fields make (each
      {field} filled with the event's field; "unknown" where it has none),
      --concurrency publishes in flight over --connections connections, each
      sent again until the broker acknowledges it (PUBACK).

Each key's events stay in order either way. At the end it prints what was
sent, accepted, rejected (by reason) and retried; exit 1 if delivery stopped
on an error. A source or broker that cannot be reached at all (nothing
listens there) exits 1 at once, naming it, and claims nothing sent.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(cmd); err != nil {
				return usageError{err}
			}
			var gen simulate.Generator
			if sf.kind == pipelines.SimulateIoT {
				gen = simulate.NewIoT(sf.o)
			} else {
				gen = simulate.NewClickstream(sf.o)
			}
			if sf.to == "" {
				return writeNDJSON(g.stdout, gen, sf.count)
			}
			return simulateTo(cmd.Context(), g, &sf, gen)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sf.kind, "kind", "clickstream", "clickstream or iot")
	fl.Int64Var(&sf.count, "count", 1000, "how many events (with --to: 0 for no limit; with --duration and no --count, no limit)")
	fl.IntVar(&sf.o.Keys, "keys", simulate.DefaultKeys, "distinct users or devices")
	fl.Uint64Var(&sf.o.Seed, "seed", 1, "seed: the same seed gives the same events (timestamps aside)")
	fl.Float64Var(&sf.o.Duplicates, "duplicates", 0, "fraction of events re-sent with the same id, 0..1")
	fl.Float64Var(&sf.o.Bad, "bad", 0, "fraction of malformed events, 0..1")
	fl.Float64Var(&sf.o.Bursts, "bursts", 0, "probability, 0..1, that an event starts a burst of --burst-size events of its key")
	fl.IntVar(&sf.o.BurstSize, "burst-size", simulate.DefaultBurstSize, "events in a burst")
	fl.Float64Var(&sf.o.Silences, "silences", 0, "probability, 0..1, that a key goes quiet after an event")
	fl.DurationVar(&sf.o.Silence, "silence", simulate.DefaultSilence, "mean length of a silence")
	fl.Float64Var(&sf.o.Drift, "drift", 0, "iot: steps of a sensor's walk per reading that a device's readings wander by (0: none)")
	fl.StringVar(&sf.to, "to", "", "send to http(s)://HOST:PORT/v1/pipelines/NAME/events or mqtt(s)://HOST:PORT instead of writing stdout")
	fl.Float64Var(&sf.rate, "rate", defaultSimulateRate, "with --to: events per second")
	fl.DurationVar(&sf.duration, "duration", 0, "with --to: stop after this long (0: no limit)")
	fl.StringVar(&sf.tokenEnv, "token-env", "", "with an http(s) --to: environment variable holding the bearer token")
	fl.StringVar(&sf.topic, "topic", "", `with an mqtt(s) --to: topic template (default "sensors/{device_id}/{sensor}" for iot, "clicks/{user_id}" for clickstream)`)
	fl.IntVar(&sf.batch, "batch", simulate.DefaultHTTPBatch, "with an http(s) --to: events per request")
	fl.IntVar(&sf.conc, "concurrency", 0, fmt.Sprintf("with --to: requests in flight (HTTP, default %d) or publishes awaiting their PUBACK (MQTT, default %d)", simulate.DefaultHTTPConcurrency, simulate.DefaultMQTTInFlight))
	fl.IntVar(&sf.conns, "connections", simulate.DefaultMQTTConnections, "with an mqtt(s) --to: connections to the broker")
	fl.BoolVar(&sf.gzip, "gzip", false, "with an http(s) --to: gzip each request body")
	fl.StringVar(&sf.user, "username", "", "with an mqtt(s) --to: MQTT user name")
	fl.StringVar(&sf.passEnv, "password-env", "", "with an mqtt(s) --to: environment variable holding the MQTT password")
	fl.StringVar(&sf.ca, "ca", "", "with an https or mqtts --to: PEM file of the CA(s) the server's certificate must chain to (default: the system's)")
	return cmd
}

// check validates the flags, every problem at once, and settles the
// defaults that depend on others.
func (sf *simulateFlags) check(cmd *cobra.Command) error {
	var errs []error
	addf := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	changed := cmd.Flags().Changed
	if sf.kind != pipelines.SimulateClickstream && sf.kind != pipelines.SimulateIoT {
		addf("--kind %q: want clickstream or iot", sf.kind)
	}
	if sf.o.Keys < 1 {
		addf("--keys %d: must be at least 1", sf.o.Keys)
	}
	fraction := func(name string, v float64) {
		if !(v >= 0 && v <= 1) {
			addf("--%s %v: want a fraction from 0 to 1", name, v)
		}
	}
	fraction("duplicates", sf.o.Duplicates)
	fraction("bad", sf.o.Bad)
	fraction("bursts", sf.o.Bursts)
	fraction("silences", sf.o.Silences)
	if sf.o.BurstSize < 2 {
		addf("--burst-size %d: must be at least 2", sf.o.BurstSize)
	}
	if sf.o.Silence <= 0 {
		addf("--silence %v: must be positive", sf.o.Silence)
	}
	if !(sf.o.Drift >= 0) || sf.o.Drift > 1e6 {
		addf("--drift %v: must be 0 or more", sf.o.Drift)
	}
	if sf.o.Drift > 0 && sf.kind == pipelines.SimulateClickstream {
		addf("--drift: only iot readings drift")
	}
	// A value that is no variable name is likely the secret itself, given
	// where its name belongs: it is named by its flag only, never quoted.
	for _, ev := range []struct{ flag, name string }{{"token-env", sf.tokenEnv}, {"password-env", sf.passEnv}} {
		if changed(ev.flag) && !envNameRE.MatchString(ev.name) {
			addf("--%s: want the name of an environment variable (%s) that holds the secret, not the secret itself (the value given is not shown)", ev.flag, envNameRE)
		}
	}
	if sf.to == "" {
		for _, name := range []string{"rate", "duration", "token-env", "topic", "batch", "concurrency", "connections", "gzip", "username", "password-env", "ca"} {
			if changed(name) {
				addf("--%s: only with --to", name)
			}
		}
		if sf.count < 1 {
			addf("--count %d: must be at least 1", sf.count)
		}
		return errors.Join(errs...)
	}
	if changed("duration") && !changed("count") {
		sf.count = 0
	}
	if sf.count < 0 {
		addf("--count %d: must be 0 (no limit) or more", sf.count)
	}
	if sf.duration < 0 {
		addf("--duration %v: must be 0 (no limit) or more", sf.duration)
	}
	if !(sf.rate > 0) || sf.rate > 1e9 {
		addf("--rate %v: want events per second, above 0", sf.rate)
	}
	if sf.conc < 0 || (changed("concurrency") && sf.conc == 0) {
		addf("--concurrency %d: must be at least 1", sf.conc)
	}
	u, err := url.Parse(sf.to)
	if err != nil || u.Host == "" {
		addf("--to %q: want http(s)://HOST:PORT/v1/pipelines/NAME/events or mqtt(s)://HOST:PORT", redisurl.RedactText(sf.to))
		return errors.Join(errs...)
	}
	if u.User != nil {
		addf("--to: no user or password in the URL (give --token-env, or --username and --password-env)")
	}
	httpOnly := []string{"token-env", "batch", "gzip"}
	mqttOnly := []string{"topic", "connections", "username", "password-env"}
	only := func(names []string, what string) {
		for _, name := range names {
			if changed(name) {
				addf("--%s: only with an %s --to", name, what)
			}
		}
	}
	switch u.Scheme {
	case "http", "https":
		only(mqttOnly, "mqtt(s)")
		if sf.batch < 1 {
			addf("--batch %d: must be at least 1", sf.batch)
		}
		if !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/events") {
			addf("--to %s: want the route of a pipeline, http(s)://HOST:PORT/v1/pipelines/NAME/events", u.Redacted())
		}
	case "mqtt", "mqtts", "tcp", "ssl":
		only(httpOnly, "http(s)")
		if sf.topic == "" {
			sf.topic = defaultTopics[sf.kind]
		}
		if _, err := simulate.ParseTopic(sf.topic); err != nil {
			addf("--topic: %v", err)
		}
		if sf.conns < 1 {
			addf("--connections %d: must be at least 1", sf.conns)
		}
		if sf.user == "" && sf.passEnv != "" {
			addf("--password-env: needs --username")
		}
	default:
		addf("--to %s: want http://, https://, mqtt:// or mqtts://", u.Redacted())
	}
	if sf.ca != "" && u.Scheme != "https" && u.Scheme != "mqtts" && u.Scheme != "ssl" {
		addf("--ca: only with an https or mqtts --to")
	}
	return errors.Join(errs...)
}

// writeNDJSON writes count events to w, one per line.
func writeNDJSON(w io.Writer, gen simulate.Generator, count int64) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	for range count {
		ev, _ := gen.Next()
		if _, err := bw.Write(append(ev, '\n')); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// deliverer is a network Sink of package simulate.
type deliverer interface {
	simulate.Sink
	Delivery() simulate.Delivery
}

// simulateTo sends the events of gen as sf says and prints the summary.
func simulateTo(ctx context.Context, g *globals, sf *simulateFlags, gen simulate.Generator) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	sink, where, closeSink, err := newSimulateSink(sf, newRetryLog(log))
	if err != nil {
		return err
	}
	defer closeSink()

	// A signal stops the events from being made; those made are still
	// delivered for simulateGrace.
	deliver, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(simulateGrace, cancel) })
	defer stop()
	f := &simulate.Feeder{
		Generator: gen,
		Sink:      softSink{sink: sink, ctx: deliver},
		Rate:      sf.rate,
		Limit:     sf.count,
		Duration:  sf.duration,
	}
	log.Info("simulate_started", zap.String("kind", sf.kind), zap.String("to", where), zap.Float64("rate", sf.rate),
		zap.Int64("count", sf.count), zap.Duration("duration", sf.duration))
	start := time.Now()
	runErr := f.Run(ctx)
	took := time.Since(start)
	d := sink.Delivery()
	if errors.Is(runErr, simulate.ErrUnreachable) && d.Accepted+d.Rejected == 0 {
		// Nothing got there: no "sent N" to mislead; the error says why.
		fmt.Fprintf(g.stdout, "nothing delivered to %s: not reached; %d %s events made, none confirmed\n", where, d.Sent, sf.kind)
		return runErr
	}
	fmt.Fprintln(g.stdout, summary(sf.kind, where, d, took, ctx.Err() != nil))
	if d.NoSubscribers > 0 {
		fmt.Fprintf(g.stdout, "warning: the broker had no subscriber for %d of the publishes: they went nowhere (is the MQTT source running and subscribed to the --topic?)\n", d.NoSubscribers)
	}
	return runErr
}

// softSink sends on its own ctx, not the Feeder's, so that a signal stops
// the Feeder making events while the batch in progress is delivered.
type softSink struct {
	sink simulate.Sink
	ctx  context.Context
}

func (s softSink) Send(_ context.Context, batch []simulate.Event) error {
	return s.sink.Send(s.ctx, batch)
}

// newSimulateSink makes the HTTP or MQTT sink of sf.to, and says where it
// sends, for the log and the summary.
func newSimulateSink(sf *simulateFlags, retrying func(string, time.Duration)) (deliverer, string, func(), error) {
	u, _ := url.Parse(sf.to) // checked
	var roots *x509.CertPool
	if sf.ca != "" {
		pem, err := os.ReadFile(sf.ca)
		if err != nil {
			return nil, "", nil, usageError{fmt.Errorf("--ca: %w", err)}
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, "", nil, usageError{fmt.Errorf("--ca %s: no PEM certificate in it", sf.ca)}
		}
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	switch u.Scheme {
	case "http", "https":
		h := &simulate.HTTP{URL: sf.to, Batch: sf.batch, Concurrency: sf.conc, Gzip: sf.gzip, Retrying: retrying}
		if sf.tokenEnv != "" {
			tok := os.Getenv(sf.tokenEnv)
			if tok == "" {
				return nil, "", nil, usageError{fmt.Errorf("--token-env %s: the environment variable %s is unset or empty", sf.tokenEnv, sf.tokenEnv)}
			}
			h.Token = tok
		}
		conc := sf.conc
		if conc == 0 {
			conc = simulate.DefaultHTTPConcurrency
		}
		tr := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // the standard library's
		tr.MaxIdleConnsPerHost = conc
		tr.TLSClientConfig = tlsConfig
		h.Client = &http.Client{Timeout: simulate.DefaultHTTPTimeout, Transport: tr}
		return h, u.Redacted(), func() {}, nil
	default:
		topic, _ := simulate.ParseTopic(sf.topic) // checked
		m := &simulate.MQTT{Broker: sf.to, Topic: topic, Connections: sf.conns, InFlight: sf.conc, Username: sf.user, TLS: tlsConfig, Retrying: retrying}
		if sf.passEnv != "" {
			pw := os.Getenv(sf.passEnv)
			if pw == "" {
				return nil, "", nil, usageError{fmt.Errorf("--password-env %s: the environment variable %s is unset or empty", sf.passEnv, sf.passEnv)}
			}
			m.Password = []byte(pw)
		}
		return m, u.Redacted() + " (topic " + sf.topic + ")", func() { _ = m.Close() }, nil
	}
}

// summary is the line eddy simulate --to prints at the end.
func summary(kind, where string, d simulate.Delivery, took time.Duration, interrupted bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d %s events to %s in %v", d.Sent, kind, where, took.Round(time.Millisecond))
	if s := took.Seconds(); s > 0 {
		fmt.Fprintf(&b, " (%.0f/s)", float64(d.Sent)/s)
	}
	fmt.Fprintf(&b, ": accepted %d, rejected %d%s, retried %d%s", d.Accepted, d.Rejected, breakdown(d.Reasons), d.Retried, breakdown(d.Causes))
	if p := d.Pending(); p > 0 {
		note := "delivery stopped"
		if interrupted {
			note = "interrupted"
		}
		fmt.Fprintf(&b, ", not confirmed %d (%s)", p, note)
	}
	return b.String()
}

// breakdown is " (a 1, b 2)" for counts by name, in name order; "" for none.
func breakdown(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// newRetryLog returns a Retrying hook that logs a warning per cause at
// most every simulateLogEvery, with how many it held back.
func newRetryLog(log *zap.Logger) func(string, time.Duration) {
	var mu sync.Mutex
	last := map[string]time.Time{}
	held := map[string]int{}
	return func(cause string, wait time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if t, ok := last[cause]; ok && now.Sub(t) < simulateLogEvery {
			held[cause]++
			return
		}
		last[cause] = now
		log.Warn("simulate_retrying", zap.String("cause", cause), zap.Duration("wait", wait), zap.Int("suppressed", held[cause]),
			zap.String("note", "sent again until accepted or rejected: nothing is dropped"))
		held[cause] = 0
	}
}
