package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

const (
	// latencyInFlight bounds the requests (HTTP) or batches (MQTT) of a
	// fixed-rate run in flight at once.
	latencyInFlight = 64
	// latencyDrain is how long, after the last event is sent, a latency
	// run waits for the rest to be read.
	latencyDrain = 30 * time.Second
)

// IngestLatency is the latency at a fixed rate, medians of LatencyRuns
// runs (the median of each percentile).
type IngestLatency struct {
	Rate      int `json:"rate"`
	HTTPBatch int `json:"http_batch"`
	// HTTP is a request's, from being sent to being answered (which the
	// source does once Redis has its events), for requests of HTTPBatch
	// events sent at Rate events/s.
	HTTP     Latency   `json:"http"`
	HTTPRuns []Latency `json:"http_runs"`
	// MQTT is a reading's, from its publish to its entry being read from
	// Redis (by a reader blocked on the partitions), at Rate readings/s.
	MQTT     Latency   `json:"mqtt"`
	MQTTRuns []Latency `json:"mqtt_runs"`
	// HTTPBehind and MQTTBehind count the runs that could not send at the
	// rate (more than latencyInFlight in flight, or a send later than an
	// interval): their figures include the wait.
	HTTPBehind int `json:"http_behind"`
	MQTTBehind int `json:"mqtt_behind"`
}

// latency runs the fixed-rate runs, HTTP and MQTT in turn.
func (in *ingester) latency(ctx context.Context) (*IngestLatency, error) {
	l := &IngestLatency{Rate: in.o.LatencyRate, HTTPBatch: in.o.LatencyBatch}
	for r := range in.o.LatencyRuns {
		h, behind, err := in.httpLatency(ctx)
		if err != nil {
			return nil, fmt.Errorf("latency run %d, http: %w", r+1, err)
		}
		if behind {
			l.HTTPBehind++
		}
		l.HTTPRuns = append(l.HTTPRuns, h)
		in.progress("latency %d/%d http  p50 %.2fms p99 %.2fms (%d requests%s)", r+1, in.o.LatencyRuns, h.P50, h.P99, h.Samples, behindNote(behind))
		m, behind, err := in.mqttLatency(ctx)
		if err != nil {
			return nil, fmt.Errorf("latency run %d, mqtt: %w", r+1, err)
		}
		if behind {
			l.MQTTBehind++
		}
		l.MQTTRuns = append(l.MQTTRuns, m)
		in.progress("latency %d/%d mqtt  p50 %.2fms p99 %.2fms (%d readings%s)", r+1, in.o.LatencyRuns, m.P50, m.P99, m.Samples, behindNote(behind))
	}
	l.HTTP, l.MQTT = medianLatency(l.HTTPRuns), medianLatency(l.MQTTRuns)
	return l, nil
}

func behindNote(behind bool) string {
	if behind {
		return ", fell behind the rate"
	}
	return ""
}

// eventCount is how many events a fixed-rate run sends.
func (in *ingester) eventCount() int {
	return max(1, int(float64(in.o.LatencyRate)*(in.o.Warmup+in.o.Duration).Seconds()))
}

// httpLatency sends requests of LatencyBatch events at LatencyRate, each
// when due (open loop: a slow answer does not hold the next request back,
// up to latencyInFlight in flight), and times each from being sent to
// being answered; those sent in the warmup are not counted.
func (in *ingester) httpLatency(ctx context.Context) (Latency, bool, error) {
	if err := in.clear(ctx, PathHTTP); err != nil {
		return Latency{}, false, err
	}
	evs := in.readings(in.eventCount())
	batch := in.o.LatencyBatch
	interval := time.Duration(float64(time.Second) * float64(batch) / float64(in.o.LatencyRate))
	url := in.httpURL + "/v1/pipelines/" + PathHTTP + "/events"

	var (
		mu      sync.Mutex
		samples []time.Duration
		failed  error
		wg      sync.WaitGroup
		behind  bool
	)
	sem := make(chan struct{}, latencyInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	start := time.Now()
	measureFrom := start.Add(in.o.Warmup)
	for i := 0; i*batch < len(evs); i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				wg.Wait()
				return Latency{}, false, ctx.Err()
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			behind = true
			sem <- struct{}{}
		}
		sent := time.Now()
		if sent.Sub(due) > interval {
			behind = true
		}
		part := evs[i*batch : min((i+1)*batch, len(evs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := in.postOnce(ctx, url, part)
			took := time.Since(sent)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failed == nil {
				failed = err
			}
			if !sent.Before(measureFrom) {
				samples = append(samples, took)
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return Latency{}, behind, failed
	}
	if _, _, err := in.verify(ctx, PathHTTP, len(evs)); err != nil {
		return Latency{}, behind, err
	}
	return summarize(samples), behind, nil
}

// postOnce posts evs as one NDJSON request and wants every one accepted.
func (in *ingester) postOnce(ctx context.Context, url string, evs []simulate.Event) error {
	var body bytes.Buffer
	for _, ev := range evs {
		body.Write(ev.Data)
		body.WriteByte('\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	resp, err := in.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var ans struct {
		Accepted int `json:"accepted"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ans) != nil || ans.Accepted != len(evs) {
		return fmt.Errorf("POST %s: %d events: %s %s", url, len(evs), resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// mqttLatency publishes readings at LatencyRate, a batch every mqttTick
// (each in flight on its own, up to latencyInFlight batches), while a
// reader blocked on the pipeline's partitions times each reading from its
// publish to its entry being read; those published in the warmup are not
// counted.
func (in *ingester) mqttLatency(ctx context.Context) (Latency, bool, error) {
	if err := in.clear(ctx, PathMQTT); err != nil {
		return Latency{}, false, err
	}
	evs := in.readings(in.eventCount())
	sent := make([]atomic.Int64, len(evs)) // unix ns of each reading's publish
	sink := &simulate.MQTT{Broker: in.broker.URL(), Topic: in.topic, Connections: in.o.MQTTConnections, InFlight: in.o.MQTTInFlight}
	defer sink.Close() //nolint:errcheck // closes connections

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		samples []time.Duration
		err     error
	}
	read := make(chan result, 1)
	start := time.Now()
	measureFrom := start.Add(in.o.Warmup).UnixNano()
	go func() {
		s, err := in.readLatencies(rctx, sent, measureFrom)
		read <- result{s, err}
	}()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error
		behind bool
	)
	sem := make(chan struct{}, latencyInFlight)
	tick := time.NewTicker(mqttTick)
	defer tick.Stop()
	for next := 0; next < len(evs); {
		select {
		case <-tick.C:
		case <-ctx.Done():
			wg.Wait()
			cancel()
			<-read
			return Latency{}, false, ctx.Err()
		}
		due := min(len(evs), int(time.Since(start).Seconds()*float64(in.o.LatencyRate)))
		if due <= next {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			behind = true
			sem <- struct{}{}
		}
		part := evs[next:due]
		now := time.Now().UnixNano()
		for i := next; i < due; i++ {
			sent[i].Store(now)
		}
		next = due
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := sink.Send(ctx, part); err != nil {
				mu.Lock()
				if failed == nil {
					failed = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		cancel()
		<-read
		return Latency{}, behind, failed
	}
	r := <-read
	if r.err != nil {
		return Latency{}, behind, r.err
	}
	if d := sink.Delivery(); d.Retried > 0 {
		behind = true // a publish sent again: its latency includes the retry
	}
	return summarize(r.samples), behind, nil
}

// readLatencies reads the MQTT pipeline's partitions from their start
// until every reading of sent is read (or latencyDrain after ctx's
// deadline would pass), and times each from sent; readings sent before
// measureFrom are read but not counted.
func (in *ingester) readLatencies(ctx context.Context, sent []atomic.Int64, measureFrom int64) ([]time.Duration, error) {
	p := in.file.Pipeline(PathMQTT)
	n := p.Input.Partitions
	args := make([]string, 2*n)
	for i := range n {
		args[i] = processor.PartitionStream(p.Input.Stream, i, n)
		args[n+i] = "0-0"
	}
	samples := make([]time.Duration, 0, len(sent))
	got := 0
	lastProgress := time.Now()
	for got < len(sent) {
		res, err := in.rdb.XRead(ctx, &redis.XReadArgs{Streams: args, Count: 1000, Block: 100 * time.Millisecond}).Result()
		now := time.Now()
		switch {
		case errors.Is(err, redis.Nil): // nothing new within the block
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%d of %d readings read: %w", got, len(sent), ctx.Err())
			}
			return nil, fmt.Errorf("read the MQTT pipeline's partitions: %w", err)
		}
		for _, s := range res {
			for i := range n {
				if args[i] == s.Stream && len(s.Messages) > 0 {
					args[n+i] = s.Messages[len(s.Messages)-1].ID
				}
			}
			for _, m := range s.Messages {
				data, _ := m.Values["data"].(string)
				idx, ok := readingIndex(gjson.Get(data, "reading_id").String())
				if !ok || idx >= len(sent) {
					return nil, fmt.Errorf("entry %s of %s is no reading of this run: %.100s", m.ID, s.Stream, data)
				}
				got++
				lastProgress = now
				if at := sent[idx].Load(); at >= measureFrom {
					samples = append(samples, time.Duration(now.UnixNano()-at))
				}
			}
		}
		if now.Sub(lastProgress) > latencyDrain {
			return nil, fmt.Errorf("%d of %d readings read, none for %v", got, len(sent), latencyDrain)
		}
	}
	return samples, nil
}

// readingIndex is n of a reading id "r-<seed>-<n>".
func readingIndex(id string) (int, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	return n, err == nil && n >= 0
}
