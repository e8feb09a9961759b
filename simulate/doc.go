// Package simulate generates load for Eddy: a clickstream (users browsing a
// shop) and IoT sensor readings, as compact JSON objects, with a chosen share
// of duplicates and malformed events, keys that send in bursts or go quiet
// for a while, sensor readings that drift, and a Feeder that hands them to a
// Sink at a target rate.
//
// It owns the event shapes, their randomness (deterministic for a seed) and
// the pacing. It does not know Redis, pipelines or metrics: cmd/eddy passes a
// Sink that XADDs each event to the pipeline's input stream (routing by
// Event.Key with processor.PartitionOf) and counts what it added.
//
// Import direction: cmd/eddy -> simulate; simulate imports nothing of Eddy.
package simulate
