package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// httpConfig has a JSON-payload pipeline keyed by user_id, a flat one, and
// an HTTP source whose tokens come from the environment the test gives.
// %s is replaced by more sources.http settings.
const httpConfig = `
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 4, payload: data}
    key: user_id
    max_event_bytes: 4096
    steps:
      - filter: 'true'
  - name: iot
    input: {stream: iot}
    key: device
    steps:
      - filter: 'true'
sources:
  http:
    addr: 127.0.0.1:1
    tokens:
      web: {env: WEB_TOKEN, pipelines: [clicks]}
      plant: {env: PLANT_TOKEN, pipelines: [iot]}
%s`

var testEnv = map[string]string{"WEB_TOKEN": "web-secret-1", "PLANT_TOKEN": "plant-secret-2"}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// source is an HTTP source served on a free loopback port, appending to
// its own redis-server.
type source struct {
	url  string // http://host:port
	srv  *redistest.Server
	rdb  *redis.Client
	file *pipelines.File
	sink *Sink
	h    *HTTP
	reg  *prometheus.Registry
}

// startSource serves httpConfig with extra (YAML lines under
// sources.http, indented by four spaces) on a fresh redis-server started
// with args.
func startSource(tb testing.TB, extra string, args ...string) *source {
	tb.Helper()
	srv := redistest.Start(tb, args...)
	return startSourceOn(tb, srv, redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1}), extra)
}

func startSourceOn(tb testing.TB, srv *redistest.Server, rdb *redis.Client, extra string) *source {
	tb.Helper()
	tb.Cleanup(func() { _ = rdb.Close() })
	f := parseFile(tb, fmt.Sprintf(httpConfig, extra))
	s := &source{srv: srv, rdb: rdb, file: f, sink: NewSink(rdb, f), reg: prometheus.NewPedanticRegistry()}
	h, err := NewHTTP(f, s.sink, HTTPOptions{Metrics: metrics.NewIngest(s.reg), LookupEnv: lookupTestEnv})
	if err != nil {
		tb.Fatalf("NewHTTP = %v", err)
	}
	s.h = h
	s.url = "http://" + serve(tb, h)
	return s
}

// serve runs h.Serve on a free loopback port until the test ends, and
// checks that it returns nil once stopped.
func serve(tb testing.TB, h *HTTP) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve = %v after its ctx was done, want nil", err)
		}
	})
	return ln.Addr().String()
}

// post sends body to the route of pipeline with the given token ("": no
// Authorization) and headers ("Content-Type: application/json" unless
// given), and returns the status, the headers and the decoded answer.
func (s *source) post(tb testing.TB, pipeline, tok string, body []byte, headers ...string) (int, http.Header, answerOrError) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+"/v1/pipelines/"+pipeline+"/events", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", ContentTypeJSON)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST = %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header, decodeAnswer(tb, resp)
}

// answerOrError is an answer of the route: the events' answer, or an error.
type answerOrError struct {
	answer
	Error string `json:"error"`
}

func decodeAnswer(tb testing.TB, resp *http.Response) answerOrError {
	tb.Helper()
	var a answerOrError
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read answer: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentTypeJSON {
		tb.Fatalf("answer Content-Type %q, want %s: %s", ct, ContentTypeJSON, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		tb.Fatalf("answer is not JSON: %v: %s", err, b)
	}
	return a
}

// stored returns the entry of the answer's stream and id, and whether
// it is there.
func (s *source) stored(tb testing.TB, e entryJSON) (map[string]any, bool) {
	tb.Helper()
	msgs, err := s.rdb.XRange(context.Background(), e.Stream, e.ID, e.ID).Result()
	if err != nil {
		tb.Fatalf("XRANGE %s %s = %v", e.Stream, e.ID, err)
	}
	if len(msgs) != 1 {
		return nil, false
	}
	return msgs[0].Values, true
}

// streamLen is the number of entries in every partition of a pipeline.
func (s *source) streamLen(tb testing.TB, pipeline string) int64 {
	tb.Helper()
	p := s.file.Pipeline(pipeline)
	var n int64
	for i := range p.Input.Partitions {
		n += s.rdb.XLen(context.Background(), processor.PartitionStream(p.Input.Stream, i, p.Input.Partitions)).Val()
	}
	return n
}

func TestHTTPFormats(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	web := testEnv["WEB_TOKEN"]
	gz := func(b string) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(b))
		_ = zw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		want    []string // user_id of each event, in order
	}{
		{"object", []byte(`{"user_id":"a","n":1}`), nil, []string{"a"}},
		{"pretty object", []byte("{\n  \"user_id\": \"b\",\n  \"n\": 2\n}\n"), nil, []string{"b"}},
		{"array", []byte(` [{"user_id":"c"}, {"user_id":"d"}] `), nil, []string{"c", "d"}},
		{"ndjson as json", []byte("{\"user_id\":\"e\"}\n{\"user_id\":\"f\"}\n"), nil, []string{"e", "f"}},
		{"ndjson", []byte("\xEF\xBB\xBF{\"user_id\":\"g\"}\r\n\r\n{\"user_id\":\"h\"}"), []string{"Content-Type", "application/x-ndjson; charset=utf-8"}, []string{"g", "h"}},
		{"gzip ndjson", gz("{\"user_id\":\"i\"}\n{\"user_id\":\"j\"}\n"), []string{"Content-Type", ContentTypeNDJSON, "Content-Encoding", "gzip"}, []string{"i", "j"}},
		{"gzip array", gz(`[{"user_id":"k"}]`), []string{"Content-Encoding", "GZIP"}, []string{"k"}},
	} {
		status, _, a := s.post(t, "clicks", web, tc.body, tc.headers...)
		if status != http.StatusOK || a.Accepted != len(tc.want) || a.Rejected != 0 || len(a.Entries) != len(tc.want) {
			t.Errorf("%s: status %d, answer %+v, want 200 with %d accepted", tc.name, status, a, len(tc.want))
			continue
		}
		for i, e := range a.Entries {
			if e.Line != i+1 && tc.name != "ndjson" {
				t.Errorf("%s: entry %d has line %d", tc.name, i, e.Line)
			}
			v, ok := s.stored(t, e)
			if !ok {
				t.Errorf("%s: entry %s %s answered 200 is not in Redis", tc.name, e.Stream, e.ID)
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(v["data"].(string)), &obj); err != nil || obj["user_id"] != tc.want[i] {
				t.Errorf("%s: entry %d stored %v, want user_id %s", tc.name, i, v, tc.want[i])
			}
			if want := processor.PartitionStream("clicks", processor.PartitionOf(tc.want[i], 4), 4); e.Stream != want {
				t.Errorf("%s: entry %d in %s, want %s", tc.name, i, e.Stream, want)
			}
		}
		if tc.name == "ndjson" && (a.Entries[0].Line != 1 || a.Entries[1].Line != 3) {
			t.Errorf("ndjson lines = %d, %d, want 1, 3 (blank line 2 counted)", a.Entries[0].Line, a.Entries[1].Line)
		}
	}
}

// Done-when 2: a malformed NDJSON line is rejected with its line number
// and why; the others are accepted, and are in Redis.
func TestHTTPMalformedLines(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	body := strings.Join([]string{
		`{"user_id":"u1","page":"/a"}`,
		`{"user_id":"u2","page":`,
		`{"user_id":"u3"}`,
		`{"page":"/no-key"}`,
		`[1,2]`,
		`{"user_id":{"nested":true}}`,
		`{"user_id":"u7"}`,
	}, "\n")
	status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(body), "Content-Type", ContentTypeNDJSON)
	if status != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207: %+v", status, a)
	}
	if a.Accepted != 3 || a.Rejected != 4 {
		t.Errorf("accepted %d rejected %d, want 3 and 4", a.Accepted, a.Rejected)
	}
	want := []struct {
		line            int
		reason, pointer string
		msg             string
	}{
		{2, ReasonNotJSON, "", "line is not JSON: unexpected end of JSON input"},
		{4, ReasonMissingKey, "/user_id", `key "user_id" is missing or null`},
		{5, ReasonNotJSON, "", "line is a JSON array, not an object"},
		{6, ReasonMissingKey, "/user_id", "not a string or number"},
	}
	if len(a.Rejections) != len(want) {
		t.Fatalf("rejections %+v, want %d", a.Rejections, len(want))
	}
	for i, w := range want {
		r := a.Rejections[i]
		if r.Line != w.line || r.Reason != w.reason || r.Pointer != w.pointer || !strings.Contains(r.Error, w.msg) {
			t.Errorf("rejection %d = %+v, want line %d reason %s pointer %q error containing %q", i, r, w.line, w.reason, w.pointer, w.msg)
		}
	}
	for i, e := range a.Entries {
		if want := []int{1, 3, 7}[i]; e.Line != want {
			t.Errorf("entry %d line %d, want %d", i, e.Line, want)
		}
		if _, ok := s.stored(t, e); !ok {
			t.Errorf("accepted line %d is not in Redis", e.Line)
		}
	}
	if n := s.streamLen(t, "clicks"); n != 3 {
		t.Errorf("%d entries in Redis, want the 3 accepted", n)
	}

	// None good: 400, nothing appended.
	status, _, a = s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte("nope\n{\"x\":1}\n"))
	if status != http.StatusBadRequest || a.Accepted != 0 || a.Rejected != 2 {
		t.Errorf("all bad: status %d %+v, want 400 with 2 rejected", status, a)
	}
	if n := s.streamLen(t, "clicks"); n != 3 {
		t.Errorf("%d entries in Redis after an all-bad request, want 3", n)
	}
}

func TestHTTPRefusals(t *testing.T) {
	t.Parallel()
	s := startSource(t, "    limits: {max_body_bytes: 1000, max_events: 3}\n")
	web := testEnv["WEB_TOKEN"]
	ok := []byte(`{"user_id":"u1"}`)
	for _, tc := range []struct {
		name, pipeline, token string
		body                  []byte
		headers               []string
		status                int
		msg                   string
		header, headerValue   string
	}{
		{"no token", "clicks", "", ok, nil, 401, "missing bearer token", "WWW-Authenticate", `Bearer realm="eddy"`},
		{"basic auth", "clicks", "", ok, []string{"Authorization", "Basic d2ViOnNlY3JldA=="}, 401, "missing bearer token", "WWW-Authenticate", `Bearer realm="eddy"`},
		{"wrong token", "clicks", "web-secret-2", ok, nil, 401, "unknown bearer token", "WWW-Authenticate", `Bearer realm="eddy", error="invalid_token"`},
		{"prefix of a token", "clicks", "web-secret-", ok, nil, 401, "unknown bearer token", "", ""},
		{"token not allowed", "iot", web, []byte(`{"device":"d"}`), nil, 403, "token web may not write to pipeline iot", "", ""},
		{"unknown pipeline", "nope", web, ok, nil, 404, `no pipeline named "nope"`, "", ""},
		{"unknown pipeline, no token", "nope", "", ok, nil, 401, "missing bearer token", "", ""},
		{"form", "clicks", web, ok, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "Content-Type application/x-www-form-urlencoded: want application/json or application/x-ndjson", "", ""},
		{"no content type", "clicks", web, ok, []string{"Content-Type", ""}, 415, "no Content-Type", "", ""},
		{"brotli", "clicks", web, ok, []string{"Content-Encoding", "br"}, 415, "Content-Encoding br: want gzip or none", "", ""},
		{"not gzip", "clicks", web, ok, []string{"Content-Encoding", "gzip"}, 400, "body is not gzip", "", ""},
		{"body over limit", "clicks", web, bytes.Repeat([]byte(" "), 1001), nil, 413, "Content-Length 1001 is over max_body_bytes 1000", "", ""},
		{"too many events", "clicks", web, []byte(strings.Repeat(`{"user_id":"u"}`+"\n", 4)), nil, 413, "body has more than max_events 3 events", "", ""},
		{"too many in array", "clicks", web, []byte(`[{},{},{},{}]`), nil, 413, "body has more than max_events 3 events", "", ""},
		{"empty", "clicks", web, []byte(" \n "), nil, 400, "body is empty", "", ""},
		{"empty array", "clicks", web, []byte("[]"), nil, 400, "body is an empty JSON array", "", ""},
		{"broken array", "clicks", web, []byte(`[{"user_id":"u"}, {"user_id":]`), nil, 400, "body is not a valid JSON array: element 2", "", ""},
		{"after array", "clicks", web, []byte(`[{"user_id":"u"}] {}`), nil, 400, "body has data after its JSON array", "", ""},
	} {
		status, hdr, a := s.post(t, tc.pipeline, tc.token, tc.body, tc.headers...)
		if status != tc.status || !strings.Contains(a.Error, tc.msg) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, status, a.Error, tc.status, tc.msg)
		}
		if tc.header != "" && hdr.Get(tc.header) != tc.headerValue {
			t.Errorf("%s: %s: %q, want %q", tc.name, tc.header, hdr.Get(tc.header), tc.headerValue)
		}
	}
	resp, err := http.Get(s.url + "/v1/pipelines/clicks/events")
	if err != nil {
		t.Fatal(err)
	}
	a := decodeAnswer(t, resp)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || !strings.Contains(a.Error, "method GET: want POST") {
		t.Errorf("GET: %d Allow %q %q, want 405 with Allow: POST", resp.StatusCode, resp.Header.Get("Allow"), a.Error)
	}
	if n := s.streamLen(t, "clicks") + s.streamLen(t, "iot"); n != 0 {
		t.Errorf("%d entries appended by refused requests, want 0", n)
	}
}

// Done-when 2: an event over max_event_bytes is rejected, naming the
// limit; alone, with 413.
func TestHTTPEventTooLarge(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	big := `{"user_id":"u2","pad":"` + strings.Repeat("x", 5000) + `"}`
	status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(big))
	if status != http.StatusRequestEntityTooLarge || a.Rejected != 1 || a.Rejections[0].Reason != ReasonTooLarge ||
		a.Rejections[0].Error != fmt.Sprintf("event is %d bytes, over max_event_bytes (pipeline clicks) 4096", len(big)) {
		t.Errorf("one big event: %d %+v, want 413 naming max_event_bytes", status, a)
	}
	status, _, a = s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(`{"user_id":"u1"}`+"\n"+big+"\n"))
	if status != http.StatusMultiStatus || a.Accepted != 1 || a.Rejected != 1 || a.Rejections[0].Line != 2 || a.Rejections[0].Reason != ReasonTooLarge {
		t.Errorf("one big event of two: %d %+v, want 207 with line 2 too_large", status, a)
	}

	s2 := startSource(t, "    limits: {max_event_bytes: 20}\n")
	status, _, a = s2.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(`{"user_id":"u1","page":"/x"}`))
	if status != http.StatusRequestEntityTooLarge || a.Rejected != 1 || !strings.Contains(a.Rejections[0].Error, "over sources.http.limits.max_event_bytes 20") {
		t.Errorf("source's own limit: %d %+v, want 413 naming sources.http.limits.max_event_bytes", status, a)
	}
}

// Done-when 2: a gzip bomb (1 GiB of zeros in about 1 MiB) is refused
// once max_decompressed_bytes is inflated, without inflating the rest.
func TestHTTPGzipBomb(t *testing.T) {
	t.Parallel()
	s := startSource(t, "    limits: {max_body_bytes: 4e6, max_decompressed_bytes: 8e6}\n")
	// One gzip member of 16 MiB of zeros, 64 times: a valid multi-member
	// gzip stream that inflates to 1 GiB.
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	_, _ = zw.Write(make([]byte, 16<<20))
	_ = zw.Close()
	bomb := bytes.Repeat(member.Bytes(), 64)
	t.Logf("bomb: %d bytes inflating to %d", len(bomb), 64*16<<20)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], bomb, "Content-Encoding", "gzip")
	runtime.ReadMemStats(&after)
	if status != http.StatusRequestEntityTooLarge || a.Error != "gzip body inflates to more than max_decompressed_bytes 8000000" {
		t.Errorf("gzip bomb: %d %q, want 413 naming max_decompressed_bytes", status, a.Error)
	}
	// The whole process allocated far less than the bomb's 1 GiB: it
	// stopped inflating at the limit.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("the request allocated %d MiB, want well under the 1024 MiB the bomb inflates to", alloc>>20)
	}
}

// Done-when 2: a client that sends one byte a second is cut off: a body
// trickled in gets 408 once read_timeout has passed, headers trickled in
// get the connection closed once read_header_timeout has.
func TestHTTPSlowClient(t *testing.T) {
	t.Parallel()
	s := startSource(t, "    read_header_timeout: 1s\n    read_timeout: 2s\n    idle_timeout: 1s\n")
	addr := strings.TrimPrefix(s.url, "http://")
	trickle := func(t *testing.T, head string, body string) (answer string, sent int) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		read := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(conn) // until the server answers and closes
			read <- string(b)
		}()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for sent = 0; sent < len(body); sent++ {
			select {
			case a := <-read:
				return a, sent
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{body[sent]}); err != nil {
				return <-read, sent // cut off
			}
		}
		return <-read, sent
	}
	t.Run("body", func(t *testing.T) {
		t.Parallel()
		body := `{"user_id":"slow","pad":"` + strings.Repeat("x", 60) + `"}`
		head := fmt.Sprintf("POST /v1/pipelines/clicks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			testEnv["WEB_TOKEN"], len(body))
		a, sent := trickle(t, head, body)
		if sent >= len(body) {
			t.Fatalf("the server took the whole body, %d bytes at one a second; answer %q", sent, a)
		}
		if !strings.HasPrefix(a, "HTTP/1.1 408") || !strings.Contains(a, "the body did not arrive within read_timeout 2s") {
			t.Errorf("answer to a trickled body = %q, want 408 naming read_timeout", a)
		}
		t.Logf("cut off after %d of %d body bytes", sent, len(body))
	})
	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		head := "POST /v1/pipelines/clicks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testEnv["WEB_TOKEN"] + "\r\n"
		a, sent := trickle(t, "P", head[1:]+strings.Repeat("X-Pad: y\r\n", 10))
		if sent >= len(head)-1 {
			t.Fatalf("the server read %d header bytes sent one a second; answer %q", sent, a)
		}
		if strings.Contains(a, "200 OK") {
			t.Errorf("answer to trickled headers = %q", a)
		}
		t.Logf("cut off after %d header bytes; answer %q", sent+1, a)
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A request that is refused (no token) and a kept-alive connection
		// that then says nothing: the server closes it after idle_timeout.
		if _, err := io.WriteString(conn, "GET /v1/pipelines/clicks/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.Close {
			t.Fatalf("the server closed the connection after a 405; want it kept alive")
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard, not a measure
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("idle kept-alive connection: Read = %d, %v, want EOF (closed by the server)", n, err)
		}
	})
	t.Cleanup(func() { // after the parallel subtests
		if n := s.streamLen(t, "clicks"); n != 0 {
			t.Errorf("%d entries appended by cut-off clients, want 0", n)
		}
	})
}

// Done-when 2: with Redis down the answer is 503 with Retry-After, and
// nothing is reported accepted.
func TestHTTPRedisDown(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	s.srv.Kill()
	for _, body := range []string{`{"user_id":"u1"}`, "{\"user_id\":\"u1\"}\nbad\n"} {
		status, hdr, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(body))
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "2" || a.Accepted != 0 || len(a.Entries) != 0 ||
			!strings.Contains(a.Error, "Redis did not answer the backpressure probe, nothing was appended") {
			t.Errorf("Redis down: %d Retry-After %q %+v, want 503, Retry-After 2, nothing accepted", status, hdr.Get("Retry-After"), a)
		}
	}
	// With backpressure bounds the lag probe fails first: 503 too.
	s2 := startSource(t, "    backpressure: {max_lag: 10}\n")
	s2.srv.Kill()
	if status, hdr, a := s2.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(`{"user_id":"u1"}`)); status != 503 || hdr.Get("Retry-After") == "" ||
		!strings.Contains(a.Error, "Redis did not answer the backpressure probe, nothing was appended") {
		t.Errorf("Redis down, backpressure probe: %d %q %+v, want 503 with Retry-After", status, hdr.Get("Retry-After"), a)
	}
}

// A token over its rate gets 429 with Retry-After from the limiter's
// delay; a request over its burst could never pass: 413.
func TestHTTPRateLimit(t *testing.T) {
	t.Parallel()
	s := startSource(t, "")
	// The token's limiter runs on a clock the test moves.
	now := time.Unix(1_000_000, 0)
	s.h.now = func() time.Time { return now }
	testTok := s.h.tokens[1] // web (sorted: plant, web)
	if testTok.name != "web" {
		t.Fatalf("tokens[1] = %s", testTok.name)
	}
	*testTok = *mustToken(t, "web", 2, 4, now)
	web := testEnv["WEB_TOKEN"]
	four := []byte(strings.Repeat(`{"user_id":"u"}`+"\n", 4))
	if status, _, a := s.post(t, "clicks", web, four); status != 200 {
		t.Fatalf("first 4 events: %d %+v, want 200", status, a)
	}
	status, hdr, a := s.post(t, "clicks", web, four[:len(four)/2])
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "1" || !strings.Contains(a.Error, "token web is over its rate of 2 events/s") {
		t.Errorf("over the rate: %d Retry-After %q %q, want 429, 1", status, hdr.Get("Retry-After"), a.Error)
	}
	now = now.Add(time.Second) // 2 events' worth
	status, hdr, _ = s.post(t, "clicks", web, four)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "1" {
		t.Errorf("4 events with 2 available: %d Retry-After %q, want 429, 1", status, hdr.Get("Retry-After"))
	}
	if status, _, _ = s.post(t, "clicks", web, four[:len(four)/2]); status != 200 {
		t.Errorf("2 events with 2 available: %d, want 200", status)
	}
	now = now.Add(time.Hour)
	status, _, a = s.post(t, "clicks", web, []byte(strings.Repeat(`{"user_id":"u"}`+"\n", 5)))
	if status != http.StatusRequestEntityTooLarge || a.Error != "request has 5 events, over token web's burst 4: send at most 4 per request" {
		t.Errorf("over the burst: %d %q, want 413 naming the burst", status, a.Error)
	}
	if n := s.streamLen(t, "clicks"); n != 6 {
		t.Errorf("%d entries, want the 6 of the requests answered 200", n)
	}
}

func mustToken(tb testing.TB, name string, r float64, burst int, now time.Time) *token {
	tb.Helper()
	f := parseFile(tb, fmt.Sprintf(httpConfig, ""))
	f.Sources.HTTP.Tokens = map[string]pipelines.HTTPToken{name: {Env: "WEB_TOKEN", Pipelines: []string{"clicks"}, Rate: r, Burst: burst}}
	toks, err := loadTokens(f.Sources.HTTP, lookupTestEnv)
	if err != nil {
		tb.Fatal(err)
	}
	toks[0].limiter.SetBurstAt(now, burst) // full at now
	return toks[0]
}

// A pipeline over its backpressure bounds gets 503 with Retry-After.
func TestHTTPBackpressure(t *testing.T) {
	t.Parallel()
	s := startSource(t, "    backpressure: {max_lag: 5}\n")
	now := time.Unix(1_000_000, 0)
	s.sink.now = func() time.Time { return now }
	web := testEnv["WEB_TOKEN"]
	six := []byte(strings.Repeat(`{"user_id":"u"}`+"\n", 6))
	if status, _, a := s.post(t, "clicks", web, six); status != 200 {
		t.Fatalf("6 events with no lag: %d %+v, want 200", status, a)
	}
	now = now.Add(PressureEvery) // a new sample: lag 6 (no consumer group yet)
	status, hdr, a := s.post(t, "clicks", web, six)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "2" || !strings.Contains(a.Error, "pipeline clicks is behind") {
		t.Errorf("lag 6 over max_lag 5: %d Retry-After %q %q, want 503, 2 (1.2 × 1s rounded up)", status, hdr.Get("Retry-After"), a.Error)
	}
	// A consumer group that has read everything: no lag, accepted again.
	for i := range 4 {
		_ = s.rdb.XGroupCreateMkStream(context.Background(), processor.PartitionStream("clicks", i, 4), "clicks", "$").Err()
	}
	now = now.Add(PressureEvery)
	if status, _, a := s.post(t, "clicks", web, six); status != 200 {
		t.Errorf("after the group caught up: %d %+v, want 200", status, a)
	}
}

// Done-when 2, schema violation: with validate on, an event that breaks
// the pipeline's schema step is rejected with the JSON pointer and rule.
func TestHTTPSchemaViolation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "click.json"), []byte(`{
  "type": "object",
  "required": ["user_id", "page"],
  "properties": {"user_id": {"type": "string"}, "page": {"type": "string"}, "n": {"type": "integer", "maximum": 10}}
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
schemas:
  - {type: click, version: 1, file: click.json}
pipelines:
  - name: clicks
    input: {stream: clicks, payload: data}
    key: user_id
    steps:
      - schema: {type: click}
sources:
  http:
    addr: 127.0.0.1:1
    validate: true
    tokens:
      web: {env: WEB_TOKEN, pipelines: [clicks]}
`
	path := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := pipelines.Load(path, nil)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := &source{srv: srv, rdb: rdb, file: f, sink: NewSink(rdb, f)}
	if s.h, err = NewHTTP(f, s.sink, HTTPOptions{LookupEnv: lookupTestEnv}); err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + serve(t, s.h)
	body := "{\"user_id\":\"u1\",\"page\":\"/a\"}\n{\"user_id\":\"u2\",\"page\":\"/b\",\"n\":11}\n{\"user_id\":\"u3\"}\n"
	status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(body))
	if status != http.StatusMultiStatus || a.Accepted != 1 || a.Rejected != 2 {
		t.Fatalf("status %d %+v, want 207 with 1 accepted, 2 rejected", status, a)
	}
	for i, w := range []rejectionJSON{
		{Line: 2, Pointer: "/n", Reason: ReasonSchema, Rule: "maximum"},
		{Line: 3, Pointer: "/page", Reason: ReasonSchema, Rule: "required"},
	} {
		r := a.Rejections[i]
		if r.Line != w.Line || r.Pointer != w.Pointer || r.Reason != w.Reason || r.Rule != w.Rule || r.Error == "" {
			t.Errorf("rejection %d = %+v, want %+v", i, r, w)
		}
	}
	status, _, a = s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(`{"user_id":"u3"}`))
	if status != http.StatusBadRequest || a.Rejected != 1 || a.Rejections[0].Reason != ReasonSchema {
		t.Errorf("one violation alone: %d %+v, want 400", status, a)
	}
	if n := s.streamLen(t, "clicks"); n != 1 {
		t.Errorf("%d entries, want the 1 accepted", n)
	}
}

// Done-when 2: nothing answered 200 is ever lost. Clients post
// concurrently while Redis is killed and restarted (appendfsync always:
// what Redis acknowledged survives); every entry answered 200 is in the
// stream afterwards, and every request answered otherwise says so.
func TestHTTPNothingAnswered200IsLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	s := startSourceOn(t, srv, rdb, "")
	const clients, requests, perRequest = 6, 40, 25
	var mu sync.Mutex
	var acked []entryJSON
	statuses := map[int]int{}
	var wg sync.WaitGroup
	half, refused := make(chan struct{}), make(chan struct{})
	var once, onceRefused sync.Once
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range requests {
				if r == requests/2 {
					once.Do(func() { close(half) })
				}
				var b strings.Builder
				for e := range perRequest {
					fmt.Fprintf(&b, `{"user_id":"c%d-u%d","seq":%d}`+"\n", c, e%7, r*perRequest+e)
				}
				status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(b.String()))
				mu.Lock()
				statuses[status]++
				switch status {
				case http.StatusOK:
					if a.Accepted != perRequest || len(a.Entries) != perRequest {
						t.Errorf("200 with %d accepted, want %d", a.Accepted, perRequest)
					}
					acked = append(acked, a.Entries...)
				case http.StatusServiceUnavailable:
					onceRefused.Do(func() { close(refused) })
					if a.Accepted != 0 || len(a.Entries) != 0 {
						t.Errorf("503 reporting %d accepted", a.Accepted)
					}
				default:
					t.Errorf("status %d: %+v", status, a)
				}
				mu.Unlock()
			}
		}()
	}
	<-half
	srv.Kill()
	<-refused // requests have met the outage
	srv.Restart(t)
	wg.Wait()
	t.Logf("answers: %v; %d entries answered 200", statuses, len(acked))
	if statuses[http.StatusOK] == 0 {
		t.Fatal("no request answered 200")
	}
	byStream := map[string]map[string]bool{}
	for i := range 4 {
		stream := processor.PartitionStream("clicks", i, 4)
		byStream[stream] = map[string]bool{}
		for _, m := range rdb.XRange(context.Background(), stream, "-", "+").Val() {
			byStream[stream][m.ID] = true
		}
	}
	lost := 0
	for _, e := range acked {
		if !byStream[e.Stream][e.ID] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d entries answered 200 are not in Redis", lost, len(acked))
	}
}

// waitUntil polls cond until it holds, failing the test after 10s.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gaugeValue is the value of the gauge name{pipeline} in reg.
func gaugeValue(tb testing.TB, reg *prometheus.Registry, name, pipeline string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "pipeline" && lp.GetValue() == pipeline {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
