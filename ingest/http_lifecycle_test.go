package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
)

func TestHTTPTLS(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, fmt.Sprintf(httpConfig, fmt.Sprintf("    tls: {cert_file: %q, key_file: %q}\n", certs.ServerCertFile, certs.ServerKeyFile)))
	h, err := NewHTTP(f, NewSink(rdb, f), HTTPOptions{LookupEnv: lookupTestEnv})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, h)
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(certs.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("CA: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/pipelines/clicks/events", strings.NewReader(`{"user_id":"u1"}`))
	req.Header.Set("Content-Type", ContentTypeJSON)
	req.Header.Set("Authorization", "Bearer "+testEnv["WEB_TOKEN"])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST over TLS = %v", err)
	}
	a := decodeAnswer(t, resp)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || a.Accepted != 1 || resp.TLS == nil {
		t.Errorf("POST over TLS: %d %+v", resp.StatusCode, a)
	}
	// Plain HTTP to the TLS listener gets no answer of the route.
	if resp, err := http.Post("http://"+addr+"/v1/pipelines/clicks/events", ContentTypeJSON, strings.NewReader("{}")); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d, want Go's 400 for a plain request", resp.StatusCode)
		}
	}
}

// A token's secret is read when the source starts; an error names the
// token and where the secret was to be, never a secret.
func TestHTTPTokenSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "plant")
	if err := os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	base := parseFile(t, fmt.Sprintf(httpConfig, ""))
	tokens := func(ts map[string]pipelines.HTTPToken) *pipelines.File {
		f := *base
		hs := *base.Sources.HTTP
		hs.Tokens = ts
		f.Sources = &pipelines.Sources{HTTP: &hs}
		return &f
	}
	env := map[string]string{"A": "same-secret", "B": "same-secret", "C": "from-env", "E": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		name   string
		tokens map[string]pipelines.HTTPToken
		want   string
	}{
		{"unset", map[string]pipelines.HTTPToken{"web": {Env: "NOPE", Pipelines: []string{"clicks"}}},
			"sources.http.tokens.web: environment variable NOPE is unset or empty"},
		{"empty", map[string]pipelines.HTTPToken{"web": {Env: "E", Pipelines: []string{"clicks"}}},
			"sources.http.tokens.web: environment variable E is unset or empty"},
		{"no file", map[string]pipelines.HTTPToken{"web": {File: filepath.Join(dir, "missing"), Pipelines: []string{"clicks"}}},
			"sources.http.tokens.web: read the secret: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"empty file", map[string]pipelines.HTTPToken{"web": {File: empty, Pipelines: []string{"clicks"}}},
			"sources.http.tokens.web: file " + empty + " is empty"},
		{"same secret", map[string]pipelines.HTTPToken{"a": {Env: "A", Pipelines: []string{"clicks"}}, "b": {Env: "B", Pipelines: []string{"iot"}}},
			"sources.http.tokens.b: has the same secret as token a: give each token its own"},
		{"none", map[string]pipelines.HTTPToken{},
			"sources.http.tokens: at least one token is required"},
	} {
		_, err := NewHTTP(tokens(tc.tokens), nil, HTTPOptions{LookupEnv: lookup})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewHTTP = %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "same-secret") {
			t.Errorf("%s: the error shows a secret: %v", tc.name, err)
		}
	}
	h, err := NewHTTP(tokens(map[string]pipelines.HTTPToken{
		"a": {File: secretFile, Pipelines: []string{"clicks"}},
		"c": {Env: "C", Pipelines: []string{"iot"}},
	}), nil, HTTPOptions{LookupEnv: lookup})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ presented, want string }{
		{"from-a-file", "a"}, {"from-env", "c"}, {"from-a-file\n", ""}, {"from-", ""}, {"", ""},
	} {
		got := ""
		if tok := match(h.tokens, tc.presented); tok != nil {
			got = tok.name
		}
		if got != tc.want {
			t.Errorf("match(%q) = %q, want %q", tc.presented, got, tc.want)
		}
	}
	if s := fmt.Sprintf("%+v %#v", h.tokens[0], h.tokens[0]); strings.Contains(s, "from-a-file") {
		t.Errorf("a token prints its secret: %s", s)
	}
}

// Serve's soft stop lets a request in progress finish and be answered.
func TestHTTPShutdownAnswersInFlight(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, fmt.Sprintf(httpConfig, ""))
	reg := prometheus.NewRegistry()
	h, err := NewHTTP(f, NewSink(rdb, f), HTTPOptions{LookupEnv: lookupTestEnv, Metrics: metrics.NewIngest(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	// A request whose body is still coming when the stop begins.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/pipelines/clicks/events", pr)
	req.Header.Set("Content-Type", ContentTypeNDJSON)
	req.Header.Set("Authorization", "Bearer "+testEnv["WEB_TOKEN"])
	type result struct {
		resp *http.Response
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		res <- result{resp, err}
	}()
	_, _ = io.WriteString(pw, `{"user_id":"u1"}`+"\n")
	// The stop begins once the handler has the request.
	waitUntil(t, "the request in flight", func() bool {
		return gaugeValue(t, reg, "eddy_ingest_in_flight_requests", "clicks") == 1
	})
	cancel()
	_, _ = io.WriteString(pw, `{"user_id":"u2"}`+"\n")
	_ = pw.Close()
	r := <-res
	if r.err != nil {
		t.Fatalf("request in flight at the stop: %v", r.err)
	}
	a := decodeAnswer(t, r.resp)
	_ = r.resp.Body.Close()
	if r.resp.StatusCode != http.StatusOK || a.Accepted != 2 {
		t.Errorf("request in flight at the stop: %d %+v, want 200 with 2 accepted", r.resp.StatusCode, a)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// The source's series exist at zero before any request, and move.
func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	count := func(name string, labels map[string]string) (n int, sum float64) {
		families, err := s.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		next:
			for _, m := range f.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue next
					}
				}
				n++
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
		return n, sum
	}
	for _, tc := range []struct {
		name string
		want int
	}{
		{"eddy_ingest_accepted_total", 2},
		{"eddy_ingest_rejected_total", 2 * len(Reasons)},
		{"eddy_ingest_requests_total", 3 * len(statuses)},
		{"eddy_ingest_received_bytes_total", 2},
		{"eddy_ingest_request_duration_seconds", 2},
		{"eddy_ingest_publish_duration_seconds", 2},
		{"eddy_ingest_in_flight_requests", 2},
	} {
		if n, sum := count(tc.name, map[string]string{"source": "http"}); n != tc.want || sum != 0 {
			t.Errorf("%s before any request: %d series summing to %v, want %d at 0", tc.name, n, sum, tc.want)
		}
	}
	body := []byte("{\"user_id\":\"u1\"}\nbad\n")
	s.post(t, "clicks", testEnv["WEB_TOKEN"], body)
	s.post(t, "clicks", "wrong", body)
	s.post(t, "nope", testEnv["WEB_TOKEN"], body)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"eddy_ingest_accepted_total", map[string]string{"pipeline": "clicks"}, 1},
		{"eddy_ingest_rejected_total", map[string]string{"pipeline": "clicks", "reason": ReasonNotJSON}, 1},
		{"eddy_ingest_requests_total", map[string]string{"pipeline": "clicks", "status": "207"}, 1},
		{"eddy_ingest_requests_total", map[string]string{"pipeline": "clicks", "status": "401"}, 1},
		{"eddy_ingest_requests_total", map[string]string{"pipeline": "", "status": "404"}, 1},
		{"eddy_ingest_received_bytes_total", map[string]string{"pipeline": "clicks"}, float64(len(body))},
		{"eddy_ingest_publish_duration_seconds", map[string]string{"pipeline": "clicks"}, 1},
		{"eddy_ingest_request_duration_seconds", map[string]string{"pipeline": "clicks"}, 2},
		{"eddy_ingest_in_flight_requests", map[string]string{"pipeline": "clicks"}, 0},
	} {
		if _, sum := count(tc.name, tc.labels); sum != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, sum, tc.want)
		}
	}
}
