package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/bench"
	"github.com/eddy-streams/eddy/internal/redisurl"
)

func benchIngestCommand(g *globals) *cobra.Command {
	o := bench.StandardIngest()
	var quick, asJSON bool
	cmd := &cobra.Command{
		Use:   "bench-ingest [--quick] [--json]",
		Short: "Measure the HTTP and MQTT ingest sources against eddy produce's path, into the same Redis",
		Long: `Runs, in one invocation, three ways of getting IoT readings into a pipeline's
input, each into a pipeline of its own on the same Redis, and reports each one's
events/s and its ratio to the first:

  produce  eddy produce's path: each reading encoded by the pipeline and sent
           through the producer in pipelined batches of 500, one at a time
  http     --http-clients clients posting NDJSON batches of --http-batch
           readings to the HTTP source (each request answered once Redis has
           its readings)
  mqtt     --mqtt-connections connections publishing each reading at QoS 1,
           --mqtt-inflight awaiting their PUBACK, to a Mosquitto of its own,
           from which the MQTT source appends them

over --runs rounds (each path once a round, the order rotated; medians, and the
ratios' median and range), with redis-server's, this process's and mosquitto's
CPU per event. The sources and the clients run in this process. Then, at
--latency-rate readings/s, the latency of an HTTP request of --latency-batch
readings (sent to answered) and of an MQTT reading (publish to its entry read
from Redis): p50, p99, p999, max, medians of --latency-runs runs.

It starts its own mosquitto (on PATH or in /usr/sbin) and, unless --redis URL
is given, its own redis-server, on free loopback ports, and stops them at the
end. On a --redis server it writes only keys under a unique "eddybench:<hex>:"
prefix and deletes them at the end; EDDY_REDIS_URL is ignored here. Every run
is verified: the pipeline's entries are counted, and a reading lost fails the
command (exit 1), naming the round and the path. --quick runs a smaller set.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if quick {
				applyQuickIngest(cmd, &o)
			}
			if cmd.Flags().Changed("redis") {
				o.RedisURL = g.redisURL
			}
			o.Progress, o.Command = g.stderr, redisurl.RedactText(commandLine(os.Args))
			if err := o.Check(); err != nil {
				return usageError{err}
			}
			rep, err := bench.RunIngest(cmd.Context(), o)
			if err != nil {
				return fmt.Errorf("bench-ingest: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return bench.WriteIngestTable(g.stdout, rep)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Events, "events", o.Events, "readings each path sends in each round")
	fl.IntVar(&o.Runs, "runs", o.Runs, "rounds of the three paths; figures are medians (0: no throughput runs)")
	fl.IntVar(&o.Keys, "keys", o.Keys, "devices the readings are spread over")
	fl.IntVar(&o.Partitions, "partitions", o.Partitions, "partitions of each path's pipeline")
	fl.IntVar(&o.HTTPClients, "http-clients", o.HTTPClients, "HTTP requests in flight")
	fl.IntVar(&o.HTTPBatch, "http-batch", o.HTTPBatch, "readings per HTTP request")
	fl.IntVar(&o.MQTTConnections, "mqtt-connections", o.MQTTConnections, "MQTT publishers' connections")
	fl.IntVar(&o.MQTTInFlight, "mqtt-inflight", o.MQTTInFlight, "MQTT publishes awaiting their PUBACK at once")
	fl.IntVar(&o.LatencyRate, "latency-rate", o.LatencyRate, "fixed rate of the latency runs, readings/s")
	fl.IntVar(&o.LatencyBatch, "latency-batch", o.LatencyBatch, "readings per HTTP request in the latency runs")
	fl.IntVar(&o.LatencyRuns, "latency-runs", o.LatencyRuns, "latency runs per path; figures are medians (0: none)")
	fl.DurationVar(&o.Warmup, "warmup", o.Warmup, "discarded start of each latency run")
	fl.DurationVar(&o.Duration, "duration", o.Duration, "measured time of each latency run")
	fl.BoolVar(&quick, "quick", false, "the smaller set, for smoke checks: events 10k, runs 2, 1 latency run of 2s after 0.5s (flags given win)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object on stdout (progress stays on stderr)")
	return cmd
}

// applyQuickIngest sets every option the command line did not set to the
// quick set's.
func applyQuickIngest(cmd *cobra.Command, o *bench.IngestOptions) {
	q := bench.QuickIngest()
	set := func(flag string, apply func()) {
		if !cmd.Flags().Changed(flag) {
			apply()
		}
	}
	set("events", func() { o.Events = q.Events })
	set("runs", func() { o.Runs = q.Runs })
	set("latency-runs", func() { o.LatencyRuns = q.LatencyRuns })
	set("warmup", func() { o.Warmup = q.Warmup })
	set("duration", func() { o.Duration = q.Duration })
}
