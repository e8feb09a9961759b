// Package simulate generates load for Eddy: a clickstream (users browsing a
// shop) and IoT sensor readings, as compact JSON objects, with a chosen share
// of duplicates and malformed events, keys that send in bursts or go quiet
// for a while, sensor readings that drift, what the analytics steps need
// (users who pause between sessions, shopping journeys that buy or leave a
// cart, temperatures that rise over a threshold and back, devices that go
// silent, events out of order and late: on by default, at the sizes of
// configs/demo.yaml), and a Feeder that hands them to a Sink at a target
// rate.
//
// It owns the event shapes, their randomness (deterministic for a seed), the
// pacing, and two Sinks that deliver over the network as outside clients
// would: HTTP posts NDJSON batches to Eddy's HTTP source, and MQTT publishes
// each event at QoS 1 on a topic made from its fields (Topic). Both count
// what they delivered (Delivery) and send again what was not taken (429 and
// 503 waited out, connections made again) until it is accepted or refused
// for good: they never drop an event.
//
// It does not know Redis, pipelines or metrics: for the demo, cmd/eddy
// passes a Sink that XADDs each event to the pipeline's input stream
// (routing by Event.Key with processor.PartitionOf) and counts what it
// added; eddy simulate --to and eddy bench-ingest use the network Sinks.
//
// Import direction: cmd/eddy, bench -> simulate -> internal/mqttconn (the
// MQTT connection wrapper); nothing else of Eddy's (its tests run the Sinks
// against package ingest's real sources).
package simulate
