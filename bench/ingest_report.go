package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// IngestReport is everything one RunIngest measured; `eddy bench-ingest
// --json` prints it.
type IngestReport struct {
	Command    string            `json:"command"`
	Machine    IngestMachine     `json:"machine"`
	Settings   IngestSettings    `json:"settings"`
	Throughput *IngestThroughput `json:"throughput,omitempty"`
	Latency    *IngestLatency    `json:"latency,omitempty"`
	// Seconds is the wall time of the whole bench.
	Seconds float64 `json:"seconds"`
}

// IngestMachine is where the bench ran, and the broker's version.
type IngestMachine struct {
	Machine
	Mosquitto string `json:"mosquitto_version"`
	// LoadStart and LoadEnd are the load averages (1, 5, 15 minutes) when
	// the bench started and ended; "" where unknown.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

// IngestSettings are the IngestOptions that shape the figures.
type IngestSettings struct {
	Events          int     `json:"events"`
	Runs            int     `json:"runs"`
	Keys            int     `json:"keys"`
	Partitions      int     `json:"partitions"`
	ProduceBatch    int     `json:"produce_batch"`
	HTTPClients     int     `json:"http_clients"`
	HTTPBatch       int     `json:"http_batch"`
	MQTTConnections int     `json:"mqtt_connections"`
	MQTTInFlight    int     `json:"mqtt_inflight"`
	LatencyRate     int     `json:"latency_rate"`
	LatencyBatch    int     `json:"latency_batch"`
	LatencyRuns     int     `json:"latency_runs"`
	WarmupSec       float64 `json:"warmup_seconds"`
	DurationSec     float64 `json:"duration_seconds"`
}

func ingestSettingsOf(o IngestOptions) IngestSettings {
	return IngestSettings{
		Events: o.Events, Runs: o.Runs, Keys: o.Keys, Partitions: o.Partitions, ProduceBatch: produceBatch,
		HTTPClients: o.HTTPClients, HTTPBatch: o.HTTPBatch, MQTTConnections: o.MQTTConnections, MQTTInFlight: o.MQTTInFlight,
		LatencyRate: o.LatencyRate, LatencyBatch: o.LatencyBatch, LatencyRuns: o.LatencyRuns,
		WarmupSec: o.Warmup.Seconds(), DurationSec: o.Duration.Seconds(),
	}
}

// WriteIngestTable writes r as tables for people.
func WriteIngestTable(w io.Writer, r *IngestReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s, m := r.Settings, r.Machine
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	p("eddy bench-ingest: events into Redis by eddy produce's path, the HTTP source and the MQTT source")
	p("command\t%s", r.Command)
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	p("machine\t%d CPUs, %s/%s, %s", m.CPUs, m.GOOS, m.GOARCH, cpu)
	p("servers\t%s %s; mosquitto %s (own)", m.Redis, m.RedisVersion, m.Mosquitto)
	if m.LoadStart != "" {
		p("load average\t%s at the start, %s at the end (above %d, other jobs shared the CPUs)", m.LoadStart, m.LoadEnd, m.CPUs)
	}
	p("setup\tIoT readings over %s devices, %d partitions; produce: batches of %d; http: %d clients, %d events a request;",
		count(s.Keys), s.Partitions, s.ProduceBatch, s.HTTPClients, s.HTTPBatch)
	p("\tmqtt: QoS 1, %d connections, %d publishes awaiting PUBACK", s.MQTTConnections, s.MQTTInFlight)
	p("")
	if t := r.Throughput; t != nil {
		p("THROUGHPUT: %s readings a run, medians of %d rounds (each path once a round, order rotated)", count(t.Events), len(t.Rounds))
		p("\tproduce\thttp\tmqtt")
		p("events/s\t%s\t%s\t%s", count(int(t.Produce.EventsPerSec)), count(int(t.HTTP.EventsPerSec)), count(int(t.MQTT.EventsPerSec)))
		p("ratio to produce (median of rounds)\t1.00\t%.2f (%.2f–%.2f)\t%.2f (%.2f–%.2f)", t.HTTPRatio, t.HTTPRatioMin, t.HTTPRatioMax, t.MQTTRatio, t.MQTTRatioMin, t.MQTTRatioMax)
		p("CPU µs per event, redis-server\t%.2f\t%.2f\t%.2f", t.Produce.RedisCPUPerEvent, t.HTTP.RedisCPUPerEvent, t.MQTT.RedisCPUPerEvent)
		p("CPU µs per event, this process\t%.2f\t%.2f\t%.2f", t.Produce.ProcessCPUPerEvent, t.HTTP.ProcessCPUPerEvent, t.MQTT.ProcessCPUPerEvent)
		p("CPU µs per event, mosquitto\t\t\t%.2f", t.MQTT.BrokerCPUPerEvent)
		for i, rd := range t.Rounds {
			p("round %d, events/s\t%s\t%s\t%s", i+1, count(int(rd.Produce.EventsPerSec)), count(int(rd.HTTP.EventsPerSec)), count(int(rd.MQTT.EventsPerSec)))
		}
		p("(this process: the clients and the sources, which run in it; every run's entries counted in Redis)")
		p("")
	}
	if l := r.Latency; l != nil {
		p("LATENCY at %s events/s, ms, medians of %d run(s)", count(l.Rate), len(l.HTTPRuns))
		p("\tp50\tp99\tp999\tmax\tsamples")
		p("http request of %d events, sent to answered\t%s", l.HTTPBatch, latencyRow(l.HTTP, l.HTTPBehind))
		p("mqtt reading, publish to read from Redis\t%s", latencyRow(l.MQTT, l.MQTTBehind))
		p("")
	}
	p("took\t%v", time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	return tw.Flush()
}

func latencyRow(l Latency, behind int) string {
	row := fmt.Sprintf("%.2f\t%.2f\t%.2f\t%.2f\t%s", l.P50, l.P99, l.P999, l.Max, count(l.Samples))
	if behind > 0 {
		row += fmt.Sprintf(" (%d run(s) fell behind the rate)", behind)
	}
	return row
}
