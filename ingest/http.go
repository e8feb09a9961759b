package ingest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// Route is the HTTP source's one route. Its {pipeline} is the name of a
// pipeline of the config file.
const Route = "/v1/pipelines/{pipeline}/events"

// SourceHTTP is the HTTP source's "source" label in metrics and logs.
const SourceHTTP = "http"

// Content types and encodings the route takes.
const (
	ContentTypeJSON   = "application/json"
	ContentTypeNDJSON = "application/x-ndjson"
)

// Retry-After of answers that are not about the client.
const (
	// UnavailableRetryAfter is advised when Redis did not accept the
	// events (unreachable, erroring). Some of them may have been written
	// before it failed: the client resends the whole request, and a
	// pipeline with dedupe keeps one copy of each event.
	UnavailableRetryAfter = 2 * time.Second
	// ShutdownGrace bounds how long Run waits, once its ctx is done, for
	// requests in progress to finish (each is bounded by write_timeout too).
	ShutdownGrace = 10 * time.Second
)

// HTTP is the HTTP source: POST Route takes one JSON object, a JSON array
// of objects or NDJSON (one object per line), optionally gzip-compressed,
// and appends its events to the pipeline's input through a Sink.
//
// # The request
//
//	POST /v1/pipelines/{pipeline}/events
//	Authorization: Bearer <secret>
//	Content-Type: application/json | application/x-ndjson
//	Content-Encoding: gzip        (optional)
//
// application/json takes a single object, an array of objects, or NDJSON
// sent as JSON; application/x-ndjson is always one object per line.
//
// # The answer
//
// The answer comes only after Redis has accepted the events. It is JSON:
//
//	{"accepted": 2, "rejected": 1,
//	 "entries": [{"line": 1, "stream": "{clicks:3}", "id": "1700000000000-0"}, …],
//	 "rejections": [{"line": 2, "pointer": "/user_id", "reason": "missing_key", "error": "…"}]}
//
// line is the NDJSON line, the array index + 1, or 1 for a single object;
// pointer is the JSON Pointer of the offending value ("" for the whole
// event); reason is one of Reasons; rule, with reason "schema", is the
// JSON Schema keyword that failed. The status:
//
//   - 200: every event was appended.
//   - 207: some were appended (entries) and some rejected (rejections);
//     resending the rejected ones as they are will not help.
//   - 400: none was appended because each was bad (413 when each was over
//     max_event_bytes); or the body itself is unusable (empty, a broken
//     JSON array, not gzip): the answer is {"error": "…"}.
//
// Every other refusal answers {"error": "…"} and, but for a 503 of Redis,
// appends nothing:
// 401 (no or unknown bearer token, with WWW-Authenticate), 403 (the token
// may not write the pipeline), 404 (no such pipeline), 405 (not POST, with
// Allow), 408 (the body did not arrive within read_timeout), 413 (body,
// decompressed body, events per request or the token's burst over its
// limit, which the message names; a Content-Length over max_body_bytes is
// refused before the body is read), 415 (content type or encoding), 429
// (over the token's rate, with Retry-After), 503 (with Retry-After: the
// pipeline is over its backpressure bounds, or too many gzip bodies are
// being inflated at once (see MaxInflating), and nothing was appended; or
// Redis did not accept the events, and some of them may have been
// appended before it failed, so the client resends the whole request,
// whose copies a pipeline with dedupe drops).
type HTTP struct {
	cfg    *pipelines.HTTPSource
	file   *pipelines.File
	sink   *Sink
	tokens []*token
	m      *metrics.IngestSource
	log    *zap.Logger
	// now is the rate limiters' clock (deadlines and timings are the
	// wall clock's: they hold against the network).
	now func() time.Time

	// inflate is the budget of inflated gzip bodies (MaxInflatingBytes).
	inflate *inflateBudget

	failLog sync.Mutex
	lastLog time.Time
}

// HTTPOptions are what NewHTTP needs besides the config and the Sink.
type HTTPOptions struct {
	// Metrics receives the source's series; nil records none.
	Metrics *metrics.Ingest
	// Logger; nil logs nothing.
	Logger *zap.Logger
	// LookupEnv reads the tokens' environment variables; nil: os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// InflateBudget replaces MaxInflatingBytes, the bytes of inflated
	// gzip bodies the source holds at once (still never below
	// max_decompressed_bytes + 1). Default 0: MaxInflatingBytes.
	InflateBudget int64
}

// statuses are the answers the source gives, for metrics to create their
// series at zero.
var statuses = []int{http.StatusOK, http.StatusMultiStatus, http.StatusBadRequest, http.StatusUnauthorized,
	http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestTimeout,
	http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusTooManyRequests,
	http.StatusServiceUnavailable}

// NewHTTP returns the HTTP source of f's sources.http, appending through
// sink. It reads the tokens' secrets now: a missing variable or file is an
// error that names the token and the variable or file.
func NewHTTP(f *pipelines.File, sink *Sink, o HTTPOptions) (*HTTP, error) {
	if f.Sources == nil || f.Sources.HTTP == nil {
		return nil, errors.New("ingest: the file has no sources.http section")
	}
	lookup := o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	tokens, err := loadTokens(f.Sources.HTTP, lookup)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	budget := o.InflateBudget
	if budget <= 0 {
		budget = MaxInflatingBytes
	}
	budget = max(budget, f.Sources.HTTP.Limits.MaxDecompressedBytes+1)
	h := &HTTP{cfg: f.Sources.HTTP, file: f, sink: sink, tokens: tokens, log: log.With(zap.String("source", SourceHTTP)), now: time.Now,
		inflate: newInflateBudget(budget)}
	if o.Metrics != nil {
		names := make([]string, len(f.Pipelines))
		for i, p := range f.Pipelines {
			names[i] = p.Name
		}
		codes := make([]string, len(statuses))
		for i, s := range statuses {
			codes[i] = strconv.Itoa(s)
		}
		h.m = o.Metrics.Source(SourceHTTP, names, Reasons, codes)
	}
	return h, nil
}

// Shared reports whether the source is served on the http.addr listener
// (Handler) rather than its own (Run).
func (h *HTTP) Shared() bool { return h.cfg.Addr == pipelines.HTTPSourceShared }

// Handler returns the source's handler, which serves Route and nothing
// else, to mount on a mux of the caller's: mux.Handle(Route, h.Handler()).
func (h *HTTP) Handler() http.Handler {
	return http.HandlerFunc(h.serve)
}

// Run listens on sources.http.addr (with TLS when configured) and serves
// until ctx is done; see Serve. A shared source has no listener of its
// own: Run returns an error.
func (h *HTTP) Run(ctx context.Context) error {
	if h.Shared() {
		return errors.New("ingest: sources.http.addr is shared: mount Handler on the http.addr listener")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", h.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sources.http.addr %s: %w", h.cfg.Addr, err)
	}
	return h.Serve(ctx, ln)
}

// Serve serves Route on ln (closing it) until ctx is done, then shuts
// down in two phases: soft, it stops accepting and lets requests in
// progress finish, each answered only once Redis has taken its events;
// hard, after ShutdownGrace, it closes the connections still open, whose
// requests have then been answered nothing and must be resent (nothing is
// reported accepted that is not written). It returns once every
// connection's goroutine has exited.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	if t := h.cfg.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("sources.http.tls: load cert_file %s and key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	mux := http.NewServeMux()
	mux.Handle(Route, h.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: h.cfg.ReadHeaderTimeout,
		ReadTimeout:       h.cfg.ReadTimeout,
		WriteTimeout:      h.cfg.WriteTimeout,
		IdleTimeout:       h.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(h.log),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	h.log.Info("http_source_listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", h.cfg.TLS != nil), zap.String("route", Route))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // the hard phase
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// answer is the JSON answer of a request that got as far as its events.
type answer struct {
	Accepted   int             `json:"accepted"`
	Rejected   int             `json:"rejected"`
	Entries    []entryJSON     `json:"entries"`
	Rejections []rejectionJSON `json:"rejections"`
}

type entryJSON struct {
	Line   int    `json:"line"`
	Stream string `json:"stream"`
	ID     string `json:"id"`
}

type rejectionJSON struct {
	Line    int    `json:"line"`
	Pointer string `json:"pointer"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule,omitempty"`
	Error   string `json:"error"`
}

// request is the state of one request, for its answer and metrics.
type request struct {
	w        http.ResponseWriter
	start    time.Time
	pipeline string // its metrics label: a pipeline of the file, or ""
	body     *countingReader
	status   int
	// traceparent is the request's W3C trace context header, given to
	// each of its events (Event.Traceparent).
	traceparent string
}

func (h *HTTP) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rq := &request{w: w, start: start, traceparent: r.Header.Get(processor.TraceField)}
	name := r.PathValue("pipeline")
	p := h.file.Pipeline(name)
	if p != nil {
		rq.pipeline = p.Name
	}
	h.m.InFlight(rq.pipeline, 1)
	defer func() {
		h.m.InFlight(rq.pipeline, -1)
		var n int64
		if rq.body != nil {
			n = rq.body.n
		}
		h.m.Answered(rq.pipeline, strconv.Itoa(rq.status), n, time.Since(start))
	}()
	// The listener's timeouts, per request: they hold on the shared
	// listener too.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(h.cfg.ReadTimeout))
	_ = rc.SetWriteDeadline(start.Add(h.cfg.WriteTimeout))

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(rq, http.StatusMethodNotAllowed, "method %s: want POST", r.Method)
		return
	}
	cred, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
		h.fail(rq, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
		return
	}
	tok := match(h.tokens, cred)
	if tok == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eddy", error="invalid_token"`)
		h.fail(rq, http.StatusUnauthorized, "unknown bearer token")
		return
	}
	if p == nil {
		h.fail(rq, http.StatusNotFound, "no pipeline named %q", name)
		return
	}
	if !tok.pipelines[p.Name] {
		h.fail(rq, http.StatusForbidden, "token %s may not write to pipeline %s", tok.name, p.Name)
		return
	}
	ndjson, gz, err := contentOf(r.Header)
	if err != nil {
		h.fail(rq, http.StatusUnsupportedMediaType, "%v", err)
		return
	}
	// Redis's part is bounded by write_timeout, less a reserve to write
	// the answer in.
	ctx, cancel := context.WithDeadline(r.Context(), start.Add(h.cfg.WriteTimeout-answerReserve(h.cfg.WriteTimeout)))
	defer cancel()
	if over, after, err := h.sink.Pressure(ctx, p.Name, h.bounds()); err != nil {
		h.unavailable(rq, p.Name, err, "Redis did not answer the backpressure probe, nothing was appended")
		return
	} else if over {
		w.Header().Set("Retry-After", seconds(after))
		h.fail(rq, http.StatusServiceUnavailable, "pipeline %s is behind (over its backpressure bounds): retry after %s", p.Name, seconds(after)+"s")
		return
	}
	if tok.limiter != nil {
		if have := tok.limiter.TokensAt(h.now()); have < 1 { // not even one event: do not read the body
			h.tooMany(rq, tok, time.Duration(float64(time.Second)*(1-have)/float64(tok.limiter.Limit())))
			return
		}
	}

	l := bodyLimits{maxBody: h.cfg.Limits.MaxBodyBytes, maxDecompressed: h.cfg.Limits.MaxDecompressedBytes, maxEvents: h.cfg.Limits.MaxEvents}
	if r.ContentLength > l.maxBody { // refused before reading a byte of it
		w.Header().Set("Connection", "close") // or the server would read the body before answering
		h.fail(rq, http.StatusRequestEntityTooLarge, "Content-Length %d is over max_body_bytes %d", r.ContentLength, l.maxBody)
		return
	}
	rq.body = &countingReader{r: http.MaxBytesReader(w, r.Body, l.maxBody)}
	inflated := &lease{b: h.inflate}
	defer inflated.release() // the events point into the body until answered
	body, err := readBody(rq.body, gz, l, inflated)
	if err != nil {
		inflated.release() // before the answer: a client told 503 finds the budget given back
		// The body may not have been read to its end: the server would read
		// what is left (up to 256 KiB) before answering, and a stalled
		// client would get the answer only at read_timeout. The connection
		// closes instead.
		w.Header().Set("Connection", "close")
		h.bodyFailed(rq, err)
		return
	}
	events, err := splitBody(body, ndjson, l.maxEvents)
	if err != nil {
		h.bodyFailed(rq, err)
		return
	}
	if wait, ok := tok.allow(h.now(), len(events)); !ok {
		h.fail(rq, http.StatusRequestEntityTooLarge, "request has %d events, over token %s's burst %d: send at most %d per request", len(events), tok.name, tok.burst, tok.burst)
		return
	} else if wait > 0 {
		h.tooMany(rq, tok, wait)
		return
	}
	h.append(ctx, rq, p, events)
}

// answerReserve is the part of write_timeout kept to write the answer in:
// a quarter, at most a second.
func answerReserve(d time.Duration) time.Duration { return min(d/4, time.Second) }

// append appends the events of a request and answers it.
func (h *HTTP) append(ctx context.Context, rq *request, p *pipelines.Pipeline, events []rawEvent) {
	maxEvent, limitName := h.maxEventBytes(p)
	ans := answer{Entries: []entryJSON{}, Rejections: []rejectionJSON{}}
	reject := func(line int, rej *Rejection) {
		ans.Rejections = append(ans.Rejections, rejectionJSON{Line: line, Pointer: rej.Pointer, Reason: rej.Reason, Rule: rej.Rule, Error: rej.Message})
		h.m.Rejected(p.Name, rej.Reason, 1)
	}
	var evs []Event
	var lines []int
	tooLarge := 0
	for _, ev := range events {
		switch {
		case ev.bad != nil:
			reject(ev.line, ev.bad)
		case maxEvent > 0 && len(ev.data) > maxEvent:
			tooLarge++
			reject(ev.line, &Rejection{Reason: ReasonTooLarge, Message: fmt.Sprintf("event is %d bytes, over %s %d", len(ev.data), limitName, maxEvent)})
		default:
			evs = append(evs, Event{Data: ev.data, Traceparent: rq.traceparent})
			lines = append(lines, ev.line)
		}
	}
	if len(evs) > 0 {
		t0 := time.Now()
		res, err := h.sink.Append(ctx, p.Name, evs, h.cfg.Validate, Reject)
		h.m.Published(p.Name, time.Since(t0))
		if err != nil {
			h.unavailable(rq, p.Name, err, "Redis did not accept every event, and some may have been appended before it failed: resend the whole request (a pipeline with dedupe drops the copies)")
			return
		}
		for i, r := range res {
			if r.Rejected != nil {
				if r.Rejected.Reason == ReasonTooLarge {
					tooLarge++
				}
				reject(lines[i], r.Rejected)
				continue
			}
			ans.Entries = append(ans.Entries, entryJSON{Line: lines[i], Stream: r.Stream, ID: r.ID})
		}
	}
	sortRejections(ans.Rejections)
	ans.Accepted, ans.Rejected = len(ans.Entries), len(ans.Rejections)
	h.m.Accepted(p.Name, ans.Accepted)
	status := http.StatusOK
	switch {
	case ans.Rejected == 0:
	case ans.Accepted > 0:
		status = http.StatusMultiStatus
	case tooLarge == ans.Rejected:
		status = http.StatusRequestEntityTooLarge
	default:
		status = http.StatusBadRequest
	}
	h.write(rq, status, ans)
}

// sortRejections orders rejections by line: those found while splitting
// and those the Sink found are interleaved.
func sortRejections(rs []rejectionJSON) {
	for i := 1; i < len(rs); i++ { // insertion sort: nearly sorted already
		for j := i; j > 0 && rs[j].Line < rs[j-1].Line; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// maxEventBytes is the per-event cap of p's requests (0: none) and how
// messages name it.
func (h *HTTP) maxEventBytes(p *pipelines.Pipeline) (int, string) {
	switch n := h.cfg.Limits.MaxEventBytes; {
	case n > 0:
		return n, "sources.http.limits.max_event_bytes"
	case n < 0:
		return 0, ""
	}
	switch n := p.MaxEventBytes; {
	case n > 0:
		return n, "max_event_bytes (pipeline " + p.Name + ")"
	case n < 0:
		return 0, ""
	}
	return processor.DefaultMaxEventBytes, "max_event_bytes (pipeline " + p.Name + ")"
}

func (h *HTTP) bounds() Bounds {
	b := h.cfg.Backpressure
	return Bounds{MaxLag: max(b.MaxLag, 0), MaxLatency: b.MaxLatency}
}

// contentOf checks a request's Content-Type and Content-Encoding.
func contentOf(hd http.Header) (ndjson, gz bool, err error) {
	ct := hd.Get("Content-Type")
	mt, _, perr := mime.ParseMediaType(ct)
	switch {
	case ct == "":
		return false, false, fmt.Errorf("no Content-Type: want %s or %s", ContentTypeJSON, ContentTypeNDJSON)
	case perr != nil:
		return false, false, fmt.Errorf("Content-Type %q: %w", ct, perr)
	case mt == ContentTypeJSON:
	case mt == ContentTypeNDJSON:
		ndjson = true
	default:
		return false, false, fmt.Errorf("Content-Type %s: want %s or %s", mt, ContentTypeJSON, ContentTypeNDJSON)
	}
	switch enc := strings.ToLower(strings.TrimSpace(hd.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		return false, false, fmt.Errorf("Content-Encoding %s: want gzip or none", enc)
	}
	return ndjson, gz, nil
}

// bodyFailed answers a body that could not be read or split.
func (h *HTTP) bodyFailed(rq *request, err error) {
	var be *bodyError
	switch {
	case errors.As(err, &be):
		if be.retryAfter > 0 {
			rq.w.Header().Set("Retry-After", seconds(be.retryAfter))
		}
		h.fail(rq, be.status, "%s", be.msg)
	case isTimeout(err):
		h.fail(rq, http.StatusRequestTimeout, "the body did not arrive within read_timeout %s", h.cfg.ReadTimeout)
	default:
		h.fail(rq, http.StatusBadRequest, "reading the body: %v", err)
	}
}

func (h *HTTP) tooMany(rq *request, tok *token, wait time.Duration) {
	rq.w.Header().Set("Retry-After", seconds(wait))
	h.fail(rq, http.StatusTooManyRequests, "token %s is over its rate of %g events/s: retry after %ss", tok.name, float64(tok.limiter.Limit()), seconds(wait))
}

// unavailable answers a request whose events Redis did not take: none of
// them is reported accepted, and what says tells whether some may have
// been appended all the same (a pipelined append that failed mid-way).
func (h *HTTP) unavailable(rq *request, pipeline string, err error, what string) {
	h.failLog.Lock()
	if now := time.Now(); now.Sub(h.lastLog) >= 5*time.Second {
		h.lastLog = now
		h.log.Warn("http_ingest_redis_failed", zap.String("pipeline", pipeline), zap.Error(err))
	}
	h.failLog.Unlock()
	rq.w.Header().Set("Retry-After", seconds(UnavailableRetryAfter))
	h.fail(rq, http.StatusServiceUnavailable, "%s: %v", what, err)
}

// seconds formats d for Retry-After: whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	return strconv.Itoa(max(int(math.Ceil(d.Seconds())), 1))
}

func (h *HTTP) fail(rq *request, status int, format string, args ...any) {
	h.write(rq, status, struct {
		Error string `json:"error"`
	}{fmt.Sprintf(format, args...)})
}

func (h *HTTP) write(rq *request, status int, v any) {
	rq.status = status
	b, err := json.Marshal(v)
	if err != nil { // our own types: cannot happen
		b = []byte(`{"error":"internal error"}`)
	}
	rq.w.Header().Set("Content-Type", ContentTypeJSON)
	rq.w.Header().Set("X-Content-Type-Options", "nosniff")
	rq.w.WriteHeader(status)
	_, _ = rq.w.Write(append(b, '\n'))
}
