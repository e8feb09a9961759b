package simulate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Defaults of HTTP.
const (
	// DefaultHTTPBatch is HTTP.Batch's default: events per request.
	DefaultHTTPBatch = 500
	// DefaultHTTPConcurrency is HTTP.Concurrency's default: requests in
	// flight.
	DefaultHTTPConcurrency = 4
	// DefaultHTTPTimeout bounds one request of the default client, answer
	// included; one that takes longer is sent again.
	DefaultHTTPTimeout = time.Minute
	// maxAnswerBytes bounds how much of an answer is read.
	maxAnswerBytes = 16 << 20
)

// HTTP is a Sink that posts events as NDJSON to Eddy's HTTP source
// (POST /v1/pipelines/{pipeline}/events, see package ingest), as a fleet of
// clients would: Concurrency requests at a time, each of at most Batch
// events, each key's events in one lane and so in order.
//
// It never drops an event: 429 and 503 are waited out (their Retry-After,
// at most MaxRetryAfter) and the same request sent again; so are network
// errors once the source has answered a request (before that, a source
// that cannot be reached is taken for a wrong URL), timeouts, 408 and the
// other 5xx, after a backoff (RetryMinBackoff doubling to
// RetryMaxBackoff); a 413 that names a request limit (body,
// events per request, the token's burst) splits the request in two. The
// events the answer lists as rejected (not JSON, no key, too large, against
// the schema) are counted as rejected: sending them again would not help.
// A request that was sent again after its answer was lost may have been
// appended twice; the pipeline's dedupe keeps one.
//
// Send returns an error, and the Feeder stops, on what no retry mends: 401
// (no or unknown token), 403 (the token may not write the pipeline), 404
// (no such pipeline), 405, 415, a 400 about the body itself, a server
// certificate that does not verify, and a source that answered none of
// the requests so far (the error wraps ErrUnreachable).
type HTTP struct {
	// URL is the source's route for one pipeline:
	// http(s)://host:port/v1/pipelines/NAME/events. Required.
	URL string
	// Token is the bearer token sent with every request. Default "": none
	// (a source answers 401).
	Token string
	// Batch is the most events in one request. Default DefaultHTTPBatch.
	Batch int
	// Concurrency is how many requests are in flight at once. Default
	// DefaultHTTPConcurrency.
	Concurrency int
	// Gzip compresses each body (Content-Encoding: gzip). Default false.
	Gzip bool
	// Client sends the requests. Default: a client of its own with
	// DefaultHTTPTimeout and Concurrency idle connections kept.
	Client *http.Client
	// MaxRetryAfter caps the wait a 429 or 503 advises. Default
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Retrying, when set, is told of every retry: its cause ("429",
	// "503", "network", …) and the wait before it. It is called from the
	// sending goroutines, several at once: it must be safe for that and
	// must not block.
	Retrying func(cause string, wait time.Duration)

	once     sync.Once
	initErr  error
	client   *http.Client
	counts   counter
	answered atomic.Bool // some request got an answer
	// wait waits before a retry; tests replace it.
	wait func(ctx context.Context, d time.Duration) error
}

var _ Sink = (*HTTP)(nil)

// Delivery returns what the sink has done so far.
func (h *HTTP) Delivery() Delivery { return h.counts.snapshot() }

func (h *HTTP) init() error {
	h.once.Do(func() {
		u, err := url.Parse(h.URL)
		switch {
		case h.URL == "":
			h.initErr = errors.New("simulate: HTTP.URL is required")
		case err != nil:
			h.initErr = fmt.Errorf("simulate: HTTP.URL: %w", err)
		case u.Scheme != "http" && u.Scheme != "https":
			h.initErr = fmt.Errorf("simulate: HTTP.URL %q: want http:// or https://", h.URL)
		case u.Host == "":
			h.initErr = fmt.Errorf("simulate: HTTP.URL %q: no host", h.URL)
		}
		if h.Batch <= 0 {
			h.Batch = DefaultHTTPBatch
		}
		if h.Concurrency <= 0 {
			h.Concurrency = DefaultHTTPConcurrency
		}
		if h.MaxRetryAfter <= 0 {
			h.MaxRetryAfter = DefaultMaxRetryAfter
		}
		h.client = h.Client
		if h.client == nil {
			tr := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // the standard library's
			tr.MaxIdleConnsPerHost = h.Concurrency
			h.client = &http.Client{Timeout: DefaultHTTPTimeout, Transport: tr}
		}
		if h.wait == nil {
			h.wait = sleep
		}
	})
	return h.initErr
}

// Send posts batch, Concurrency requests at a time, and returns once every
// event was accepted or rejected, or on the first error no retry mends, or
// when ctx is done. Send may be called from several goroutines at once; a
// key's events keep their order within a Send, and across Sends that do
// not overlap.
func (h *HTTP) Send(ctx context.Context, batch []Event) error {
	if err := h.init(); err != nil {
		return err
	}
	h.counts.sent(len(batch))
	g, ctx := errgroup.WithContext(ctx)
	for _, lane := range lanes(batch, h.Concurrency) {
		if len(lane) == 0 {
			continue
		}
		g.Go(func() error {
			for len(lane) > 0 {
				n := min(len(lane), h.Batch)
				if err := h.post(ctx, lane[:n]); err != nil {
					return err
				}
				lane = lane[n:]
			}
			return nil
		})
	}
	return g.Wait()
}

// answer is the JSON an HTTP source answers with: counts and rejections
// for a request that got as far as its events, or an error for one that
// did not.
type answer struct {
	Accepted   *int `json:"accepted"`
	Rejected   int  `json:"rejected"`
	Rejections []struct {
		Reason string `json:"reason"`
	} `json:"rejections"`
	Error string `json:"error"`
}

// post sends evs in one request until it is answered for good.
func (h *HTTP) post(ctx context.Context, evs []Event) error {
	body, err := h.body(evs)
	if err != nil {
		return err
	}
	for failures := 0; ; {
		status, hdr, ans, err := h.do(ctx, body)
		var wait time.Duration
		var cause string
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if certificateError(err) {
				// Not to be trusted: a retry does not mend a certificate.
				return fmt.Errorf("simulate: POST %s: %w", h.URL, err)
			}
			if !h.answered.Load() {
				// Never reached: a retry does not mend a wrong address.
				return fmt.Errorf("simulate: HTTP source %s %w: %w", h.URL, ErrUnreachable, err)
			}
			cause, wait = "network", backoff(failures)
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			cause = strconv.Itoa(status)
			var ok bool
			if wait, ok = retryAfter(hdr.Get("Retry-After"), time.Now()); ok {
				wait = min(wait, h.MaxRetryAfter)
			} else {
				wait = backoff(failures)
			}
		case ans.Accepted != nil && (status == http.StatusOK || status == http.StatusMultiStatus ||
			status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge):
			// Taken as far as the events: each was appended or rejected.
			h.counts.accepted(*ans.Accepted)
			for _, r := range ans.Rejections {
				h.counts.rejected(r.Reason, 1)
			}
			if n := *ans.Accepted + ans.Rejected; n != len(evs) {
				return fmt.Errorf("simulate: POST %s: %d events sent, the answer accounts for %d", h.URL, len(evs), n)
			}
			return nil
		case status == http.StatusRequestEntityTooLarge && len(evs) > 1:
			// A limit of the request (body, events, the token's burst):
			// half as many may pass.
			half := len(evs) / 2
			if err := h.post(ctx, evs[:half]); err != nil {
				return err
			}
			return h.post(ctx, evs[half:])
		case status == http.StatusRequestEntityTooLarge:
			h.counts.rejected("too_large", 1)
			return nil
		case status == http.StatusRequestTimeout || status >= 500:
			cause, wait = strconv.Itoa(status), backoff(failures)
		default:
			msg := ans.Error
			if msg == "" {
				msg = "(no error message)"
			}
			return fmt.Errorf("simulate: POST %s: %d %s: %s", h.URL, status, http.StatusText(status), msg)
		}
		failures++
		h.counts.retried(cause)
		if h.Retrying != nil {
			h.Retrying(cause, wait)
		}
		if err := h.wait(ctx, wait); err != nil {
			return err
		}
	}
}

// body is evs as NDJSON, gzipped with Gzip. A line break inside an event
// (a malformed one's random bytes) becomes a space, so that each event
// stays one line.
func (h *HTTP) body(evs []Event) ([]byte, error) {
	var b bytes.Buffer
	var w io.Writer = &b
	var zw *gzip.Writer
	if h.Gzip {
		zw, _ = gzip.NewWriterLevel(&b, gzip.BestSpeed) // a valid level: no error
		w = zw
	}
	for _, ev := range evs {
		data := ev.Data
		if bytes.ContainsAny(data, "\r\n") {
			data = bytes.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, data)
		}
		_, _ = w.Write(data) // writes to a bytes.Buffer do not fail
		_, _ = w.Write([]byte{'\n'})
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("simulate: gzip a request body: %w", err)
		}
	}
	return b.Bytes(), nil
}

// do sends one request and reads its answer.
func (h *HTTP) do(ctx context.Context, body []byte) (int, http.Header, answer, error) {
	var ans answer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, ans, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if h.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	h.counts.attempt()
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, ans, err
	}
	h.answered.Store(true)
	defer resp.Body.Close() //nolint:errcheck // read to the end below
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return 0, nil, ans, err // cut off mid-answer: as a network error
	}
	_, _ = io.Copy(io.Discard, resp.Body) // reuse the connection
	if err := json.Unmarshal(b, &ans); err != nil {
		ans = answer{Error: strings.TrimSpace(string(b[:min(len(b), 200)]))}
	}
	return resp.StatusCode, resp.Header, ans, nil
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// certificateError reports whether err is a server certificate that did not
// verify.
func certificateError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &host) || errors.As(err, &invalid)
}
