package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/internal/mqttconn"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// runningMQTT is an MQTT source running in the test, with its logs.
type runningMQTT struct {
	m      *MQTT
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startMQTT runs source i of f into a Sink on rdb until stop or the end of
// the test, and waits until it has subscribed.
func startMQTT(tb testing.TB, f *pipelines.File, i int, rdb redis.UniversalClient, o MQTTOptions) *runningMQTT {
	tb.Helper()
	return startMQTTWith(tb, f, i, NewSink(rdb, f), o, true)
}

func startMQTTWith(tb testing.TB, f *pipelines.File, i int, sink Appender, o MQTTOptions, waitSubscribed bool) *runningMQTT {
	tb.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if o.Logger == nil {
		o.Logger = zap.New(core)
	}
	m, err := NewMQTT(f, &f.Sources.MQTT[i], sink, o)
	if err != nil {
		tb.Fatalf("NewMQTT = %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(tb.Context()))
	r := &runningMQTT{m: m, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	tb.Cleanup(func() { r.stop(tb) })
	if waitSubscribed {
		waitFor(tb, 10*time.Second, "the source to subscribe", func() bool { return r.logs.FilterMessage("mqtt_subscribed").Len() > 0 })
	}
	return r
}

// stop cancels the source and waits for Run to return.
func (r *runningMQTT) stop(tb testing.TB) {
	tb.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				tb.Errorf("MQTT.Run = %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("MQTT.Run did not return within 30s of its ctx being done")
		}
	})
}

func (r *runningMQTT) logText() string {
	var b strings.Builder
	for _, e := range r.logs.All() {
		b.WriteString(e.Message)
		for _, f := range e.Context {
			b.WriteString(" " + f.Key + "=")
			switch {
			case f.Interface != nil:
				if err, ok := f.Interface.(error); ok {
					b.WriteString(err.Error())
				}
			case f.String != "":
				b.WriteString(f.String)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAppended waits until the sources have counted n appends between
// them: the entries are in Redis a moment before a source's counters and
// metrics are updated, once Append has returned.
func waitAppended(tb testing.TB, n int64, srcs ...*runningMQTT) {
	tb.Helper()
	waitFor(tb, 10*time.Second, fmt.Sprintf("%d appends counted", n), func() bool {
		var got int64
		for _, s := range srcs {
			got += s.m.Stats().Appended
		}
		return got >= n
	})
}

// publisher is a plain paho client that publishes and waits for the
// broker's PUBACK.
type publisher struct {
	mu  sync.Mutex
	cli *paho.Client
}

type pubOptions struct {
	user, password string
	tls            *tls.Config
}

func newPublisher(tb testing.TB, addr, id string, o pubOptions) *publisher {
	tb.Helper()
	p, err := dialPublisher(tb.Context(), addr, id, o)
	if err != nil {
		tb.Fatalf("connect publisher %s to %s: %v", id, addr, err)
	}
	tb.Cleanup(func() { p.close() })
	return p
}

func dialPublisher(ctx context.Context, addr, id string, o pubOptions) (*publisher, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var conn net.Conn
	var err error
	if o.tls != nil {
		conn, err = (&tls.Dialer{Config: o.tls}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	// paho writes a packet in pieces and needs a connection whose writes
	// it can lock (a bare tls.Conn lets two packets' pieces interleave).
	cli := paho.NewClient(paho.ClientConfig{Conn: mqttconn.Wrap(conn)})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if o.user != "" {
		cp.Username, cp.UsernameFlag = o.user, true
		cp.Password, cp.PasswordFlag = []byte(o.password), true
	}
	if _, err := cli.Connect(ctx, cp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &publisher{cli: cli}, nil
}

func (p *publisher) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	p.mu.Lock()
	cli := p.cli // close, from another goroutine, clears it
	p.mu.Unlock()
	if cli == nil {
		return errors.New("publisher closed")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if err != nil {
		return err
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return errors.New("publish refused: reason " + resp.Properties.ReasonString)
	}
	return nil
}

func (p *publisher) mustPublish(tb testing.TB, topic string, qos byte, payloads ...string) {
	tb.Helper()
	for _, pl := range payloads {
		if err := p.publish(tb.Context(), topic, qos, []byte(pl)); err != nil {
			tb.Fatalf("publish %s to %s: %v", pl, topic, err)
		}
	}
}

func (p *publisher) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli != nil {
		_ = p.cli.Disconnect(&paho.Disconnect{})
		p.cli = nil
	}
}

// payloads returns the "data" field of every entry of p's partitions.
func payloads(tb testing.TB, rdb redis.UniversalClient, p *pipelines.Pipeline) []string {
	tb.Helper()
	var out []string
	for _, m := range readPartitions(tb, rdb, p) {
		v, _ := m.Values[p.Input.Payload].(string)
		out = append(out, v)
	}
	return out
}

// entryCount is how many entries p's partitions hold.
func entryCount(tb testing.TB, rdb redis.UniversalClient, p *pipelines.Pipeline) int64 {
	tb.Helper()
	var n int64
	parts := max(p.Input.Partitions, 1)
	for i := range parts {
		l, err := rdb.XLen(tb.Context(), processor.PartitionStream(p.Input.Stream, i, parts)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return -1 // Redis is down
		}
		n += l
	}
	return n
}
