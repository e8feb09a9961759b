// Package ingest owns Eddy's ingest sources: the ways events come in from
// outside besides a hand-written XADD and eddy produce. It has one file per
// transport (http.go, mqtt.go), each a type with Run(ctx) error, and the
// Sink they share (sink.go), which turns arriving events into stream
// entries of a pipeline's input.
//
// The Sink encodes each event as the pipeline expects it
// (pipelines.Pipeline.EncodeEvent), optionally checks it against the
// pipeline's schema step, routes it to its partition with
// processor.PartitionOf and appends it through processor.Producer, exactly
// as eddy produce does: an event appended here is read, deduplicated and
// dead-lettered like any other. Append returns only after Redis has
// accepted the entries, so a transport acknowledges nothing (an HTTP 200,
// an MQTT PUBACK) that is not written. It also answers whether a pipeline
// is over its backpressure bounds (Sink.Pressure).
//
// It does not own the Redis client (cmd/eddy creates and closes it), the
// config (package pipelines parses and validates the "sources" section),
// the Prometheus registry (metrics creates the series; cmd/eddy registers
// them), signals or the process: every Run returns when its ctx is done,
// after every goroutine it started has exited.
//
// Import direction: cmd/eddy -> ingest -> pipelines, metrics -> processor.
// Nothing in pipelines, metrics or processor imports ingest.
//
// # What happens to a bad event
//
// An event that cannot be encoded for its pipeline (not a JSON object, no
// key, no dedupe id, over max_event_bytes, a schema violation) is a
// Rejection with a Reason (a short label, also a metric label), the JSON
// Pointer of the offending value ("" for the whole event) and a message.
// The caller chooses what happens to it with Bad: Reject appends nothing
// and tells the client (HTTP); Forward appends it anyway, as raw bytes, so
// that the pipeline dead-letters it with its reason and nothing is dropped
// on the way in (MQTT, whose publisher cannot be told).
//
// # Trace context
//
// A producer's W3C trace context goes into the entry as the field
// "traceparent" (processor.TraceField): an HTTP request's traceparent
// header is given to each of its events, an MQTT v5 message's user
// property of that name to its event (a forwarded bad one too, so that its
// dead letter names the trace). An event whose encoding has the field
// already keeps its own; an invalid value is not stored. The pipelines
// carry it on to their outputs and dead letters.
package ingest
