package simulate

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is an HTTP source that answers each request with the next of
// its scripted answers, then accepts every event, and records what came.
type fakeSource struct {
	mu      sync.Mutex
	script  []func(w http.ResponseWriter, lines []string) bool // true: answered
	lines   []string                                           // every event accepted, in order
	gzipped int
	headers []http.Header
}

func (f *fakeSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, r.Header.Clone())
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.gzipped++
		body = zr
	}
	var lines []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for len(f.script) > 0 {
		step := f.script[0]
		f.script = f.script[1:]
		if step(w, lines) {
			return
		}
	}
	accept(w, lines, nil)
	f.lines = append(f.lines, lines...)
}

// accept answers as the source does: every line accepted but those whose
// text contains one of bad's keys, rejected with that reason.
func accept(w http.ResponseWriter, lines []string, bad map[string]string) {
	type rej struct {
		Line   int    `json:"line"`
		Reason string `json:"reason"`
	}
	ans := struct {
		Accepted   int   `json:"accepted"`
		Rejected   int   `json:"rejected"`
		Rejections []rej `json:"rejections"`
	}{Rejections: []rej{}}
	for i, l := range lines {
		reason := ""
		for text, r := range bad {
			if strings.Contains(l, text) {
				reason = r
			}
		}
		if reason != "" {
			ans.Rejections = append(ans.Rejections, rej{Line: i + 1, Reason: reason})
			continue
		}
		ans.Accepted++
	}
	ans.Rejected = len(ans.Rejections)
	status := http.StatusOK
	switch {
	case ans.Rejected > 0 && ans.Accepted > 0:
		status = http.StatusMultiStatus
	case ans.Rejected > 0:
		status = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}

func refuse(status int, retryAfter, msg string) func(http.ResponseWriter, []string) bool {
	return func(w http.ResponseWriter, _ []string) bool {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q}`+"\n", msg)
		return true
	}
}

// events returns n events of keys k0..k(keys-1), round robin.
func events(n, keys int) []Event {
	out := make([]Event, n)
	for i := range out {
		k := fmt.Sprintf("k%d", i%keys)
		out[i] = Event{Key: k, Data: fmt.Appendf(nil, `{"id":%d,"key":%q}`, i, k)}
	}
	return out
}

// waits records the waits of h instead of waiting.
func recordWaits(h *HTTP) *[]time.Duration {
	var mu sync.Mutex
	var got []time.Duration
	h.wait = func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, d)
		return nil
	}
	return &got
}

func TestHTTPRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	src := &fakeSource{script: []func(http.ResponseWriter, []string) bool{
		refuse(http.StatusTooManyRequests, "2", "token web is over its rate"),
		refuse(http.StatusServiceUnavailable, "1", "pipeline clicks is behind"),
		refuse(http.StatusServiceUnavailable, "", "no Retry-After"),
		refuse(http.StatusBadGateway, "", "a proxy"),
		refuse(http.StatusTooManyRequests, "3600", "a long wait, capped"),
	}}
	srv := httptest.NewServer(src)
	defer srv.Close()
	h := &HTTP{URL: srv.URL + "/v1/pipelines/clicks/events", Token: "s3cret", Concurrency: 1, Batch: 10, MaxRetryAfter: 30 * time.Second}
	waits := recordWaits(h)
	var causes []string
	h.Retrying = func(cause string, _ time.Duration) { causes = append(causes, cause) }

	evs := events(25, 5)
	if err := h.Send(t.Context(), evs); err != nil {
		t.Fatalf("Send = %v", err)
	}
	d := h.Delivery()
	if d.Sent != 25 || d.Accepted != 25 || d.Rejected != 0 || d.Pending() != 0 {
		t.Errorf("Delivery = %+v, want 25 sent and accepted", d)
	}
	// Five refusals of the first request, then three requests of 10, 10, 5.
	if d.Retried != 5 || d.Attempts != 8 || d.Causes["429"] != 2 || d.Causes["503"] != 2 || d.Causes["502"] != 1 {
		t.Errorf("Delivery = %+v, want 5 retries (429: 2, 503: 2, 502: 1) in 8 attempts", d)
	}
	if got := strings.Join(causes, ","); got != "429,503,503,502,429" {
		t.Errorf("Retrying told of %s, want 429,503,503,502,429", got)
	}
	w := *waits
	if len(w) != 5 || w[0] != 2*time.Second || w[1] != time.Second || w[4] != 30*time.Second {
		t.Errorf("waits = %v, want 2s (Retry-After), 1s, backoffs, 30s (Retry-After 3600 capped)", w)
	}
	for _, b := range w[2:4] {
		if b <= 0 || b > RetryMaxBackoff {
			t.Errorf("backoff wait %v, want in (0, %v]", b, RetryMaxBackoff)
		}
	}
	// Nothing lost, nothing doubled, in order: one lane.
	if len(src.lines) != 25 {
		t.Fatalf("source got %d events, want 25", len(src.lines))
	}
	for i, l := range src.lines {
		if l != string(evs[i].Data) {
			t.Fatalf("event %d = %s, want %s", i, l, evs[i].Data)
		}
	}
	for _, hd := range src.headers {
		if hd.Get("Authorization") != "Bearer s3cret" || hd.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("request headers %v, want the bearer token and NDJSON", hd)
		}
	}
}

func TestHTTPRejectionsCounted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		accept(w, lines, map[string]string{`"k1"`: "missing_key", `"k2"`: "schema"})
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL, Concurrency: 3, Batch: 4}
	if err := h.Send(t.Context(), events(30, 5)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	d := h.Delivery()
	if d.Sent != 30 || d.Accepted != 18 || d.Rejected != 12 || d.Reasons["missing_key"] != 6 || d.Reasons["schema"] != 6 || d.Retried != 0 {
		t.Errorf("Delivery = %+v, want 30 sent, 18 accepted, 12 rejected (missing_key 6, schema 6), none retried", d)
	}
}

// A 413 about the request (not its events) splits it until it passes; a
// single event that still does not pass is rejected as too large.
func TestHTTPSplitsOnRequestTooLarge(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n := bytes.Count(b, []byte{'\n'}); n > 3 || bytes.Contains(b, []byte(`"id":7,`)) {
			refuse(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request has %d events, over token web's burst 3", n))(w, nil)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		src.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL, Concurrency: 1, Batch: 20}
	if err := h.Send(t.Context(), events(20, 4)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	d := h.Delivery()
	if d.Sent != 20 || d.Accepted != 19 || d.Rejected != 1 || d.Reasons["too_large"] != 1 || d.Retried != 0 {
		t.Errorf("Delivery = %+v, want 19 accepted and event 7 rejected as too_large", d)
	}
	if len(src.lines) != 19 {
		t.Errorf("source got %d events, want 19", len(src.lines))
	}
}

func TestHTTPFatalAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		msg    string
	}{
		{http.StatusUnauthorized, "unknown bearer token"},
		{http.StatusForbidden, "token web may not write to pipeline iot"},
		{http.StatusNotFound, `no pipeline named "nope"`},
		{http.StatusUnsupportedMediaType, "Content-Type text/plain"},
		{http.StatusBadRequest, "body is empty"},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			refuse(tt.status, "", tt.msg)(w, nil)
		}))
		h := &HTTP{URL: srv.URL + "/v1/pipelines/x/events"}
		err := h.Send(t.Context(), events(3, 1))
		srv.Close()
		want := fmt.Sprintf("%d %s: %s", tt.status, http.StatusText(tt.status), tt.msg)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "/v1/pipelines/x/events") {
			t.Errorf("Send answered %d = %v, want an error naming the URL and %q", tt.status, err, want)
		}
		if d := h.Delivery(); d.Pending() != 3 || d.Retried != 0 {
			t.Errorf("answered %d: Delivery = %+v, want 3 pending, none retried", tt.status, d)
		}
	}
}

func TestHTTPGzipAndLineBreaks(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	srv := httptest.NewServer(src)
	defer srv.Close()
	h := &HTTP{URL: srv.URL, Gzip: true}
	evs := []Event{{Key: "a", Data: []byte(`{"a":1}`)}, {Data: []byte("garbage\nwith\r\nbreaks")}, {Key: "b", Data: []byte(`{"b":2}`)}}
	if err := h.Send(t.Context(), evs); err != nil {
		t.Fatalf("Send = %v", err)
	}
	if src.gzipped == 0 {
		t.Error("no request was gzipped")
	}
	if d := h.Delivery(); d.Accepted != 3 {
		t.Errorf("Delivery = %+v, want 3 accepted: each event one line", d)
	}
	if got := strings.Join(src.lines, "|"); !strings.Contains(got, "garbage with  breaks") {
		t.Errorf("lines %q, want the malformed event on one line", got)
	}
}

func TestHTTPStopsWhenCtxDone(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		refuse(http.StatusServiceUnavailable, "1", "behind")(w, nil)
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL}
	ctx, cancel := context.WithCancel(t.Context())
	h.Retrying = func(string, time.Duration) { cancel() }
	err := h.Send(ctx, events(5, 1))
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Send = %v, want the ctx's error", err)
	}
	if d := h.Delivery(); d.Pending() != 5 || d.Retried != 1 {
		t.Errorf("Delivery = %+v, want 5 pending after one retry", d)
	}
}

// A connection lost after the source has answered is retried; a source
// never reached is an error at once.
func TestHTTPNetworkErrors(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		if n == 2 || n == 3 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // no answer at all
			}
			return
		}
		src.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL, Concurrency: 1, Batch: 5}
	recordWaits(h)
	if err := h.Send(t.Context(), events(10, 2)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	if d := h.Delivery(); d.Accepted != 10 || d.Causes["network"] != 2 {
		t.Errorf("Delivery = %+v, want 10 accepted after 2 network retries", d)
	}
	if len(src.lines) != 10 {
		t.Errorf("source got %d events, want 10", len(src.lines))
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	h = &HTTP{URL: url + "/v1/pipelines/x/events"}
	err := h.Send(t.Context(), events(1, 1))
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "HTTP source "+url+"/v1/pipelines/x/events not reached") {
		t.Errorf("Send to a closed port = %v, want ErrUnreachable naming the URL", err)
	}
}

func TestHTTPInvalid(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x/y", "http://", "://x"} {
		h := &HTTP{URL: u}
		if err := h.Send(t.Context(), events(1, 1)); err == nil || !strings.Contains(err.Error(), "HTTP.URL") {
			t.Errorf("Send with URL %q = %v, want an error naming HTTP.URL", u, err)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"Fri, 27 Nov 2026 12:00:10 GMT", 10 * time.Second, true},
		{"Fri, 27 Nov 2026 11:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLanesKeepKeysTogether(t *testing.T) {
	t.Parallel()
	evs := events(1000, 37)
	evs = append(evs, Event{Data: []byte("x")}, Event{Data: []byte("y")})
	index := map[string]int{}
	for i, ev := range evs {
		index[string(ev.Data)] = i
	}
	ls := lanes(evs, 8)
	laneOf := map[string]int{}
	total := 0
	for i, l := range ls {
		total += len(l)
		last := map[string]int{}
		for _, ev := range l {
			if ev.Key == "" {
				continue
			}
			if j, ok := laneOf[ev.Key]; ok && j != i {
				t.Fatalf("key %s in lanes %d and %d", ev.Key, j, i)
			}
			laneOf[ev.Key] = i
			at := index[string(ev.Data)]
			if p, ok := last[ev.Key]; ok && p >= at {
				t.Fatalf("key %s out of order in lane %d: event %d after %d", ev.Key, i, at, p)
			}
			last[ev.Key] = at
		}
	}
	if len(laneOf) != 37 {
		t.Errorf("%d keys in lanes, want 37", len(laneOf))
	}
	if total != len(evs) {
		t.Errorf("lanes hold %d events, want %d", total, len(evs))
	}
}
