package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// otlpEndpointEnv turns span export on when the file has no
// tracing.otlp_endpoint; the exporter reads it (and the other OTEL_*
// variables) itself.
const otlpEndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"

// maxLinks bounds the links of one commit span: a batch's distinct traces
// (the SDK's default of 128 would drop some of a full batch's).
const maxLinks = 1024

// newTracer returns the BatchTracer of eddy run, exporting a span per
// commit over OTLP/HTTP, and the function that flushes and stops it (to
// call after the pipelines have stopped, bounded by its ctx). Tracing is
// on when the file sets tracing.otlp_endpoint or the environment sets
// OTEL_EXPORTER_OTLP_ENDPOINT; off, the tracer is nil (the engine then
// does nothing for it) and the stop function does nothing.
func newTracer(ctx context.Context, t *pipelines.Tracing, lookupEnv func(string) (string, bool), log *zap.Logger) (processor.BatchTracer, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	var endpoint string
	ratio := 1.0
	if t != nil {
		endpoint = t.OTLPEndpoint
		if t.SampleRatio != nil {
			ratio = *t.SampleRatio
		}
	}
	env, _ := lookupEnv(otlpEndpointEnv)
	if endpoint == "" && env == "" {
		return nil, off, nil
	}
	var opts []otlptracehttp.Option
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, off, fmt.Errorf("tracing.otlp_endpoint %q: %w", endpoint, err)
		}
		opts = append(opts, otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath(strings.TrimSuffix(u.Path, "/")+"/v1/traces"))
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, off, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	tp := newTracerProvider(sdktrace.WithBatcher(exp), ratio)
	log.Info("tracing_on", zap.String("otlp_endpoint", endpoint), zap.Bool("endpoint_from_env", endpoint == ""),
		zap.Float64("sample_ratio", ratio))
	return commitTracer{tr: tp.Tracer("github.com/eddy-streams/eddy")}, tp.Shutdown, nil
}

// newTracerProvider is the provider of newTracer with the span processor
// given (tests pass an in-memory exporter's).
func newTracerProvider(spans sdktrace.TracerProviderOption, ratio float64) *sdktrace.TracerProvider {
	limits := sdktrace.NewSpanLimits()
	limits.LinkCountLimit = maxLinks
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", "eddy"), attribute.String("service.version", eddyVersion())),
		resource.Environment()) // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", "eddy"))
	}
	return sdktrace.NewTracerProvider(spans, sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithSampler(linkedSampler{ratio: sdktrace.TraceIDRatioBased(ratio)}))
}

// linkedSampler records a commit span if one of its links (its events'
// traces) is sampled, else at the ratio: a producer that samples its trace
// finds its events' commits in it.
type linkedSampler struct{ ratio sdktrace.Sampler }

func (s linkedSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, l := range p.Links {
		if l.SpanContext.IsSampled() {
			return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
				Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
		}
	}
	return s.ratio.ShouldSample(p)
}

func (s linkedSampler) Description() string {
	return "LinkedOr{" + s.ratio.Description() + "}"
}

// commitTracer records a span per commit, linked to the traces of its
// batch's events.
type commitTracer struct{ tr trace.Tracer }

var _ processor.BatchTracer = commitTracer{}

// TraceCommit records the commit's span after the fact, with its start
// and end times.
func (t commitTracer) TraceCommit(c processor.TracedCommit) {
	links := make([]trace.Link, 0, len(c.Parents))
	prop := propagation.TraceContext{}
	for _, tp := range c.Parents {
		sc := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.MapCarrier{processor.TraceField: tp}))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	_, span := t.tr.Start(context.Background(), "eddy.commit "+c.Pipeline,
		trace.WithTimestamp(c.Start), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", c.Stream),
			attribute.Int("messaging.batch.message_count", c.Entries),
			attribute.String("eddy.pipeline", c.Pipeline),
			attribute.Int("eddy.partition", c.Partition),
		))
	if c.Err != nil {
		span.RecordError(c.Err)
		span.SetStatus(codes.Error, c.Err.Error())
	}
	span.End(trace.WithTimestamp(c.End))
}

// stopTracer flushes the spans not yet exported, for at most 5s.
func stopTracer(ctx context.Context, stop func(context.Context) error, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("tracing_flush_failed", zap.Error(err))
	}
}
