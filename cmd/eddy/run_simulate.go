package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/internal/secret"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// simulateSink is where eddy run sends the load of the file's simulate
// entry i: the pipeline's input stream, or with via the file's own HTTP
// or MQTT source, as a client would (httpAddr is the http.addr listener's
// address, "" when it is off). close releases the sink's connections.
func simulateSink(f *pipelines.File, i int, s pipelines.Simulate, p *pipelines.Pipeline, conn *redisConn,
	m *metrics.Metrics, log *zap.Logger, httpAddr string, noSources bool,
) (sink simulate.Sink, close func(), err error) {
	path := fmt.Sprintf("simulate[%d].via", i)
	if s.Via != "" && noSources {
		return nil, nil, usageError{fmt.Errorf("%s: %s needs the file's sources, which --no-sources leaves off", path, s.Via)}
	}
	retrying := func(cause string, wait time.Duration) {
		log.Debug("simulator_retry", zap.String("pipeline", p.Name), zap.String("cause", cause), zap.Duration("wait", wait))
	}
	switch {
	case s.Via == pipelines.SimulateViaHTTP:
		name, tok, _ := f.ViaHTTPToken(s) // validated
		addr := f.Sources.HTTP.Addr
		if addr == "" || addr == pipelines.HTTPSourceShared {
			addr = httpAddr
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			return nil, nil, fmt.Errorf("%s: the HTTP source's address %q has no port to send to", path, addr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		secretValue, err := secret.Read(tok.Env, tok.File)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: token %s: %w", path, name, err)
		}
		h := &simulate.HTTP{URL: "http://" + net.JoinHostPort(host, port) + "/v1/pipelines/" + p.Name + "/events",
			Token: secretValue, Retrying: retrying}
		return &quietSink{Sink: h, pipeline: p.Name, log: log}, func() {}, nil
	case strings.HasPrefix(s.Via, pipelines.SimulateViaMQTT):
		src, filter, _ := f.ViaMQTT(s) // validated
		if src.UsesTLS() {
			return nil, nil, fmt.Errorf("%s: source %s uses TLS, which the simulator does not set up: simulate through a plain mqtt:// source", path, src.Name)
		}
		topic, err := simulate.ParseTopic(filter)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: source %s's filter for pipeline %s cannot be published to: %w", path, src.Name, p.Name, err)
		}
		broker := src.Broker
		if addr, embedded := src.EmbeddedAddr(); embedded {
			broker = "mqtt://" + addr
		}
		mq := &simulate.MQTT{Broker: broker, Topic: topic, Username: src.Username, Retrying: retrying}
		if src.PasswordEnv != "" || src.PasswordFile != "" {
			pw, err := secret.Read(src.PasswordEnv, src.PasswordFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: source %s's password: %w", path, src.Name, err)
			}
			mq.Password = []byte(pw)
		}
		return &quietSink{Sink: mq, pipeline: p.Name, log: log}, func() { _ = mq.Close() }, nil
	}
	return &simSink{p: p, prod: processor.NewProducer(conn.client, p.Input.Stream, p.Input.Partitions, 0), m: m, log: log}, func() {}, nil
}

// quietSink keeps a simulator going through a source that refuses or is
// away for a while (a broker restarting, a source over its bounds): the
// batch is dropped with a warning, at most every 5s, as simSink does.
type quietSink struct {
	simulate.Sink
	pipeline string
	log      *zap.Logger
	last     time.Time // of the last warning; the Feeder sends from one goroutine
}

func (q *quietSink) Send(ctx context.Context, batch []simulate.Event) error {
	err := q.Sink.Send(ctx, batch)
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) && time.Since(q.last) > 5*time.Second {
		q.last = time.Now()
		q.log.Warn("simulator_send_failed", zap.String("pipeline", q.pipeline), zap.Error(err))
	}
	return nil
}

// simSink appends generated events to a pipeline's input. Malformed
// events go in as they are, for the pipeline to dead-letter.
type simSink struct {
	p    *pipelines.Pipeline
	prod *processor.Producer
	m    *metrics.Metrics
	log  *zap.Logger
	last time.Time
}

// Send never fails the run: generated load that cannot be written while
// Redis is away is dropped, with a warning, and the feeder goes on.
func (s *simSink) Send(ctx context.Context, batch []simulate.Event) error {
	recs := make([]processor.Record, len(batch))
	for i, e := range batch {
		recs[i], _ = encode(s.p, e.Data) // routed by the pipeline's own key
	}
	if _, err := s.prod.Send(ctx, recs); err != nil {
		if ctx.Err() == nil && time.Since(s.last) > 5*time.Second {
			s.last = time.Now()
			s.log.Warn("simulator_send_failed", zap.String("pipeline", s.p.Name), zap.Error(err))
		}
		return nil
	}
	s.m.Produced(s.p.Name, len(recs))
	return nil
}
