package pipelines

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// File is a loaded, validated config file. After Load or Parse every
// default below has been filled in, except the engine defaults that
// processor.Options documents (a zero there means "the engine's default",
// one of processor's Default* constants).
//
// An integer field takes an integer (1000, 1_000, 0x3e8) or a float that is
// exactly one (1e3, 1.0); a fraction (1.5, 1e-3), .inf or .nan is a
// problem, never truncated.
type File struct {
	// Name is the file name given to Load or Parse.
	Name string `yaml:"-"`
	// Redis says where Redis is; nil means the embedded in-memory Redis
	// (demo mode).
	Redis *Redis `yaml:"redis"`
	// HTTP configures the metrics and health endpoint.
	HTTP HTTP `yaml:"http"`
	// Console configures the web console served on the http.addr listener.
	Console Console `yaml:"console"`
	// Simulate lists generated loads for the demo.
	Simulate []Simulate `yaml:"simulate"`
	// Sources are the HTTP and MQTT ingest sources; nil means none.
	Sources *Sources `yaml:"sources"`
	// Schemas registers JSON Schemas by event type and version.
	Schemas []Schema `yaml:"schemas"`
	// Pipelines are the pipelines to run; at least one.
	Pipelines []*Pipeline `yaml:"pipelines"`
	// Tracing configures OpenTelemetry spans of the pipelines' commits;
	// nil means off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
	Tracing *Tracing `yaml:"tracing"`
}

// Tracing is the "tracing" section. Every event's W3C trace context (the
// stream field traceparent) is carried to outputs and dead letters
// whether or not it is set; this section is about spans: one per commit
// of a batch, linked to its events' traces, exported over OTLP/HTTP by
// cmd/eddy.
type Tracing struct {
	// OTLPEndpoint is the OTLP/HTTP collector's base URL, such as
	// "http://localhost:4318" (spans go to its /v1/traces). Default: the
	// environment's OTEL_EXPORTER_OTLP_ENDPOINT; with neither, no span is
	// recorded.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the fraction of commits recorded whose batch has no
	// event of a sampled trace (one with such an event always is), 0..1.
	// nil means 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// validateTracing checks the tracing section.
func validateTracing(c *checker, t *Tracing) {
	if t == nil {
		return
	}
	if e := t.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.addf("tracing.otlp_endpoint", "want an http:// or https:// URL, got %q", e)
		}
	}
	if r := t.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		c.addf("tracing.sample_ratio", "must be between 0 and 1")
	}
}

// Pipeline returns the pipeline with the given name, or nil.
func (f *File) Pipeline(name string) *Pipeline {
	for _, p := range f.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Redis is the "redis" section. Exactly one of URL and Addrs is set.
// The password may come from the URL, Password, PasswordEnv or
// PasswordFile: from one of them at most. This package only checks the
// section; cmd/eddy reads the environment variable and the files when it
// connects.
type Redis struct {
	// URL is a redis:// or rediss:// URL of a single server (or of a node
	// of a Redis Cluster, which eddy then uses as a Cluster seed).
	URL string `yaml:"url"`
	// Addrs are host:port seed addresses of a Redis Cluster.
	Addrs []string `yaml:"addrs"`
	// Username is the ACL user. Default (""): the URL's, else "default".
	Username string `yaml:"username"`
	// Password is the password itself. Discouraged: the file then holds a
	// secret; use PasswordEnv or PasswordFile. Default (""): none.
	Password string `yaml:"password"`
	// PasswordEnv names the environment variable that holds the password;
	// connecting fails if it is unset or empty. Default (""): none.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile is a file whose content is the password (one trailing
	// newline dropped), such as a mounted secret. Default (""): none.
	PasswordFile string `yaml:"password_file"`
	// TLS, when present (even empty), makes every connection use TLS, as
	// a rediss:// URL does. Default (nil): TLS only for rediss://.
	TLS *RedisTLS `yaml:"tls"`
}

// RedisTLS is the "redis.tls" section.
type RedisTLS struct {
	// CAFile is a PEM file of the certificate authorities that the
	// server's certificate must chain to. Default (""): the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// a server that wants one (tls-auth-clients). Both or neither.
	// Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry.
	// Default (""): the host connected to (each node's own on a Cluster).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate from the server: anyone
	// on the path can read and change the traffic. Unsafe; for tests only.
	// Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// DefaultHTTPAddr is the HTTP listen address when none is given.
const DefaultHTTPAddr = "127.0.0.1:9180"

// HTTP is the "http" section.
type HTTP struct {
	// Addr is the listen address. Default DefaultHTTPAddr; "" or "off" in
	// the file disables the endpoint, which Load reports as "".
	Addr string `yaml:"addr"`
}

// Console is the "console" section: the web console that eddy console
// serves on the http.addr listener. It is read-only unless an
// admin token is given, in AdminTokenEnv or AdminTokenFile (at most one);
// then replaying and deleting dead letters need it. This package only
// parses the section; cmd/eddy reads the token when it starts.
type Console struct {
	// Off turns the console off: eddy console refuses to start. Default
	// false: on.
	Off bool `yaml:"off"`
	// AdminTokenEnv names the environment variable that holds the admin
	// token; starting fails if it is unset or empty. Default (""): none.
	AdminTokenEnv string `yaml:"admin_token_env"`
	// AdminTokenFile is a file whose content is the admin token (one
	// trailing newline dropped), such as a mounted secret. Default (""):
	// none.
	AdminTokenFile string `yaml:"admin_token_file"`
}

// Simulated load kinds; package simulate generates their events.
const (
	SimulateClickstream = "clickstream"
	SimulateIoT         = "iot"
)

// Simulate is one entry of the "simulate" list: a generated load for the
// demo. This package only parses and validates it.
type Simulate struct {
	// Pipeline names the pipeline in this file whose input receives the load.
	Pipeline string `yaml:"pipeline"`
	// Kind is SimulateClickstream or SimulateIoT.
	Kind string `yaml:"kind"`
	// Rate is events per second, > 0. Default DefaultSimulateRate.
	Rate float64 `yaml:"rate"`
	// Keys is how many distinct users or devices there are,
	// 1..MaxSimulateKeys. Default DefaultSimulateKeys.
	Keys int `yaml:"keys"`
	// Duplicates is the fraction of events re-sent with the same event id, 0..1.
	Duplicates float64 `yaml:"duplicates"`
	// Bad is the fraction of malformed events (not JSON, no key), 0..1.
	Bad float64 `yaml:"bad"`
	// Via is the way the load goes in: "" (default) appends to the
	// pipeline's input stream directly; SimulateViaHTTP posts it to this
	// file's HTTP source (sources.http) with a token allowed for the
	// pipeline; "mqtt:<source>" publishes it to the broker of this file's
	// MQTT source of that name, on a topic made from the source's topic
	// filter for the pipeline, its named levels filled from each event.
	// Either way it is then handled as any client's would be: the demo
	// shows its ingest paths at work.
	Via string `yaml:"via"`
}

// SimulateViaHTTP sends a simulate entry's load through the HTTP source;
// SimulateViaMQTT, followed by a source name, through an MQTT source.
const (
	SimulateViaHTTP = "http"
	SimulateViaMQTT = "mqtt:"
)

// ViaMQTT returns the MQTT source and its topic filter for the pipeline
// that a simulate entry with Via "mqtt:<name>" publishes through.
func (f *File) ViaMQTT(s Simulate) (*MQTTSource, string, bool) {
	name, ok := strings.CutPrefix(s.Via, SimulateViaMQTT)
	if !ok || f.Sources == nil {
		return nil, "", false
	}
	for i := range f.Sources.MQTT {
		src := &f.Sources.MQTT[i]
		if src.Name != name {
			continue
		}
		for _, t := range src.Topics {
			if t.Pipeline == s.Pipeline {
				return src, t.Filter, true
			}
		}
	}
	return nil, "", false
}

// ViaHTTPToken returns the name and the token of sources.http that a
// simulate entry with Via "http" sends with: the first, by name, allowed
// for the pipeline.
func (f *File) ViaHTTPToken(s Simulate) (string, HTTPToken, bool) {
	if s.Via != SimulateViaHTTP || f.Sources == nil || f.Sources.HTTP == nil {
		return "", HTTPToken{}, false
	}
	for _, name := range sortedKeys(f.Sources.HTTP.Tokens) {
		if tok := f.Sources.HTTP.Tokens[name]; slices.Contains(tok.Pipelines, s.Pipeline) {
			return name, tok, true
		}
	}
	return "", HTTPToken{}, false
}

// Pipeline is one entry of the "pipelines" list. Its Options, Decoder and
// Handler are ready once Load or Parse has returned it.
type Pipeline struct {
	// Name names the pipeline: ^[a-z0-9][a-z0-9_-]*$, unique in the file.
	Name string `yaml:"name"`
	// Input says what the pipeline reads.
	Input Input `yaml:"input"`
	// Key is the path of the message key in the payload (a dotted path into
	// the JSON object, or a field name when Input.Payload is ""). Required.
	Key string `yaml:"key"`
	// Dedupe enables deduplication; nil means off.
	Dedupe *Dedupe `yaml:"dedupe"`

	// BatchSize is entries per read and per commit, 1..MaxBatchSize.
	// 0: processor.DefaultBatchSize.
	BatchSize int `yaml:"batch_size"`
	// Block is the longest wait for new entries, > 0. 0: processor.DefaultBlock.
	Block time.Duration `yaml:"block"`
	// Lanes is how many keys are handled in parallel, 1..MaxLanes.
	// 0: processor.DefaultLanes.
	Lanes int `yaml:"lanes"`
	// MaxInflight caps entries read but not committed per partition,
	// BatchSize..MaxInflight. 0: processor.DefaultInflightBatches × BatchSize.
	// Input.Partitions × MaxInflight is at most MaxInflightEntries, with the
	// defaults for what the file leaves out.
	MaxInflight int `yaml:"max_inflight"`
	// MaxEventBytes dead-letters entries whose fields add up to more bytes;
	// -1 disables the check. 0: processor.DefaultMaxEventBytes.
	MaxEventBytes int `yaml:"max_event_bytes"`
	// ShutdownTimeout bounds the soft stop, > 0.
	// 0: processor.DefaultShutdownTimeout.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Ordering is processor.OrderingKey (the default: each partition has one
	// owner at a time, entries of a key are handled in order across workers)
	// or processor.OrderingNone (every worker reads every partition; no
	// order across workers).
	Ordering string `yaml:"ordering"`
	// Group times the worker pool: membership heartbeats and leases.
	Group GroupTiming `yaml:"group"`
	// Retry configures retries of transient failures.
	Retry Retry `yaml:"retry"`
	// DeadLetter configures the dead-letter stream.
	DeadLetter DeadLetter `yaml:"dead_letter"`

	// StepTimeout bounds one attempt of an event's steps, > 0; an attempt
	// past it is retried like a transient failure. 0: engine default (30s).
	StepTimeout time.Duration `yaml:"step_timeout"`
	// StateCacheSize is how many keys' state an owner keeps in memory per
	// partition, >= 1. 0: engine default (10,000).
	StateCacheSize int `yaml:"state_cache_size"`
	// WrongPartition is what happens to an entry whose key routes to
	// another partition than the one it was read from: "process" (default;
	// counted and logged) or "dead_letter" (reason "wrong_partition").
	WrongPartition string `yaml:"wrong_partition"`
	// Timers tunes the firing of timers.
	Timers Timers `yaml:"timers"`

	// Steps are the step configs in order; each becomes a Step.
	Steps []StepConfig `yaml:"steps"`

	steps     []boundStep
	dec       *decoder
	eventTime *Path
	version   int // of the read model (AtVersion); 0 means 1
}

// Input is a pipeline's "input" section.
type Input struct {
	// Stream is the input stream; it must not contain '{' or '}'. Required.
	Stream string `yaml:"stream"`
	// Partitions is how many partition streams Stream is split into,
	// 1..MaxPartitions. Default processor.DefaultPartitions.
	Partitions int `yaml:"partitions"`
	// Group is the consumer group. Default: the pipeline name.
	Group string `yaml:"group"`
	// Start is where a new group starts: processor.StartOldest (default) or
	// processor.StartNewest.
	Start string `yaml:"start"`
	// Payload names the entry field holding the event as a JSON object.
	// "" (default): the entry's own fields are the event, all values strings.
	Payload string `yaml:"payload"`
	// EventTime is the path of the event's time (unix milliseconds, or an
	// RFC 3339 string), which drives the partition's watermark and so its
	// event-time timers. "" (default): events carry no time.
	EventTime string `yaml:"event_time"`
	// MaxFuture is how far ahead of the clock an event time may be: an
	// event further ahead (a device with a wrong clock, microseconds for
	// milliseconds) is dead-lettered as invalid before it can move the
	// watermark, which would close every window of its partition at once
	// and make every later event late. 0: DefaultMaxFuture; below 0: no
	// limit. Used with EventTime only.
	MaxFuture time.Duration `yaml:"max_future"`
	// Retention trims each partition stream by age and length, never past
	// an entry some consumer group of it (this pipeline's, or another's)
	// has not acknowledged. nil: not trimmed.
	Retention *Retention `yaml:"retention"`
}

// DefaultMaxFuture is input.max_future when the file leaves it out.
const DefaultMaxFuture = time.Hour

// Timers is a pipeline's "timers" section. A zero field means the engine
// default.
type Timers struct {
	// Tick is how often an owner looks for due timers, > 0. Default 100ms.
	Tick time.Duration `yaml:"tick"`
	// AllowedLateness is how far behind the highest event time seen the
	// watermark stays, >= 0. Default 0.
	AllowedLateness time.Duration `yaml:"allowed_lateness"`
	// IdleWatermark: a partition that reads nothing for this long moves
	// its watermark with the clock, > 0. Default 5s.
	IdleWatermark time.Duration `yaml:"idle_watermark"`
}

// Dedupe is a pipeline's "dedupe" section; present means enabled.
type Dedupe struct {
	// ID is the path of the event id, like Pipeline.Key. Required.
	ID string `yaml:"id"`
	// Window is how long an id is remembered, > 0. Required.
	Window time.Duration `yaml:"window"`
	// Bucket is the width of one dedupe set, > 0 and <= Window, splitting
	// it into at most MaxDedupeBuckets sets. Default Window /
	// processor.DefaultDedupeBuckets.
	Bucket time.Duration `yaml:"bucket"`
}

// GroupTiming is a pipeline's "group" section: how fast the pool notices a
// worker gone. A zero field means the engine default.
type GroupTiming struct {
	// Heartbeat is how often a worker renews its membership and leases.
	// Default processor.DefaultHeartbeat.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// SessionTimeout is how long a silent worker keeps its partitions; at
	// least twice the heartbeat. Default processor.DefaultSessionTimeout.
	SessionTimeout time.Duration `yaml:"session_timeout"`
}

// Retry is a pipeline's "retry" section. A zero field means the engine default.
type Retry struct {
	// MaxAttempts is tries per entry before it is dead-lettered,
	// 1..MaxRetryAttempts. Default processor.DefaultMaxAttempts.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the first wait between tries, > 0.
	// Default processor.DefaultBackoff.
	Backoff time.Duration `yaml:"backoff"`
	// MaxBackoff caps the wait, >= Backoff. Default processor.DefaultMaxBackoff.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// ReclaimAfter is the idle time after which another worker takes over
	// an entry, > 0. Default processor.DefaultReclaimAfter.
	ReclaimAfter time.Duration `yaml:"reclaim_after"`
}

// DeadLetter is a pipeline's "dead_letter" section.
type DeadLetter struct {
	// Stream receives dead letters. Default "<input.stream>" +
	// processor.DefaultDeadLetterSuffix.
	Stream string `yaml:"stream"`
	// MaxLen caps the stream approximately, >= 0; 0 means no cap.
	MaxLen int64 `yaml:"max_len"`
	// Retention trims the stream by age and length, never past an entry a
	// consumer group of it has not acknowledged. nil: not trimmed.
	Retention *Retention `yaml:"retention"`
}

// Retention is a "retention" section, of input, dead_letter and the
// outputs of steps: the stream is trimmed to it every
// processor.DefaultRetentionEvery by each worker of the pipeline, but
// never past an entry that some consumer group of the stream has not read
// and acknowledged; a cap held back so is reported (log line
// retention_held_back, metrics eddy_retention_*, the console). Unlike
// max_len, which trims as it appends whatever the readers' progress.
type Retention struct {
	// MaxAge trims entries older than this (by their stream id), > 0.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxLen keeps at most this many entries (of each partition stream,
	// for an input), >= 1.
	MaxLen int64 `yaml:"max_len"`
	// AbandonedAfter: a group holding trimming back whose consumers have
	// all been idle this long (with no consumer left, whose last entry read
	// is that old, or that never read one) is reported as abandoned.
	// > 0; default processor.DefaultAbandonedAfter.
	AbandonedAfter time.Duration `yaml:"abandoned_after"`
}

// retentionErrors checks a step's retention section at field.
func retentionErrors(cfg StepConfig, field string, r *Retention) []error {
	var errs []error
	for _, pr := range r.problems(func(f string) bool { return cfg.Has(joinPath(field, f)) }) {
		errs = append(errs, cfg.Errorf(joinPath(field, pr[0]), "%s", pr[1]))
	}
	return errs
}

// Engine returns r as the engine takes it (zero for nil).
func (r *Retention) Engine() processor.Retention {
	if r == nil {
		return processor.Retention{}
	}
	return processor.Retention{MaxAge: r.MaxAge, MaxLen: r.MaxLen, AbandonedAfter: r.AbandonedAfter}
}

// problems returns what is wrong with r, each with the field (under the
// retention section) it is about.
func (r *Retention) problems(has func(field string) bool) [][2]string {
	var out [][2]string
	if r == nil {
		return nil
	}
	if !has("max_age") && !has("max_len") {
		out = append(out, [2]string{"", "caps nothing: set max_age, max_len or both"})
	}
	if has("max_age") && r.MaxAge <= 0 {
		out = append(out, [2]string{"max_age", "must be greater than 0"})
	}
	if has("max_len") && r.MaxLen < 1 {
		out = append(out, [2]string{"max_len", "must be at least 1"})
	}
	if has("abandoned_after") && r.AbandonedAfter <= 0 {
		out = append(out, [2]string{"abandoned_after", "must be greater than 0"})
	}
	return out
}
