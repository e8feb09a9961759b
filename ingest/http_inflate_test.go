package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/metrics"
)

// startSourceWith serves httpConfig with extra and options o (its
// LookupEnv and Metrics set here) on a fresh redis-server.
func startSourceWith(tb testing.TB, extra string, o HTTPOptions) *source {
	tb.Helper()
	srv := redistest.Start(tb)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	tb.Cleanup(func() { _ = rdb.Close() })
	f := parseFile(tb, fmt.Sprintf(httpConfig, extra))
	s := &source{srv: srv, rdb: rdb, file: f, sink: NewSink(rdb, f), reg: prometheus.NewPedanticRegistry()}
	o.Metrics, o.LookupEnv = metrics.NewIngest(s.reg), lookupTestEnv
	h, err := NewHTTP(f, s.sink, o)
	if err != nil {
		tb.Fatalf("NewHTTP = %v", err)
	}
	s.h = h
	s.url = "http://" + serve(tb, h)
	return s
}

// Gzip bombs in parallel: the inflated bytes the source holds at once
// never exceed its budget; each bomb is refused, 413 (over
// max_decompressed_bytes) when it fit in the budget, 503 with Retry-After
// naming the budget when it did not.
func TestHTTPConcurrentGzipBombs(t *testing.T) {
	t.Parallel()
	const (
		bombs      = 8
		limit      = 1_000_000 // max_decompressed_bytes
		budget     = 3_000_000 // room for two bodies at the limit, not three
		firstPart  = 600_000   // inflated bytes sent before the bombs wait
		bombInflat = 16 << 20
	)
	s := startSourceWith(t, "    limits: {max_body_bytes: 4e6, max_decompressed_bytes: 1e6}\n", HTTPOptions{InflateBudget: budget})
	release := make(chan struct{})
	var refused503 atomic.Int32
	statuses := make([]int, bombs)
	answers := make([]string, bombs)
	retryAfter := make([]string, bombs)
	var wg sync.WaitGroup
	for i := range bombs {
		pr, pw := io.Pipe()
		go func() { // the bomb: firstPart inflated, a wait, then 16 MiB of zeros
			zw := gzip.NewWriter(pw)
			_, _ = zw.Write(make([]byte, firstPart))
			_ = zw.Flush()
			<-release
			for range bombInflat / (1 << 20) {
				if _, err := zw.Write(make([]byte, 1<<20)); err != nil {
					break // the source stopped reading: refused
				}
			}
			_ = zw.Close()
			_ = pw.Close()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/pipelines/clicks/events", pr)
			req.Header.Set("Content-Type", ContentTypeNDJSON)
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set("Authorization", "Bearer "+testEnv["WEB_TOKEN"])
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			if err != nil {
				t.Errorf("bomb %d: POST = %v", i, err)
				_ = pr.CloseWithError(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			statuses[i], answers[i], retryAfter[i] = resp.StatusCode, string(b), resp.Header.Get("Retry-After")
			_ = pr.CloseWithError(io.ErrClosedPipe) // the bomb's writer stops
			if resp.StatusCode == http.StatusServiceUnavailable {
				refused503.Add(1)
			}
		}()
	}
	// Every bomb either holds part of the budget (waiting for the rest of
	// its body) or has been refused for want of it.
	waitUntil(t, "every bomb holding budget or refused 503", func() bool {
		_, _, users := s.h.inflate.stats()
		return users+int(refused503.Load()) == bombs
	})
	close(release)
	wg.Wait()

	held, peak, users := s.h.inflate.stats()
	t.Logf("peak %d inflated bytes held at once, budget %d; statuses %v", peak, budget, statuses)
	if peak > budget || peak == 0 {
		t.Errorf("peak of inflated bytes held = %d, want 1 to the budget %d", peak, budget)
	}
	if held != 0 || users != 0 {
		t.Errorf("after the requests: %d bytes held by %d requests, want none", held, users)
	}
	n413 := 0
	for i, st := range statuses {
		switch st {
		case http.StatusRequestEntityTooLarge:
			n413++
			if !strings.Contains(answers[i], "gzip body inflates to more than max_decompressed_bytes 1000000") {
				t.Errorf("bomb %d: 413 %s, want it to name max_decompressed_bytes", i, answers[i])
			}
		case http.StatusServiceUnavailable:
			if retryAfter[i] != "1" || !strings.Contains(answers[i], "this source's budget of 3000000 inflated bytes (MaxInflatingBytes) is in use") {
				t.Errorf("bomb %d: 503 Retry-After %q %s, want Retry-After 1 and the budget named", i, retryAfter[i], answers[i])
			}
		default:
			t.Errorf("bomb %d: %d %s, want 413 or 503", i, st, answers[i])
		}
	}
	// Two fit at the limit: 2,000,002 bytes of 3,000,000.
	if n413 < 1 || n413 > 2 || int(refused503.Load()) != bombs-n413 {
		t.Errorf("%d bombs refused 413 and %d 503, want 1 or 2 413s (the budget fits two) and the rest 503", n413, refused503.Load())
	}
	if n := s.streamLen(t, "clicks"); n != 0 {
		t.Errorf("%d entries appended by bombs, want 0", n)
	}
	// Once the bombs are answered, a good gzip body goes through.
	var good bytes.Buffer
	zw := gzip.NewWriter(&good)
	_, _ = zw.Write([]byte(`{"user_id":"after"}`))
	_ = zw.Close()
	if status, _, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], good.Bytes(), "Content-Encoding", "gzip"); status != http.StatusOK {
		t.Errorf("gzip body after the bombs: %d %+v, want 200", status, a)
	}
}

// A Content-Length over max_body_bytes is refused at once, before the
// body is read: the client that sends none still gets its 413 (and not a
// 408 once read_timeout has passed).
func TestHTTPContentLengthOverMaxBody(t *testing.T) {
	t.Parallel()
	s := startSource(t, "    read_timeout: 20s\n    limits: {max_body_bytes: 1000}\n")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/pipelines/clicks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n{", testEnv["WEB_TOKEN"])
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute)) // a guard, not a measure
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "Content-Length 1001 is over max_body_bytes 1000") {
		t.Errorf("Content-Length over max_body_bytes: %d %s, want 413 naming both", resp.StatusCode, b)
	}
	// Without Content-Length (chunked) the body is cut at max_body_bytes
	// as it arrives.
	req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/pipelines/clicks/events", io.MultiReader(bytes.NewReader(bytes.Repeat([]byte(" "), 1001))))
	req.Header.Set("Content-Type", ContentTypeJSON)
	req.Header.Set("Authorization", "Bearer "+testEnv["WEB_TOKEN"])
	cresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer cresp.Body.Close()
	if a := decodeAnswer(t, cresp); cresp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 || a.Error != "body is over max_body_bytes 1000" {
		t.Errorf("chunked body over max_body_bytes: %d (Content-Length %d) %q, want 413 naming max_body_bytes", cresp.StatusCode, req.ContentLength, a.Error)
	}
}

// readLimited never grows its buffer past limit + 1, whatever it reads,
// and takes each growth from its lease first.
func TestReadLimited(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		n, limit int64
		over     bool
	}{{0, 10, false}, {10, 10, false}, {11, 10, true}, {1 << 20, 100_000, true}, {100_000, 100_000, false}, {200_000, 1 << 30, false}} {
		b := newInflateBudget(1 << 40)
		l := &lease{b: b}
		got, over, err := readLimited(io.LimitReader(zeros{}, tt.n), tt.limit, l)
		if err != nil || over != tt.over || int64(cap(got)) > tt.limit+1 || int64(cap(got)) != l.n {
			t.Errorf("readLimited(%d bytes, limit %d) = %d bytes (cap %d, lease %d), over %v, %v; want over %v, cap at most %d and all of it leased",
				tt.n, tt.limit, len(got), cap(got), l.n, over, err, tt.over, tt.limit+1)
		}
		if !over && int64(len(got)) != tt.n {
			t.Errorf("readLimited(%d bytes, limit %d) = %d bytes", tt.n, tt.limit, len(got))
		}
	}
	b := newInflateBudget(100_000)
	if _, _, err := readLimited(io.LimitReader(zeros{}, 1<<20), 1<<20, &lease{b: b}); !errors.Is(err, errOverBudget) {
		t.Errorf("readLimited over its budget = %v, want errOverBudget", err)
	}
	if held, peak, _ := b.stats(); peak > 100_000 || held != peak {
		t.Errorf("budget of 100000: held %d, peak %d", held, peak)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
