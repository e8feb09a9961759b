package pipelines

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const httpSourceHead = `pipelines:
  - name: clicks
    input: {stream: clicks}
    key: user_id
  - name: iot
    input: {stream: iot}
    key: device_id
`

func TestHTTPSourceDefaults(t *testing.T) {
	t.Parallel()
	f := parse(t, httpSourceHead+`sources:
  http:
    tokens:
      web: {env: WEB_TOKEN, pipelines: [clicks]}
      plant: {file: /run/secrets/plant, pipelines: [clicks, iot], rate: 2.5}
      batch: {env: B, pipelines: [iot], rate: 100, burst: 1_000}
`)
	got := f.Sources.HTTP
	want := &HTTPSource{
		Addr: HTTPSourceShared,
		Tokens: map[string]HTTPToken{
			"web":   {Env: "WEB_TOKEN", Pipelines: []string{"clicks"}, Burst: 1},
			"plant": {File: "/run/secrets/plant", Pipelines: []string{"clicks", "iot"}, Rate: 2.5, Burst: 3},
			"batch": {Env: "B", Pipelines: []string{"iot"}, Rate: 100, Burst: 1000},
		},
		Limits: HTTPLimits{
			MaxBodyBytes: DefaultHTTPMaxBodyBytes, MaxDecompressedBytes: DefaultHTTPMaxDecompressedBytes,
			MaxEvents: DefaultHTTPMaxEvents,
		},
		ReadHeaderTimeout: DefaultHTTPReadHeaderTimeout, ReadTimeout: DefaultHTTPReadTimeout,
		WriteTimeout: DefaultHTTPWriteTimeout, IdleTimeout: DefaultHTTPIdleTimeout,
		Backpressure: HTTPBackpressure{MaxLag: DefaultHTTPMaxLag},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources.http =\n%+v\nwant\n%+v", got, want)
	}
}

func TestHTTPSourceAllFields(t *testing.T) {
	t.Parallel()
	f := parse(t, httpSourceHead+`sources:
  http:
    addr: 0.0.0.0:8443
    tls: {cert_file: c.pem, key_file: k.pem}
    tokens:
      web: {env: WEB_TOKEN, pipelines: [clicks]}
    limits: {max_body_bytes: 1e6, max_decompressed_bytes: 2e6, max_event_bytes: -1, max_events: 5}
    read_header_timeout: 1s
    read_timeout: 2s
    write_timeout: 3s
    idle_timeout: 4s
    backpressure: {max_lag: -1, max_latency: 250ms}
    validate: true
`)
	s := f.Sources.HTTP
	if s.Addr != "0.0.0.0:8443" || s.TLS == nil || s.TLS.KeyFile != "k.pem" || s.Limits.MaxBodyBytes != 1e6 ||
		s.Limits.MaxDecompressedBytes != 2e6 || s.Limits.MaxEventBytes != -1 || s.Limits.MaxEvents != 5 ||
		s.ReadHeaderTimeout != time.Second || s.ReadTimeout != 2*time.Second || s.WriteTimeout != 3*time.Second ||
		s.IdleTimeout != 4*time.Second || s.Backpressure.MaxLag != -1 || s.Backpressure.MaxLatency != 250*time.Millisecond ||
		!s.Validate {
		t.Errorf("sources.http = %+v", s)
	}
}

// Every problem of the section comes back at once, with its path and line.
func TestHTTPSourceProblems(t *testing.T) {
	t.Parallel()
	src := httpSourceHead + `http: {addr: "off"}
sources:
  http:
    tls: {cert_file: c.pem}
    tokens:
      both: {env: A, file: f, pipelines: [clicks]}
      neither: {pipelines: [clicks]}
      badenv: {env: "A-B", pipelines: [clicks, nope]}
      none: {env: X}
      "-x": {env: X, pipelines: [iot]}
      neg: {env: X, pipelines: [iot], rate: -1, burst: 0}
      inf: {env: X, pipelines: [iot], rate: .inf}
    limits: {max_body_bytes: 0, max_decompressed_bytes: -5, max_event_bytes: 0, max_events: 0}
    read_timeout: 0s
    idle_timeout: -1s
    backpressure: {max_lag: 0, max_latency: -1s}
`
	got := problems(t, src, nil)
	wantLines := []string{
		`test.yaml:10: sources.http.addr: "shared" mounts the source on http.addr, which is off: give the source an address of its own (host:port) or turn http.addr on`,
		`test.yaml:11: sources.http.tls: needs a listener of its own: set addr to host:port (the shared http.addr listener has no TLS)`,
		`test.yaml:13: sources.http.tokens.both.env: set env or file, not both`,
		`test.yaml:14: sources.http.tokens.neither.env: set env (a variable holding the secret) or file (a file holding it); the secret itself never goes in the config`,
		`test.yaml:15: sources.http.tokens.badenv.env: want the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*), got "A-B"`,
		`test.yaml:15: sources.http.tokens.badenv.pipelines[1]: no pipeline named "nope" in this file`,
		`test.yaml:16: sources.http.tokens.none.pipelines: at least one pipeline is required`,
		`test.yaml:17: sources.http.tokens.-x: token name "-x" must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$`,
		`test.yaml:18: sources.http.tokens.neg.rate: must be a number from 0 (no limit) to 1e+09`,
		`test.yaml:18: sources.http.tokens.neg.burst: must be at least 1`,
		`test.yaml:19: sources.http.tokens.inf.rate: must be a number from 0 (no limit) to 1e+09`,
		`test.yaml:20: sources.http.limits.max_body_bytes: must be at least 1`,
		`test.yaml:20: sources.http.limits.max_decompressed_bytes: must be at least 1`,
		`test.yaml:20: sources.http.limits.max_events: must be at least 1`,
		`test.yaml:20: sources.http.limits.max_event_bytes: must be at least 1, or -1 for no cap`,
		`test.yaml:21: sources.http.read_timeout: must be greater than 0`,
		`test.yaml:22: sources.http.idle_timeout: must be greater than 0`,
		`test.yaml:23: sources.http.backpressure.max_lag: must be at least 1, or -1 for no bound`,
		`test.yaml:23: sources.http.backpressure.max_latency: must be at least 0 (0: no bound)`,
	}
	slices.Sort(got)
	slices.Sort(wantLines)
	if !slices.Equal(got, wantLines) {
		t.Errorf("Parse problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestHTTPSourceDecodeProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{"    tokens: {a: {env: A, pipelines: [clicks], burst: 2.5}}\n",
			`test.yaml:10: sources.http.tokens.a.burst: want an integer, got "2.5"`},
		{"    tokens: {a: {env: A, pipelines: [clicks]}}\n    limits: {max_events: 1e-3}\n",
			`test.yaml:11: sources.http.limits.max_events: want an integer, got "1e-3"`},
		{"    tokens: {a: {env: A, pipelines: [clicks]}}\n    limits: {max_body_bytes: 1.5}\n",
			`test.yaml:11: sources.http.limits.max_body_bytes: want an integer, got "1.5"`},
		{"    tokens: {a: {env: A, pipelines: [clicks]}}\n    backpressure: {max_lag: .nan}\n",
			`test.yaml:11: sources.http.backpressure.max_lag: want an integer, got ".nan"`},
		{"    tokens:\n      a: {env: A, pipelines: [clicks]}\n      a: {env: B, pipelines: [iot]}\n",
			`test.yaml:12: sources.http.tokens.a: duplicate key (first at line 11)`},
		{"    tokens: {a: {env: A, pipelines: [clicks], secret: s3cr3t}}\n",
			`test.yaml:10: sources.http.tokens.a.secret: unknown key (want one of: burst, env, file, pipelines, rate)`},
		{"    addr: 127.0.0.1:8443\n    tls: {key_file: k.pem}\n    tokens: {a: {env: A, pipelines: [clicks]}}\n",
			`test.yaml:11: sources.http.tls.cert_file: required in tls`},
		{"    tokens: [{env: A}]\n",
			`test.yaml:10: sources.http.tokens: want a mapping, got a list`},
		{"    addr: localhost\n    tokens: {a: {env: A, pipelines: [clicks]}}\n",
			`test.yaml:10: sources.http.addr: want host:port or "shared", got "localhost"`},
		{"    tokens: {a: {env: A, pipelines: [clicks]}}\n    read_timeout: 10\n",
			`test.yaml:11: sources.http.read_timeout: invalid duration "10": want a Go duration such as 500ms, 10s or 24h`},
	} {
		got := problems(t, httpSourceHead+"sources:\n  http:\n"+tc.body, nil)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("Parse(%q) problems = %q, want only %q", tc.body, got, tc.want)
		}
	}
}

// The defaults on docs/configuration.md's HTTP source table are the code's.
func TestHTTPSourceDocumentedDefaults(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"sources.http.addr":                          code(DefaultHTTPSourceAddr),
		"sources.http.tokens.<name>.rate":            code(0),
		"sources.http.limits.max_body_bytes":         code(DefaultHTTPMaxBodyBytes),
		"sources.http.limits.max_decompressed_bytes": code(DefaultHTTPMaxDecompressedBytes),
		"sources.http.limits.max_events":             code(DefaultHTTPMaxEvents),
		"sources.http.read_header_timeout":           code(DefaultHTTPReadHeaderTimeout),
		"sources.http.read_timeout":                  code(DefaultHTTPReadTimeout),
		"sources.http.write_timeout":                 code(DefaultHTTPWriteTimeout),
		"sources.http.idle_timeout":                  code(DefaultHTTPIdleTimeout),
		"sources.http.backpressure.max_lag":          code(DefaultHTTPMaxLag),
		"sources.http.backpressure.max_latency":      code(time.Duration(0)),
		"sources.http.validate":                      code(false),
	}
	notValues := map[string]bool{"": true, "none": true, "—": true, "required": true, "required in `tls`": true,
		"the pipeline's": true, "rate, rounded up": true}
	rows := docTable(t, "## HTTP source")
	for path, w := range want {
		if got, ok := rows[path]; !ok || got != w {
			t.Errorf("docs/configuration.md: `%s` default %q, want %s (the code's)", path, got, w)
		}
	}
	for path, got := range rows {
		if _, ok := want[path]; !ok && !notValues[got] {
			t.Errorf("docs/configuration.md: `%s` default %s is not checked: add it to this test", path, got)
		}
	}
}
