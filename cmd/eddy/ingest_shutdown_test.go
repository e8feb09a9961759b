package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// heldRequest is a route that holds each request until released, then
// hands it to next: a request still in flight when a test starts the
// shutdown.
type heldRequest struct {
	next    http.Handler
	entered chan struct{} // closed when the first request comes
	release chan struct{} // closed by the test
}

func (h *heldRequest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.entered:
	default:
		close(h.entered)
	}
	<-h.release
	h.next.ServeHTTP(w, r)
}

// The shared HTTP listener (http.addr with a shared sources.http), told to
// stop while an ingest request is in flight, stops accepting at once but
// lets that request finish past the 2s it once gave it: the request gets
// its 200, its events are in Redis, and Serve returns only after.
func TestHTTPServerShutdownFinishesIngestRequests(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	f := simulateFile(t, "  http:\n    tokens:\n      web: {env: SIM_TOKEN, pipelines: [clicks]}\n")
	h, err := ingest.NewHTTP(f, ingest.NewSink(rdb, f), ingest.HTTPOptions{
		LookupEnv: func(string) (string, bool) { return simToken, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	held := &heldRequest{next: h.Handler(), entered: make(chan struct{}), release: make(chan struct{})}
	srv := &httpServer{addr: "127.0.0.1:0", reg: prometheus.NewRegistry(), rdb: rdb,
		routes: map[string]http.Handler{ingest.Route: held}, grace: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := srv.listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	type result struct {
		status int
		a      ingestAnswer
		raw    string
	}
	posted := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/pipelines/clicks/events",
			strings.NewReader("{\"user_id\":\"u1\"}\n{\"user_id\":\"u2\"}\n"))
		req.Header.Set("Authorization", "Bearer "+simToken)
		req.Header.Set("Content-Type", ingest.ContentTypeNDJSON)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			posted <- result{raw: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := result{status: resp.StatusCode, raw: string(b)}
		_ = json.Unmarshal(b, &r.a)
		posted <- r
	}()
	<-held.entered
	cancel() // the shutdown starts with the request in flight
	waitFor(t, 10*time.Second, "the listener to stop accepting", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	// Held past the 2s the listener used to give: Serve must still wait.
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(3 * time.Second):
	}
	close(held.release)
	r := <-posted
	if r.status != http.StatusOK || r.a.Accepted != 2 {
		t.Fatalf("the request in flight at shutdown = %d %s, want 200 with 2 accepted", r.status, r.raw)
	}
	for _, e := range r.a.Entries {
		if n := len(rdb.XRange(context.Background(), e.Stream, e.ID, e.ID).Val()); n != 1 {
			t.Errorf("entry %s %s answered 200 is not in Redis", e.Stream, e.ID)
		}
	}
	if n := inputLen(t, rdb, f.Pipeline("clicks")); n != 2 {
		t.Errorf("clicks' input holds %d entries, want 2", n)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// Past the grace, the hard phase: the connection of a request still in
// flight is closed, and Serve returns once its handler has.
func TestHTTPServerShutdownHardPhase(t *testing.T) {
	held := &heldRequest{next: http.NotFoundHandler(), entered: make(chan struct{}), release: make(chan struct{})}
	srv := &httpServer{addr: "127.0.0.1:0", reg: prometheus.NewRegistry(),
		routes: map[string]http.Handler{"/held": held}, grace: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := srv.listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/held")
		if err == nil {
			_ = resp.Body.Close()
		}
		got <- err
	}()
	<-held.entered
	cancel()
	if err := <-got; err == nil {
		t.Error("the request held past the grace got an answer, want its connection closed")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) before the handler did", err)
	default:
	}
	close(held.release)
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// eddy ingest binds http.addr before it says so: with port 0 the log
// names the port bound, which answers; an address in use fails at once,
// naming it.
func TestIngestHTTPListeningLogsBoundAddr(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeFile(t, "ingest.yaml", fmt.Sprintf(ingestConfig, "127.0.0.1:0", freeAddr(t)))
	p := startEddyEnv(t, []string{"INGEST_TEST_WEB=s3cret-web"}, "--redis", srv.URL(), "ingest", "-c", cfg)
	listening := regexp.MustCompile(`"msg":"http_listening","addr":"(127\.0\.0\.1:(\d+))"`)
	var addr string
	waitFor(t, 20*time.Second, "http_listening in the log", func() bool {
		m := listening.FindStringSubmatch(p.stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil || strings.Contains(p.stderr.String(), "eddy: ")
	})
	if addr == "" {
		t.Fatalf("no http_listening in the log:\n%s", p.stderr.String())
	}
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("http_listening addr %s: want the port bound", addr)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz on the logged address %s = %v %v, want 200", addr, resp, err)
	}
	_ = resp.Body.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit = %d; log:\n%s", code, p.stderr.String())
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg = writeFile(t, "taken.yaml", fmt.Sprintf(ingestConfig, taken.Addr().String(), freeAddr(t)))
	p = startEddyEnv(t, []string{"INGEST_TEST_WEB=s3cret-web"}, "--redis", srv.URL(), "ingest", "-c", cfg)
	if code := p.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("http.addr in use: exit %d, want 1; log:\n%s", code, p.stderr.String())
	}
	want := "http.addr " + taken.Addr().String() + ": cannot listen"
	if log := p.stderr.String(); !strings.Contains(log, want) || strings.Contains(log, "http_listening") {
		t.Errorf("http.addr in use: log\n%s\nwant %q and no http_listening", log, want)
	}
}

// eddy run gives its HTTP listener's requests the longest shutdown_timeout
// of the pipelines it runs, each defaulted.
func TestShutdownTimeout(t *testing.T) {
	p := func(d time.Duration) *pipelines.Pipeline { return &pipelines.Pipeline{ShutdownTimeout: d} }
	def := processor.DefaultShutdownTimeout
	tests := []struct {
		ps   []*pipelines.Pipeline
		want time.Duration
	}{
		{nil, def},
		{[]*pipelines.Pipeline{p(0)}, def},
		{[]*pipelines.Pipeline{p(time.Second)}, time.Second},
		{[]*pipelines.Pipeline{p(time.Second), p(30 * time.Second), p(0)}, 30 * time.Second},
		{[]*pipelines.Pipeline{p(time.Second), p(0)}, def},
	}
	for _, tt := range tests {
		if got := shutdownTimeout(tt.ps); got != tt.want {
			t.Errorf("shutdownTimeout(%d pipelines) = %v, want %v", len(tt.ps), got, tt.want)
		}
	}
}
