// Package bench runs the scenarios of `eddy bench`: it measures Eddy's
// engine against a minimal hand-written go-redis consumer (Baseline) on the
// same machine, in the same run, and reports both sides and their ratios.
//
// It owns the benchmark's life from start to end: the redis-server it may
// start (server.go, through the launcher in internal/redisserver), the key
// names of every run under one unique prefix and their removal (keys.go),
// the generated events and the pre-fill
// (events.go), the two sides run as child processes of the same eddy binary
// (side.go, child.go, procfs_*.go), the throughput, dedupe steady state,
// stateful, windowed, memory and latency scenarios (throughput.go,
// steady.go, windowed.go, latency.go), the CPU profiles of the windowed
// side (profile.go), the statistics (stats.go) and the report, as a table or as
// JSON (report.go).
//
// It owns `eddy bench-ingest` too: its options and the run (ingest.go), the
// three ways in, produce, HTTP and MQTT, and their throughput rounds
// (ingest_paths.go), the fixed-rate latency of an HTTP request and of an
// MQTT reading (ingest_latency.go), the mosquitto it starts
// (ingest_mosquitto.go) and its report (ingest_report.go). The HTTP and
// MQTT sources it measures are package ingest's, served in this process;
// the clients are package simulate's.
//
// It does not own the engine or its configuration: the Eddy side is `eddy
// run` on a YAML file written here, the baseline side is `eddy
// bench-baseline`, which cmd/eddy wires to Baseline.Run. Unlike the engine,
// this package creates (and closes) its own Redis clients, for the server it
// starts or the one named by Options.RedisURL; on a server it did not start
// it never flushes anything and deletes only the keys under its own prefix.
//
// Import direction: cmd/eddy -> bench -> processor (the producer and its
// routing, partition stream, dedupe and state key names), dedupe (the
// bucket sets of a window), internal/redisserver, and for bench-ingest
// ingest, pipelines, metrics and simulate (pipelines also in the tests,
// which load the windowed side's config).
package bench
