package main

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/ingest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
)

// mqttSources are the MQTT sources of a file, ready to run.
type mqttSources struct {
	// runs are the embedded brokers' and the sources' Run methods.
	// running counts the sources running: a broker stops after them.
	running sync.WaitGroup
	runs    []func(context.Context) error
	// names name the sources for the log ("mqtt:<name>").
	names []string
	// writes are the pipelines the sources append to, each once.
	writes []*pipelines.Pipeline
}

// newMQTTSources prepares the MQTT sources of f (sources.mqtt[]), each an
// ingest.MQTT appending through sink with its series on m. A source whose
// broker is "embedded" gets the embedded broker (demo only), one per
// address, bound now (so that an address in use fails the start); it logs
// mqtt_embedded_broker_started as a warning when it serves. Each source's
// password is read now: a missing one fails at once, naming the source and
// the variable or file.
func newMQTTSources(f *pipelines.File, sink *ingest.Sink, m *metrics.Ingest, log *zap.Logger) (ms *mqttSources, err error) {
	ms = &mqttSources{}
	if f.Sources == nil || len(f.Sources.MQTT) == 0 {
		return ms, nil
	}
	brokers := map[string]*ingest.EmbeddedBroker{}
	defer func() {
		if err != nil {
			for _, b := range brokers {
				_ = b.Close()
			}
		}
	}()
	written := map[*pipelines.Pipeline]bool{}
	var sources []func(context.Context) error
	for i := range f.Sources.MQTT {
		src := &f.Sources.MQTT[i]
		o := ingest.MQTTOptions{Logger: log, Metrics: m}
		if addr, ok := src.EmbeddedAddr(); ok {
			b := brokers[addr]
			if b == nil {
				if b, err = ingest.ListenEmbedded(addr, log); err != nil {
					return nil, err
				}
				brokers[addr] = b
				ms.runs = append(ms.runs, ms.brokerRun(b))
			}
			o.Broker = b.URL()
		}
		var mq *ingest.MQTT
		if mq, err = ingest.NewMQTT(f, src, sink, o); err != nil {
			return nil, err
		}
		sources = append(sources, ms.sourceRun(mq.Run))
		ms.names = append(ms.names, "mqtt:"+src.Name)
		for _, t := range src.Topics {
			if p := f.Pipeline(t.Pipeline); p != nil && !written[p] {
				written[p] = true
				ms.writes = append(ms.writes, p)
			}
		}
	}
	ms.runs = append(ms.runs, sources...)
	return ms, nil
}

// sourceRun runs an MQTT source, counted in ms.running so that the
// embedded brokers outlive it.
func (ms *mqttSources) sourceRun(run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ms.running.Add(1)
		defer ms.running.Done()
		return run(ctx)
	}
}

// brokerRun runs an embedded broker until ctx is done and every MQTT
// source has stopped: a source stopped after its broker would log a lost
// connection and a failed reconnect at every shutdown.
func (ms *mqttSources) brokerRun(b *ingest.EmbeddedBroker) func(context.Context) error {
	return func(ctx context.Context) error {
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			ms.running.Wait()
			cancel()
		})
		defer stop()
		return b.Run(bctx)
	}
}
