package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// traceConfig chains two pipelines: orders (needs amount) outputs to
// orders:out, which audit reads (needs approved) and outputs to audit:out;
// an HTTP source appends to orders.
const traceConfig = `
pipelines:
  - name: orders
    input: {stream: orders, payload: data}
    key: user
    block: 50ms
    steps:
      - require: [amount]
      - output: {stream: "orders:out"}
  - name: audit
    input: {stream: "orders:out", payload: data}
    key: user
    block: 50ms
    steps:
      - require: [approved]
      - output: {stream: "audit:out"}
sources:
  http:
    addr: 127.0.0.1:1
    tokens:
      shop: {env: SHOP_TOKEN, pipelines: [orders]}
`

// Done-when 4 of issue 12: a trace started by a producer, with the HTTP
// header traceparent or with the stream field itself, is continued: the
// commit span of every pipeline its event goes through links to it (the
// producer's span), the outputs of both pipelines carry the same
// traceparent, and a dead letter of the event carries it and names the
// trace in eddy.correlation_id.
func TestTraceContinuedThroughPipelines(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f, err := pipelines.Parse("trace.yaml", []byte(traceConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := newTracerProvider(sdktrace.WithSyncer(exp), 0) // ratio 0: only batches of sampled traces
	tracer := commitTracer{tr: tp.Tracer("test")}

	h, err := ingest.NewHTTP(f, ingest.NewSink(rdb, f), ingest.HTTPOptions{
		LookupEnv: func(string) (string, bool) { return "shop-secret", true }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = h.Serve(ctx, ln) })
	for _, p := range f.Pipelines {
		po := p.Options()
		po.Consumer, po.Logger, po.Tracer = "w1", zap.NewNop(), tracer
		proc, err := processor.New(rdb, po)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := proc.Run(ctx); err != nil {
				t.Errorf("pipeline %s: Run = %v", p.Name, err)
			}
		})
	}

	const (
		tp1 = "00-11111111111111111111111111111111-a111111111111111-01" // HTTP: through both pipelines
		tp2 = "00-22222222222222222222222222222222-a222222222222222-01" // HTTP: dead-lettered by audit
		tp3 = "00-33333333333333333333333333333333-a333333333333333-01" // in the field: dead-lettered by orders
	)
	post := func(tp, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/v1/pipelines/orders/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer shop-secret")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", tp)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST = %v %v, want 200", resp, err)
		}
		resp.Body.Close()
	}
	post(tp1, `{"user":"u1","amount":5,"approved":true}`)
	post(tp2, `{"user":"u2","amount":7}`)
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "orders", Values: []string{"data", `{"user":"u3"}`, "traceparent", tp3}}).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "outputs and dead letters", func() bool {
		return rdb.XLen(ctx, "orders:out").Val() == 2 && rdb.XLen(ctx, "audit:out").Val() == 1 &&
			rdb.XLen(ctx, "orders:dlq").Val() == 1 && rdb.XLen(ctx, "orders:out:dlq").Val() == 1
	})

	for stream, want := range map[string][]string{"orders:out": {tp1, tp2}, "audit:out": {tp1}, "orders:dlq": {tp3}, "orders:out:dlq": {tp2}} {
		var got []string
		for _, e := range rdb.XRange(ctx, stream, "-", "+").Val() {
			got = append(got, e.Values["traceparent"].(string))
			if strings.HasSuffix(stream, "dlq") {
				if id := e.Values["eddy.correlation_id"]; id != processor.TraceID(e.Values["traceparent"].(string)) {
					t.Errorf("%s: eddy.correlation_id %v, want the trace id of %v", stream, id, e.Values["traceparent"])
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: traceparents %v, want %v", stream, got, want)
		}
	}

	// Each pipeline's commit spans link to the producer's span of each of
	// its events: orders to all three, audit to the two it read.
	links := map[string]map[string]bool{} // pipeline → linked "trace/span"
	for _, s := range exp.GetSpans() {
		pipeline, ok := strings.CutPrefix(s.Name, "eddy.commit ")
		if !ok || s.SpanKind != trace.SpanKindConsumer {
			t.Errorf("span %q of kind %v, want eddy.commit <pipeline>, consumer", s.Name, s.SpanKind)
			continue
		}
		if links[pipeline] == nil {
			links[pipeline] = map[string]bool{}
		}
		for _, l := range s.Links {
			links[pipeline][l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String()] = true
		}
	}
	link := func(tp string) string { return tp[3:35] + "/" + tp[36:52] }
	for pipeline, want := range map[string][]string{"orders": {tp1, tp2, tp3}, "audit": {tp1, tp2}} {
		for _, tp := range want {
			if !links[pipeline][link(tp)] {
				t.Errorf("no commit span of %s links to %s (links %v)", pipeline, link(tp), links[pipeline])
			}
		}
	}
}

// A commit span is recorded when one of its events' traces is sampled,
// else at sample_ratio; it names the pipeline, partition, stream and batch
// size, and a failed commit is an error.
func TestCommitTracerSampling(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracer := commitTracer{tr: newTracerProvider(sdktrace.WithSyncer(exp), 0).Tracer("test")}
	start := time.Now()
	const (
		sampled   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	)
	for _, c := range []processor.TracedCommit{
		{Pipeline: "none", Entries: 3},
		{Pipeline: "unsampled", Entries: 1, Parents: []string{unsampled}},
		{Pipeline: "sampled", Partition: 2, Stream: "in:{2}", Entries: 2, Parents: []string{unsampled, sampled}, Err: processor.ErrFenced},
	} {
		c.Start, c.End = start, start.Add(time.Millisecond)
		tracer.TraceCommit(c)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "eddy.commit sampled" {
		t.Fatalf("spans = %v, want only eddy.commit sampled (ratio 0)", spans)
	}
	s := spans[0]
	attrs := map[string]string{}
	for _, a := range s.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, v := range map[string]string{"eddy.pipeline": "sampled", "eddy.partition": "2", "messaging.destination.name": "in:{2}", "messaging.batch.message_count": "2"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if len(s.Links) != 2 || s.Status.Code.String() != "Error" || !s.StartTime.Equal(start) || !s.EndTime.Equal(start.Add(time.Millisecond)) {
		t.Errorf("span links %d, status %v, %v..%v; want 2 links, Error, the commit's start and end", len(s.Links), s.Status, s.StartTime, s.EndTime)
	}
}

// Off by default: no tracer without an endpoint. With tracing.otlp_endpoint
// (or OTEL_EXPORTER_OTLP_ENDPOINT), spans are posted as OTLP/HTTP to its
// /v1/traces when the tracer stops.
func TestNewTracerExportsOTLP(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	tr, stop, err := newTracer(t.Context(), nil, noEnv, zap.NewNop())
	if err != nil || tr != nil || stop(t.Context()) != nil {
		t.Fatalf("newTracer without endpoint = %v, %v; want a nil tracer", tr, err)
	}
	if tr, _, err := newTracer(t.Context(), &pipelines.Tracing{}, noEnv, zap.NewNop()); err != nil || tr != nil {
		t.Fatalf("newTracer with an empty section = %v, %v; want a nil tracer", tr, err)
	}

	var mu sync.Mutex
	var got []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		_, _ = body.ReadFrom(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	for _, tc := range []struct {
		name    string
		section *pipelines.Tracing
		env     string
		want    string
	}{
		{"tracing.otlp_endpoint", &pipelines.Tracing{OTLPEndpoint: collector.URL + "/otel/"}, "", "POST /otel/v1/traces application/x-protobuf"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", nil, collector.URL, "POST /v1/traces application/x-protobuf"},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		t.Setenv(otlpEndpointEnv, tc.env)
		env := func(string) (string, bool) { return tc.env, tc.env != "" }
		tr, stop, err := newTracer(t.Context(), tc.section, env, zap.NewNop())
		if err != nil || tr == nil {
			t.Fatalf("%s: newTracer = %v, %v; want a tracer", tc.name, tr, err)
		}
		tr.TraceCommit(processor.TracedCommit{Pipeline: "p", Start: time.Now(), End: time.Now(),
			Parents: []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
		if err := stop(t.Context()); err != nil {
			t.Errorf("%s: stop = %v", tc.name, err)
		}
		mu.Lock()
		if !slices.Contains(got, tc.want) {
			t.Errorf("%s: collector got %q, want %q", tc.name, got, tc.want)
		}
		mu.Unlock()
	}
}
