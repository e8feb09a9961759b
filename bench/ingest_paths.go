package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// IngestRun is one path's throughput run.
type IngestRun struct {
	Path   string `json:"path"`
	Events int    `json:"events"`
	// Seconds runs from the first event sent to the last one in Redis:
	// the last batch sent (produce), the last request answered (http), the
	// last reading appended by the MQTT source (mqtt).
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Entries is how many entries the path's pipeline held after the run,
	// and Distinct how many different readings they are: Events both, or
	// Events distinct and the rest sent again after a lost acknowledgement
	// (the pipeline's dedupe drops those); fewer is an error.
	Entries  int64 `json:"entries"`
	Distinct int64 `json:"distinct"`
	// Retried is how many requests or publishes were sent again.
	Retried int64 `json:"retried"`
	// RedisCPUSeconds is redis-server's CPU over the run (INFO cpu);
	// ProcessCPUSeconds this process's (the clients and the source);
	// BrokerCPUSeconds mosquitto's. 0 where unknown (no /proc).
	RedisCPUSeconds   float64 `json:"redis_cpu_seconds"`
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`
	BrokerCPUSeconds  float64 `json:"broker_cpu_seconds"`
}

// IngestRound is one round: each path once, in Order.
type IngestRound struct {
	Order   []string  `json:"order"`
	Produce IngestRun `json:"produce"`
	HTTP    IngestRun `json:"http"`
	MQTT    IngestRun `json:"mqtt"`
	// HTTPRatio and MQTTRatio are the path's events/s over produce's in
	// this round.
	HTTPRatio float64 `json:"http_ratio"`
	MQTTRatio float64 `json:"mqtt_ratio"`
}

// IngestPath is one path's medians over the rounds.
type IngestPath struct {
	EventsPerSec float64 `json:"events_per_sec"`
	// The CPU of redis-server, of this process and of mosquitto per
	// event, in µs.
	RedisCPUPerEvent   float64 `json:"redis_cpu_us_per_event"`
	ProcessCPUPerEvent float64 `json:"process_cpu_us_per_event"`
	BrokerCPUPerEvent  float64 `json:"broker_cpu_us_per_event"`
}

// IngestThroughput is the rounds and their medians.
type IngestThroughput struct {
	Events  int           `json:"events"`
	Rounds  []IngestRound `json:"rounds"`
	Produce IngestPath    `json:"produce"`
	HTTP    IngestPath    `json:"http"`
	MQTT    IngestPath    `json:"mqtt"`
	// HTTPRatio and MQTTRatio are the medians of the rounds' ratios to
	// produce (not the ratios of the medians); Min and Max their range.
	HTTPRatio    float64 `json:"http_ratio"`
	HTTPRatioMin float64 `json:"http_ratio_min"`
	HTTPRatioMax float64 `json:"http_ratio_max"`
	MQTTRatio    float64 `json:"mqtt_ratio"`
	MQTTRatioMin float64 `json:"mqtt_ratio_min"`
	MQTTRatioMax float64 `json:"mqtt_ratio_max"`
}

// throughput runs the rounds: each path once a round on Events new
// readings, the order rotated from round to round so that none is always
// first (on a cold server) or last.
func (in *ingester) throughput(ctx context.Context) (*IngestThroughput, error) {
	t := &IngestThroughput{Events: in.o.Events}
	for r := range in.o.Runs {
		round := IngestRound{}
		for i := range paths {
			path := paths[(i+r)%len(paths)]
			round.Order = append(round.Order, path)
			run, err := in.runPath(ctx, path, in.readings(in.o.Events))
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", r+1, path, err)
			}
			switch path {
			case PathProduce:
				round.Produce = run
			case PathHTTP:
				round.HTTP = run
			default:
				round.MQTT = run
			}
			in.progress("round %d/%d %-7s %9.0f events/s  (%d entries, %d retried)", r+1, in.o.Runs, path, run.EventsPerSec, run.Entries, run.Retried)
		}
		round.HTTPRatio = ratio(round.HTTP.EventsPerSec, round.Produce.EventsPerSec)
		round.MQTTRatio = ratio(round.MQTT.EventsPerSec, round.Produce.EventsPerSec)
		t.Rounds = append(t.Rounds, round)
	}
	summary := func(pick func(IngestRound) IngestRun) IngestPath {
		var eps, rcpu, pcpu, bcpu []float64
		for _, r := range t.Rounds {
			run := pick(r)
			eps = append(eps, run.EventsPerSec)
			rcpu = append(rcpu, perEvent(run.RedisCPUSeconds, run.Events))
			pcpu = append(pcpu, perEvent(run.ProcessCPUSeconds, run.Events))
			bcpu = append(bcpu, perEvent(run.BrokerCPUSeconds, run.Events))
		}
		return IngestPath{EventsPerSec: Median(eps), RedisCPUPerEvent: Median(rcpu), ProcessCPUPerEvent: Median(pcpu), BrokerCPUPerEvent: Median(bcpu)}
	}
	t.Produce = summary(func(r IngestRound) IngestRun { return r.Produce })
	t.HTTP = summary(func(r IngestRound) IngestRun { return r.HTTP })
	t.MQTT = summary(func(r IngestRound) IngestRun { return r.MQTT })
	var hr, mr []float64
	for _, r := range t.Rounds {
		hr = append(hr, r.HTTPRatio)
		mr = append(mr, r.MQTTRatio)
	}
	t.HTTPRatio, t.HTTPRatioMin, t.HTTPRatioMax = Median(hr), minOf(hr), maxOf(hr)
	t.MQTTRatio, t.MQTTRatioMin, t.MQTTRatioMax = Median(mr), minOf(mr), maxOf(mr)
	return t, nil
}

// perEvent is seconds per event in µs.
func perEvent(seconds float64, events int) float64 {
	if events == 0 {
		return 0
	}
	return seconds * 1e6 / float64(events)
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// cpu is the CPU used so far by redis-server, this process and mosquitto.
type cpu struct{ redis, process, broker float64 }

func (in *ingester) cpu(ctx context.Context) (cpu, error) {
	var c cpu
	info, err := in.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return c, fmt.Errorf("INFO cpu: %w", err)
	}
	user, err1 := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
	sys, err2 := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
	if err := errors.Join(err1, err2); err != nil {
		return c, fmt.Errorf("INFO cpu: used_cpu_user, used_cpu_sys: %w", err)
	}
	c.redis = user + sys
	if d, err := procCPU(os.Getpid()); err == nil {
		c.process = d.Seconds()
	}
	if d, err := procCPU(in.broker.pid()); err == nil {
		c.broker = d.Seconds()
	}
	return c, nil
}

// runPath sends evs by path into its emptied pipeline, times it, and
// checks what the pipeline then holds.
func (in *ingester) runPath(ctx context.Context, path string, evs []simulate.Event) (IngestRun, error) {
	run := IngestRun{Path: path, Events: len(evs)}
	if err := in.clear(ctx, path); err != nil {
		return run, err
	}
	before, err := in.cpu(ctx)
	if err != nil {
		return run, err
	}
	var took time.Duration
	switch path {
	case PathProduce:
		took, err = in.produce(ctx, evs)
	case PathHTTP:
		took, run.Retried, err = in.post(ctx, evs)
	default:
		took, run.Retried, err = in.publish(ctx, evs)
	}
	if err != nil {
		return run, err
	}
	after, err := in.cpu(ctx)
	if err != nil {
		return run, err
	}
	run.Seconds = took.Seconds()
	run.EventsPerSec = float64(len(evs)) / took.Seconds()
	run.RedisCPUSeconds = after.redis - before.redis
	run.ProcessCPUSeconds = after.process - before.process
	run.BrokerCPUSeconds = after.broker - before.broker
	run.Entries, run.Distinct, err = in.verify(ctx, path, len(evs))
	return run, err
}

// produce sends evs as eddy produce does: encoded by the pipeline, in
// pipelined batches of produceBatch through processor.Producer, one batch
// at a time.
func (in *ingester) produce(ctx context.Context, evs []simulate.Event) (time.Duration, error) {
	p := in.file.Pipeline(PathProduce)
	prod := processor.NewProducer(in.rdb, p.Input.Stream, p.Input.Partitions, 0)
	recs := make([]processor.Record, 0, produceBatch)
	start := time.Now()
	for i := 0; i < len(evs); i += produceBatch {
		recs = recs[:0]
		for _, ev := range evs[i:min(i+produceBatch, len(evs))] {
			key, fields, err := p.EncodeEvent(ev.Data)
			if err != nil {
				return 0, fmt.Errorf("encode %s: %w", ev.Data, err)
			}
			recs = append(recs, processor.Record{Key: key, Fields: fields})
		}
		if _, err := prod.Send(ctx, recs); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// post sends evs to the HTTP source, HTTPClients requests of HTTPBatch
// events at a time; done when every request is answered.
func (in *ingester) post(ctx context.Context, evs []simulate.Event) (time.Duration, int64, error) {
	sink := &simulate.HTTP{URL: in.httpURL + "/v1/pipelines/" + PathHTTP + "/events", Token: ingestToken,
		Batch: in.o.HTTPBatch, Concurrency: in.o.HTTPClients, Client: in.client}
	ctx, cancel := context.WithTimeout(ctx, ingestTimeout)
	defer cancel()
	start := time.Now()
	err := sink.Send(ctx, evs)
	took := time.Since(start)
	d := sink.Delivery()
	if err != nil {
		return 0, d.Retried, err
	}
	if d.Accepted != int64(len(evs)) {
		return 0, d.Retried, fmt.Errorf("the source accepted %d of %d readings (rejected %v)", d.Accepted, len(evs), d.Reasons)
	}
	return took, d.Retried, nil
}

// publish publishes evs at QoS 1 through the broker; done when the MQTT
// source has appended them all.
func (in *ingester) publish(ctx context.Context, evs []simulate.Event) (time.Duration, int64, error) {
	sink := &simulate.MQTT{Broker: in.broker.URL(), Topic: in.topic, Connections: in.o.MQTTConnections, InFlight: in.o.MQTTInFlight}
	defer sink.Close() //nolint:errcheck // closes connections
	ctx, cancel := context.WithTimeout(ctx, ingestTimeout)
	defer cancel()
	base := in.mqtt.Stats().Appended
	want := base + int64(len(evs))
	sent := make(chan error, 1)
	start := time.Now()
	go func() { sent <- sink.Send(ctx, evs) }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	published := false
	for in.mqtt.Stats().Appended < want {
		select {
		case err := <-sent:
			if err != nil {
				return 0, sink.Delivery().Retried, err
			}
			published, sent = true, nil
		case <-tick.C:
		case <-ctx.Done():
			if !published {
				if err := <-sent; err != nil && !errors.Is(err, ctx.Err()) { // Send returns once ctx is done
					return 0, sink.Delivery().Retried, err
				}
			}
			return 0, sink.Delivery().Retried, fmt.Errorf("the MQTT source appended %d of %d readings: %w", in.mqtt.Stats().Appended-base, len(evs), ctx.Err())
		}
	}
	took := time.Since(start)
	if !published {
		if err := <-sent; err != nil {
			return 0, sink.Delivery().Retried, err
		}
	}
	return took, sink.Delivery().Retried, nil
}

// verify counts the entries of path's pipeline: n, or more that are n
// distinct readings (some appended twice); anything else is an error.
func (in *ingester) verify(ctx context.Context, path string, n int) (entries, distinct int64, err error) {
	p := in.file.Pipeline(path)
	streams := make([]string, p.Input.Partitions)
	for i := range streams {
		streams[i] = processor.PartitionStream(p.Input.Stream, i, p.Input.Partitions)
		l, err := in.rdb.XLen(ctx, streams[i]).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, 0, err
		}
		entries += l
	}
	if entries == int64(n) {
		return entries, entries, nil
	}
	if entries < int64(n) {
		return entries, 0, fmt.Errorf("%d entries for %d readings sent: %d lost", entries, n, int64(n)-entries)
	}
	seen := make(map[string]bool, n)
	for _, s := range streams {
		for from := "-"; ; {
			msgs, err := in.rdb.XRangeN(ctx, s, from, "+", 10_000).Result()
			if err != nil {
				return entries, 0, err
			}
			for _, m := range msgs {
				data, _ := m.Values["data"].(string)
				seen[gjson.Get(data, "reading_id").String()] = true
			}
			if len(msgs) < 10_000 {
				break
			}
			from = "(" + msgs[len(msgs)-1].ID
		}
	}
	distinct = int64(len(seen))
	if distinct != int64(n) {
		return entries, distinct, fmt.Errorf("%d entries holding %d distinct readings, for %d sent", entries, distinct, n)
	}
	return entries, distinct, nil
}
