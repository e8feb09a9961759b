package pipelines

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"time"
)

// Defaults of the "sources.http" section: the only place they are set.
const (
	// HTTPSourceShared as sources.http.addr mounts the ingest route on the
	// http.addr listener (metrics and health) instead of a listener of its own.
	HTTPSourceShared = "shared"
	// DefaultHTTPSourceAddr is sources.http.addr when none is given.
	DefaultHTTPSourceAddr = HTTPSourceShared
	// DefaultHTTPMaxBodyBytes is the largest request body, as sent
	// (compressed or not).
	DefaultHTTPMaxBodyBytes = 8 << 20
	// DefaultHTTPMaxDecompressedBytes is the largest body once inflated.
	DefaultHTTPMaxDecompressedBytes = 64 << 20
	// DefaultHTTPMaxEvents is the most events in one request.
	DefaultHTTPMaxEvents = 10000
	// DefaultHTTPReadHeaderTimeout, DefaultHTTPReadTimeout,
	// DefaultHTTPWriteTimeout and DefaultHTTPIdleTimeout bound how long a
	// client may take to send its headers, its whole request, to read the
	// answer, and how long a kept-alive connection may idle.
	DefaultHTTPReadHeaderTimeout = 5 * time.Second
	DefaultHTTPReadTimeout       = 30 * time.Second
	DefaultHTTPWriteTimeout      = 30 * time.Second
	DefaultHTTPIdleTimeout       = 2 * time.Minute
	// DefaultHTTPMaxLag is backpressure.max_lag: entries of a pipeline's
	// input not yet delivered to its consumer group.
	DefaultHTTPMaxLag = 1000000
	// MaxHTTPTokenRate bounds sources.http.tokens.<name>.rate, events per second.
	MaxHTTPTokenRate = 1e9
	// MaxHTTPTokens bounds sources.http.tokens: each request is compared
	// with every one of them.
	MaxHTTPTokens = 1000
)

// HTTPSource is the "sources.http" section: POST /v1/pipelines/{name}/events.
// Package ingest serves it; this package only parses and validates it.
type HTTPSource struct {
	// Addr is the listen address (host:port) of the source's own
	// listener, or HTTPSourceShared to serve on http.addr's. Default
	// DefaultHTTPSourceAddr.
	Addr string `yaml:"addr"`
	// TLS, when present, serves HTTPS (own listener only). Default: plain HTTP.
	TLS *HTTPSourceTLS `yaml:"tls"`
	// Tokens are the bearer tokens that may write, by name (which logs and
	// errors show, never the secret). At least one: the source does not
	// start without (validation leaves that to it, so that a file may be
	// checked section by section).
	Tokens map[string]HTTPToken `yaml:"tokens"`
	// Limits bound each request.
	Limits HTTPLimits `yaml:"limits"`
	// ReadHeaderTimeout bounds reading a request's headers, > 0. Default
	// DefaultHTTPReadHeaderTimeout (on the shared listener, its own 5s).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included, > 0.
	// Default DefaultHTTPReadTimeout.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds the time from the end of the request's headers
	// to the end of the answer, > 0. Default DefaultHTTPWriteTimeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout bounds how long a kept-alive connection waits for its
	// next request, > 0 (own listener; the shared one keeps Go's default).
	// Default DefaultHTTPIdleTimeout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Backpressure refuses requests (503) while a pipeline is behind.
	Backpressure HTTPBackpressure `yaml:"backpressure"`
	// Validate checks each event against its pipeline's schema step before
	// appending it, and rejects it (400) when it breaks it. Default false:
	// the pipeline's schema step dead-letters it.
	Validate bool `yaml:"validate"`
}

// HTTPSourceTLS is "sources.http.tls". Both files are required.
type HTTPSourceTLS struct {
	// CertFile is the PEM certificate (chain) the source serves.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
}

// HTTPToken is one token of "sources.http.tokens". The secret itself is
// never in the file: exactly one of Env and File says where it is, and it
// is read when the source starts.
type HTTPToken struct {
	// Env is the environment variable that holds the secret.
	Env string `yaml:"env"`
	// File is a file whose content is the secret (one trailing newline
	// dropped), such as a mounted secret.
	File string `yaml:"file"`
	// Pipelines are the pipelines the token may write to; at least one.
	Pipelines []string `yaml:"pipelines"`
	// Rate is events per second the token may send, >= 0. Default 0: no limit.
	Rate float64 `yaml:"rate"`
	// Burst is the most events above Rate the token may send at once, and
	// so the most in one request, >= 1. Default: Rate rounded up (one
	// second's worth), at least 1. Used only with a Rate.
	Burst int `yaml:"burst"`
}

// HTTPLimits is "sources.http.limits". Each limit exceeded answers 413
// naming it.
type HTTPLimits struct {
	// MaxBodyBytes caps the body as sent, >= 1. Default DefaultHTTPMaxBodyBytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxDecompressedBytes caps a gzip body once inflated (counted while
	// inflating), >= 1. Default DefaultHTTPMaxDecompressedBytes.
	MaxDecompressedBytes int64 `yaml:"max_decompressed_bytes"`
	// MaxEventBytes caps one event's JSON, >= 1, or -1 for no cap.
	// Default 0: the pipeline's max_event_bytes.
	MaxEventBytes int `yaml:"max_event_bytes"`
	// MaxEvents caps the events in one request, >= 1. Default DefaultHTTPMaxEvents.
	MaxEvents int `yaml:"max_events"`
}

// HTTPBackpressure is "sources.http.backpressure".
type HTTPBackpressure struct {
	// MaxLag is the most entries of a pipeline's input not yet delivered
	// to its consumer group (summed over partitions) before requests to it
	// are refused, >= 1, or -1 for no bound. Default DefaultHTTPMaxLag.
	MaxLag int64 `yaml:"max_lag"`
	// MaxLatency is the longest Redis may take to answer the lag probe
	// before requests are refused, >= 0. Default 0: no bound.
	MaxLatency time.Duration `yaml:"max_latency"`
}

func validateHTTPSource(c *checker, path string, s *HTTPSource, f *File, pipelines map[string]int) {
	at := func(key string) string { return path + "." + key }
	set := func(key string) bool { return c.has(at(key)) }
	shared := !set("addr") || s.Addr == HTTPSourceShared
	switch {
	case shared:
		if a := f.HTTP.Addr; c.has("http.addr") && (a == "" || a == "off") {
			c.addf(at("addr"), "%q mounts the source on http.addr, which is off: give the source an address of its own (host:port) or turn http.addr on", HTTPSourceShared)
		}
	case !validHostPort(s.Addr):
		c.addf(at("addr"), "want host:port or %q, got %q", HTTPSourceShared, s.Addr)
	}
	if t := s.TLS; t != nil {
		if shared {
			c.addf(at("tls"), "needs a listener of its own: set addr to host:port (the shared http.addr listener has no TLS)")
		}
		if t.CertFile == "" {
			c.addf(at("tls.cert_file"), "required in tls")
		}
		if t.KeyFile == "" {
			c.addf(at("tls.key_file"), "required in tls")
		}
	}
	if len(s.Tokens) > MaxHTTPTokens {
		c.addf(at("tokens"), "%d tokens, over %d", len(s.Tokens), MaxHTTPTokens)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Tokens)) {
		validateHTTPToken(c, at("tokens")+"."+name, name, s.Tokens[name], pipelines)
	}
	l := s.Limits
	for _, k := range []struct {
		key string
		v   int64
	}{{"limits.max_body_bytes", l.MaxBodyBytes}, {"limits.max_decompressed_bytes", l.MaxDecompressedBytes}, {"limits.max_events", int64(l.MaxEvents)}} {
		if set(k.key) && k.v < 1 {
			c.addf(at(k.key), "must be at least 1")
		}
	}
	if set("limits.max_event_bytes") && l.MaxEventBytes != -1 && l.MaxEventBytes < 1 {
		c.addf(at("limits.max_event_bytes"), "must be at least 1, or -1 for no cap")
	}
	for _, k := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", s.ReadHeaderTimeout}, {"read_timeout", s.ReadTimeout}, {"write_timeout", s.WriteTimeout}, {"idle_timeout", s.IdleTimeout}} {
		if set(k.key) {
			positive(c, at(k.key), k.v)
		}
	}
	b := s.Backpressure
	if set("backpressure.max_lag") && b.MaxLag != -1 && b.MaxLag < 1 {
		c.addf(at("backpressure.max_lag"), "must be at least 1, or -1 for no bound")
	}
	if set("backpressure.max_latency") && b.MaxLatency < 0 {
		c.addf(at("backpressure.max_latency"), "must be at least 0 (0: no bound)")
	}
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func validateHTTPToken(c *checker, path, name string, t HTTPToken, pipelines map[string]int) {
	at := func(key string) string { return path + "." + key }
	if !tokenNameRE.MatchString(name) {
		c.addf(path, "token name %q must match %s", name, tokenNameRE)
	}
	switch {
	case t.Env != "" && t.File != "":
		c.addf(at("env"), "set env or file, not both")
	case t.Env == "" && t.File == "":
		c.addf(at("env"), "set env (a variable holding the secret) or file (a file holding it); the secret itself never goes in the config")
	case t.Env != "" && !envNameRE.MatchString(t.Env):
		c.addf(at("env"), "want the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*), got %q", t.Env)
	}
	if len(t.Pipelines) == 0 {
		c.addf(at("pipelines"), "at least one pipeline is required")
	}
	for i, name := range t.Pipelines {
		if _, ok := pipelines[name]; !ok {
			c.addf(fmt.Sprintf("%s[%d]", at("pipelines"), i), "no pipeline named %q in this file", name)
		}
	}
	if c.has(at("rate")) && !(t.Rate >= 0 && t.Rate <= MaxHTTPTokenRate) {
		c.addf(at("rate"), "must be a number from 0 (no limit) to %g", float64(MaxHTTPTokenRate))
	}
	if c.has(at("burst")) && t.Burst < 1 {
		c.addf(at("burst"), "must be at least 1")
	}
}

func setHTTPSourceDefaults(c *checker, path string, s *HTTPSource) {
	if s.Addr == "" {
		s.Addr = DefaultHTTPSourceAddr
	}
	l := &s.Limits
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultHTTPMaxBodyBytes
	}
	if l.MaxDecompressedBytes == 0 {
		l.MaxDecompressedBytes = DefaultHTTPMaxDecompressedBytes
	}
	if l.MaxEvents == 0 {
		l.MaxEvents = DefaultHTTPMaxEvents
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&s.ReadHeaderTimeout, DefaultHTTPReadHeaderTimeout}, {&s.ReadTimeout, DefaultHTTPReadTimeout}, {&s.WriteTimeout, DefaultHTTPWriteTimeout}, {&s.IdleTimeout, DefaultHTTPIdleTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.Backpressure.MaxLag == 0 {
		s.Backpressure.MaxLag = DefaultHTTPMaxLag
	}
	for name, t := range s.Tokens {
		if t.Burst == 0 {
			t.Burst = max(int(math.Ceil(t.Rate)), 1)
			s.Tokens[name] = t
		}
	}
}
