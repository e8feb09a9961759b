package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/ingest/topic"
	"github.com/eddy-streams/eddy/internal/mqttconn"
	"github.com/eddy-streams/eddy/internal/secret"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// Appender appends events to a pipeline's input: Sink.Append. The MQTT
// source takes one so that tests can put a failing Redis behind it.
type Appender interface {
	Append(ctx context.Context, pipeline string, evs []Event, validate bool, bad Bad) ([]Result, error)
}

var _ Appender = (*Sink)(nil)

const (
	// DefaultMQTTShutdownTimeout is MQTTOptions.ShutdownTimeout's default.
	DefaultMQTTShutdownTimeout = 10 * time.Second
	// mqttAckInterval is how often paho sends the acks marked since its
	// last round (in the order the messages came, as MQTT requires).
	mqttAckInterval = 5 * time.Millisecond
	// mqttQoS0Slack is room in the hand-off queue above receive_maximum
	// for QoS 0 messages, which the broker does not count.
	mqttQoS0Slack = 256
	// mqttLogEvery rate-limits repeated warnings of one kind.
	mqttLogEvery = 5 * time.Second
)

// MQTT outcomes of a message, the status label of
// eddy_ingest_requests_total{source="mqtt:<name>"}.
const (
	// MQTTAppended: the event was appended (then acked, for QoS 1).
	MQTTAppended = "appended"
	// MQTTForwarded: the event was bad (not JSON, no key, a schema
	// violation…) and appended as it is for the pipeline to dead-letter.
	MQTTForwarded = "forwarded"
	// MQTTUnrouted: the topic matched no filter of the source (a
	// subscription left in the persistent session by an older config): the
	// message is acked and dropped, with a warning.
	MQTTUnrouted = "unrouted"
)

// MQTTStatuses lists the outcomes, for metrics to create their series.
var MQTTStatuses = []string{MQTTAppended, MQTTForwarded, MQTTUnrouted}

// MQTTOptions are what an MQTT source needs besides its config.
type MQTTOptions struct {
	// Logger logs connections, refused subscriptions and append failures
	// (rate-limited). Default (nil): no logs.
	Logger *zap.Logger
	// Metrics, when set, gets the source's series ("mqtt:<name>"), all
	// created at zero by NewMQTT.
	Metrics *metrics.Ingest
	// Broker, when set, replaces the config's broker URL: the address an
	// embedded broker actually listens on. Default "": the config's.
	Broker string
	// ShutdownTimeout bounds the soft stop: appending and acking what the
	// source holds when ctx is done. Default DefaultMQTTShutdownTimeout.
	ShutdownTimeout time.Duration
}

// MQTT is one sources.mqtt[] entry at work: a client of its broker with a
// persistent session that hands each message to the Sink and acks it once
// Redis has it. Create it with NewMQTT and run it with Run.
//
// Delivery: a QoS 1 message is PUBACKed only after Append has returned
// without error for its batch; while Redis fails, the batch is tried again
// with backoff (reconnect.min_backoff doubling to max_backoff) and nothing
// is acked, so the broker keeps it, and receive_maximum bounds what it
// sends meanwhile. A message that cannot become an event of its pipeline
// (not a JSON object, no key, over max_event_bytes, against the schema with
// validate) is appended as it is (Forward), for the pipeline to
// dead-letter, then acked: nothing is dropped on the way in. A crash, or a
// connection lost, before the ack leaves the message with the broker, which
// sends it again: an event may then be appended twice, and the pipeline's
// dedupe keeps one. QoS 0 messages are appended the same way, with no ack
// and no second chance.
type MQTT struct {
	src      *pipelines.MQTTSource
	sink     Appender
	log      *zap.Logger
	m        *metrics.IngestSource
	broker   *url.URL
	tls      *tls.Config
	password []byte
	routes   []route
	shutdown time.Duration

	stats                  mqttCounters
	appendLog, unroutedLog rateLimit
}

// route is one topics[] entry, ready to match.
type route struct {
	filter   *topic.Filter
	sub      string // what is subscribed: the filter, with $share/<group>/
	pipeline string
	qos      byte
	keyLevel int    // index in filter.Names() of the key level; -1: none
	keyField string // the pipeline's key field, where the key level goes
}

// NewMQTT prepares the source src of f, whose events go to sink. It reads
// the password (password_env or password_file) and the TLS files now, and
// says which is missing without quoting any secret.
func NewMQTT(f *pipelines.File, src *pipelines.MQTTSource, sink Appender, o MQTTOptions) (*MQTT, error) {
	m := &MQTT{src: src, sink: sink, log: o.Logger, shutdown: o.ShutdownTimeout}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	if m.shutdown <= 0 {
		m.shutdown = DefaultMQTTShutdownTimeout
	}
	name := "mqtt:" + src.Name
	broker := o.Broker
	if broker == "" {
		if addr, ok := src.EmbeddedAddr(); ok {
			broker = "mqtt://" + addr
		} else {
			broker = src.Broker
		}
	}
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("source %s: broker: %w", name, stripURLError(err))
	}
	if src.UsesTLS() && u.Scheme != "mqtts" && u.Scheme != "ssl" {
		u.Scheme = "mqtts"
	}
	if u.Port() == "" {
		addr, err := pipelines.MQTTBrokerAddr(u.String())
		if err != nil {
			return nil, fmt.Errorf("source %s: broker: %w", name, err)
		}
		u.Host = addr
	}
	m.broker = u
	if src.UsesTLS() {
		if m.tls, err = mqttTLS(src.TLS); err != nil {
			return nil, fmt.Errorf("source %s: tls: %w", name, err)
		}
	}
	if m.password, err = mqttPassword(src); err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	var names []string
	for i := range src.Topics {
		t := &src.Topics[i]
		flt := t.ParsedFilter()
		if flt == nil { // a source not built by Load or Parse
			if flt, err = topic.Parse(t.Filter); err != nil {
				return nil, fmt.Errorf("source %s: topics[%d].filter %q: %w", name, i, t.Filter, err)
			}
		}
		p := f.Pipeline(t.Pipeline)
		if p == nil {
			return nil, fmt.Errorf("source %s: topics[%d]: no pipeline %q", name, i, t.Pipeline)
		}
		r := route{filter: flt, sub: flt.MQTT(), pipeline: p.Name, qos: byte(t.QoS), keyLevel: -1, keyField: p.Key}
		if src.ShareGroup != "" {
			r.sub = "$share/" + src.ShareGroup + "/" + r.sub
		}
		for j, n := range flt.Names() {
			if n == t.Key {
				r.keyLevel = j
			}
		}
		m.routes = append(m.routes, r)
		if !contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	if o.Metrics != nil {
		m.m = o.Metrics.Source(name, names, Reasons, MQTTStatuses)
	}
	return m, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// stripURLError keeps a url.Parse error's cause, without the URL.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// mqttPassword reads the source's password from its variable or file
// (nil when it names neither). Errors name the key and the variable or
// file, never the value.
func mqttPassword(src *pipelines.MQTTSource) ([]byte, error) {
	key := "password_env"
	switch {
	case src.PasswordEnv != "":
	case src.PasswordFile != "":
		key = "password_file"
	default:
		return nil, nil
	}
	v, err := secret.Read(src.PasswordEnv, src.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return []byte(v), nil
}

func mqttTLS(t *pipelines.MQTTTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, nil
	}
	cfg.ServerName = t.ServerName
	cfg.InsecureSkipVerify = t.InsecureSkipVerify //nolint:gosec // documented as unsafe, for tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file and key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// inbound is one message handed from paho's router to the batch loop.
type inbound struct {
	pub *paho.Publish
	cli *paho.Client // the connection it came on, which acks it
	at  time.Time
}

// Run connects (and reconnects, with backoff), subscribes to the source's
// topics and hands their messages to the Sink until ctx is done. Then it
// stops in two phases: soft, it takes no new message, appends and acks
// what it holds (within MQTTOptions.ShutdownTimeout); hard, past that
// timeout, it leaves the rest un-acked for the broker to send again. It
// disconnects keeping the session and returns after every goroutine it
// started has exited. It returns nil after a stop, an error only if the
// connection manager cannot start.
func (m *MQTT) Run(ctx context.Context) error {
	in := make(chan inbound, m.src.ReceiveMaximum+mqttQoS0Slack)
	stopping := make(chan struct{})
	var subs sync.WaitGroup // subscribe calls, one per connection
	// The connection outlives ctx until what is held is acked.
	connCtx, cancelConn := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConn()

	cm, err := autopaho.NewConnection(connCtx, m.clientConfig(connCtx, in, stopping, &subs))
	if err != nil {
		return fmt.Errorf("source mqtt:%s: %w", m.src.Name, err)
	}
	m.log.Info("mqtt_source_started", zap.String("source", "mqtt:"+m.src.Name), zap.String("broker", m.broker.Redacted()),
		zap.String("client_id", m.src.ClientID), zap.String("share_group", m.src.ShareGroup))

	m.loop(ctx, in)

	// Soft stop: no new messages; what was handed over is appended and
	// acked, within the shutdown timeout.
	close(stopping)
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.shutdown)
	defer cancel()
	var held []inbound
	for more := true; more; {
		select {
		case msg := <-in:
			held = append(held, msg)
		default:
			more = false
		}
	}
	for len(held) > 0 && drain.Err() == nil {
		n := min(len(held), m.src.BatchSize)
		m.handle(drain, held[:n])
		held = held[n:]
	}
	if len(held) > 0 {
		m.log.Warn("mqtt_shutdown_left_unacked", zap.String("source", "mqtt:"+m.src.Name), zap.Int("messages", len(held)),
			zap.String("note", "the broker sends them again at the next start"))
	}
	// Give paho's ack round the time to send the last acks, then
	// disconnect (the session stays: its expiry was set at connect).
	t := time.NewTimer(3 * mqttAckInterval)
	select {
	case <-t.C:
	case <-drain.Done():
		t.Stop()
	}
	cancelConn()
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), m.src.ConnectTimeout)
	defer dcancel()
	if err := cm.Disconnect(dctx); err != nil {
		m.log.Warn("mqtt_disconnect_timeout", zap.String("source", "mqtt:"+m.src.Name), zap.Error(err))
		<-cm.Done()
	}
	subs.Wait()
	m.log.Info("mqtt_source_stopped", zap.String("source", "mqtt:"+m.src.Name))
	return nil
}

// clientConfig is the autopaho configuration: MQTT 5, clean start off
// with a session expiry, manual acks, receive_maximum, and a handler
// that hands each message to the batch loop.
func (m *MQTT) clientConfig(connCtx context.Context, in chan<- inbound, stopping <-chan struct{}, subs *sync.WaitGroup) autopaho.ClientConfig {
	src := m.src
	expiry := uint32(src.SessionExpiry / time.Second)
	recvMax := uint16(src.ReceiveMaximum)
	source := "mqtt:" + src.Name
	var connectLog rateLimit
	return autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{m.broker},
		TlsCfg:                        m.tls,
		AttemptConnection:             m.dial,
		KeepAlive:                     uint16(src.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         expiry,
		ReconnectBackoff:              m.backoff,
		ConnectTimeout:                src.ConnectTimeout,
		ConnectUsername:               src.Username,
		ConnectPassword:               m.password,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			m.stats.connections.Add(1)
			m.log.Info("mqtt_connected", zap.String("source", source), zap.String("broker", m.broker.Redacted()),
				zap.Bool("session_present", ca.SessionPresent))
			subs.Add(1)
			go func() {
				defer subs.Done()
				m.subscribe(connCtx, cm)
			}()
		},
		OnConnectionDown: func() bool {
			m.log.Warn("mqtt_connection_lost", zap.String("source", source), zap.String("note", "reconnecting; messages not yet acked are sent again"))
			return true
		},
		OnConnectError: func(err error) {
			if n, ok := connectLog.allow(); ok {
				m.log.Warn("mqtt_connect_failed", zap.String("source", source), zap.String("broker", m.broker.Redacted()),
					zap.Error(redactError(err, m.password)), zap.Int("suppressed", n))
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   src.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           mqttAckInterval,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				msg := inbound{pub: pr.Packet, cli: pr.Client, at: time.Now()}
				m.m.InFlight(m.pipelineOf(pr.Packet.Topic), 1)
				select {
				case <-stopping:
					// Not taken: not acked, so the broker sends it again.
					m.m.InFlight(m.pipelineOf(pr.Packet.Topic), -1)
					return true, nil
				default:
				}
				select {
				case in <- msg:
				case <-stopping:
					m.m.InFlight(m.pipelineOf(pr.Packet.Topic), -1)
				}
				return true, nil
			}},
		},
	}
}

// dial is autopaho's AttemptConnection: a TCP connection to the broker,
// with TLS when the source uses it, within connect_timeout, wrapped by
// mqttconn.Wrap (buffered reads and one write per packet, which is also
// what makes it safe for paho's concurrent writers). Without it autopaho
// reads a packet's header a byte at a time, a system call each: in a
// profile of eddy bench-ingest that and one write per PUBACK piece were
// about 40% of the CPU of the MQTT path. Unlike autopaho's own dialer it
// does not go through an all_proxy proxy.
func (m *MQTT) dial(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, m.src.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if m.tls != nil {
		d := tls.Dialer{Config: m.tls}
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return nil, err
	}
	return mqttconn.Wrap(conn), nil
}

// backoff is the wait before connection attempt n (0: none).
func (m *MQTT) backoff(n int) time.Duration {
	if n == 0 {
		return 0
	}
	return jittered(m.src.Reconnect.MinBackoff, m.src.Reconnect.MaxBackoff, n-1)
}

// jittered is min doubled n times, capped at max, less up to a quarter.
func jittered(minD, maxD time.Duration, n int) time.Duration {
	d := minD
	for i := 0; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d - time.Duration(rand.Int64N(int64(d)/4+1)) //nolint:gosec // jitter, not a secret
}

// subscribe subscribes to every topic of the source on a new connection.
// With a session present the broker has them already; subscribing again
// changes nothing.
func (m *MQTT) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) {
	s := &paho.Subscribe{}
	for _, r := range m.routes {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: r.sub, QoS: r.qos})
	}
	sctx, cancel := context.WithTimeout(ctx, m.src.ConnectTimeout)
	defer cancel()
	source := "mqtt:" + m.src.Name
	ack, err := cm.Subscribe(sctx, s)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("mqtt_subscribe_failed", zap.String("source", source), zap.Error(err),
				zap.String("note", "tried again at the next connection"))
		}
		return
	}
	for i, code := range ack.Reasons {
		if i >= len(m.routes) {
			break
		}
		if code >= 0x80 {
			m.log.Error("mqtt_subscribe_refused", zap.String("source", source), zap.String("filter", m.routes[i].sub),
				zap.Uint8("reason_code", code), zap.String("note", "the broker refused this subscription (not authorized?); its messages do not come"))
			continue
		}
		m.log.Info("mqtt_subscribed", zap.String("source", source), zap.String("filter", m.routes[i].sub),
			zap.String("pipeline", m.routes[i].pipeline), zap.Uint8("qos", code))
	}
}

// loop gathers messages into batches (batch_size, or what came within
// batch_wait of the first) and handles each, until ctx is done.
func (m *MQTT) loop(ctx context.Context, in <-chan inbound) {
	batch := make([]inbound, 0, m.src.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-in:
			batch = append(batch[:0], msg)
		}
		timer.Reset(m.src.BatchWait)
	fill:
		for len(batch) < m.src.BatchSize {
			select {
			case msg := <-in:
				batch = append(batch, msg)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		timer.Stop()
		// The batch is appended even when ctx ends meanwhile: the soft
		// stop finishes what is held, within the shutdown timeout.
		drain, cancel := m.drainContext(ctx)
		m.handle(drain, batch)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// drainContext is ctx while it runs, and after it is done the shutdown
// timeout's grace.
func (m *MQTT) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(m.shutdown, cancel)
		context.AfterFunc(d, func() { t.Stop() })
	})
	return d, func() { stop(); cancel() }
}

// handle appends a batch, each message to its route's pipeline, trying
// again with backoff while Redis fails, and then acks every message in the
// order it came. If ctx ends first, nothing of the batch is acked.
func (m *MQTT) handle(ctx context.Context, batch []inbound) {
	type group struct {
		pipeline string
		msgs     []int // indexes in batch
		evs      []Event
		done     bool
	}
	var groups []*group
	byPipeline := map[string]*group{}
	unrouted := make([]bool, len(batch))
	for i, msg := range batch {
		r, values := m.match(msg.pub.Topic)
		if r == nil {
			unrouted[i] = true
			continue
		}
		g := byPipeline[r.pipeline]
		if g == nil {
			g = &group{pipeline: r.pipeline}
			byPipeline[r.pipeline] = g
			groups = append(groups, g)
		}
		g.msgs = append(g.msgs, i)
		ev := r.event(values, msg.pub.Payload)
		if msg.pub.Properties != nil { // MQTT v5: a user property may carry the trace context
			ev.Traceparent = msg.pub.Properties.User.Get(processor.TraceField)
		}
		g.evs = append(g.evs, ev)
		if msg.pub.Duplicate() {
			m.stats.redelivered.Add(1)
		}
	}
	outcome := make([]string, len(batch))
	for attempt := 0; ; attempt++ {
		var failed error
		for _, g := range groups {
			if g.done {
				continue
			}
			start := time.Now()
			res, err := m.sink.Append(ctx, g.pipeline, g.evs, m.src.Validate, Forward)
			if err != nil {
				failed = err
				continue
			}
			m.m.Published(g.pipeline, time.Since(start))
			g.done = true
			accepted := 0
			for j, r := range res {
				i := g.msgs[j]
				if r.Rejected != nil {
					outcome[i] = MQTTForwarded
					m.m.Rejected(g.pipeline, r.Rejected.Reason, 1)
					m.stats.forwarded.Add(1)
					continue
				}
				outcome[i] = MQTTAppended
				accepted++
			}
			m.m.Accepted(g.pipeline, accepted)
			m.stats.appended.Add(int64(len(res)))
		}
		if failed == nil {
			break
		}
		m.stats.appendFailures.Add(1)
		wait := jittered(m.src.Reconnect.MinBackoff, m.src.Reconnect.MaxBackoff, attempt)
		if n, ok := m.appendLog.allow(); ok {
			m.log.Warn("mqtt_append_failed", zap.String("source", "mqtt:"+m.src.Name), zap.Error(failed),
				zap.Int("messages", len(batch)), zap.Duration("retry_in", wait), zap.Int("suppressed", n),
				zap.String("note", "not acked: the broker keeps the messages"))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return // not acked: the broker sends them again
		}
	}
	for i, msg := range batch {
		pipeline := ""
		if unrouted[i] {
			outcome[i] = MQTTUnrouted
			m.stats.unrouted.Add(1)
			if n, ok := m.unroutedLog.allow(); ok {
				m.log.Warn("mqtt_message_unrouted", zap.String("source", "mqtt:"+m.src.Name), zap.String("topic", msg.pub.Topic),
					zap.Int("suppressed", n), zap.String("note", "no filter of the source matches: acked and dropped (a subscription an older config left in the session?)"))
			}
		} else {
			pipeline = m.pipelineOf(msg.pub.Topic)
		}
		if msg.pub.QoS > 0 {
			_ = msg.cli.Ack(msg.pub) // an ack on a connection since lost is not sent: the message comes again
		}
		m.m.InFlight(pipeline, -1)
		m.m.Answered(pipeline, outcome[i], int64(len(msg.pub.Payload)), time.Since(msg.at))
	}
}

// match returns the route of the first filter that topic matches, with the
// values of its named levels.
func (m *MQTT) match(t string) (*route, []string) {
	for i := range m.routes {
		if values, ok := m.routes[i].filter.Match(t); ok {
			return &m.routes[i], values
		}
	}
	return nil, nil
}

func (m *MQTT) pipelineOf(t string) string {
	if r, _ := m.match(t); r != nil {
		return r.pipeline
	}
	return ""
}

// event is the Event of a message on this route: the payload as it came,
// and the topic's named levels as fields that replace the payload's of the
// same names (the key level also under the pipeline's key field).
func (r *route) event(values []string, payload []byte) Event {
	ev := Event{Data: payload}
	names := r.filter.Names()
	if len(names) == 0 {
		return ev
	}
	ev.Fields = make(map[string]string, len(names)+1)
	for i, n := range names {
		if i < len(values) {
			ev.Fields[n] = values[i]
		}
	}
	if r.keyLevel >= 0 && r.keyLevel < len(values) && r.keyField != "" {
		ev.Fields[r.keyField] = values[r.keyLevel]
	}
	return ev
}

// MQTTStats are counts of what a source did since it was created.
type MQTTStats struct {
	// Connections counts connections made, the first included.
	Connections int64
	// Appended counts messages appended (forwarded ones included).
	Appended int64
	// Forwarded counts bad messages appended for the pipeline to dead-letter.
	Forwarded int64
	// Unrouted counts messages no filter matched (acked and dropped).
	Unrouted int64
	// Redelivered counts messages the broker flagged as sent before.
	Redelivered int64
	// AppendFailures counts appends that failed and were tried again.
	AppendFailures int64
}

type mqttCounters struct {
	connections, appended, forwarded, unrouted, redelivered, appendFailures atomic.Int64
}

// Stats returns the source's counts so far.
func (m *MQTT) Stats() MQTTStats {
	s := &m.stats
	return MQTTStats{Connections: s.connections.Load(), Appended: s.appended.Load(), Forwarded: s.forwarded.Load(),
		Unrouted: s.unrouted.Load(), Redelivered: s.redelivered.Load(), AppendFailures: s.appendFailures.Load()}
}

// rateLimit lets one log line of a kind through per mqttLogEvery and
// counts the rest.
type rateLimit struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLimit) allow() (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); r.last.IsZero() || now.Sub(r.last) >= mqttLogEvery {
		n := r.suppressed
		r.last, r.suppressed = now, 0
		return n, true
	}
	r.suppressed++
	return 0, false
}

// redactError masks the password in an error's text (paho's errors do not
// quote it; this is the second line of defence).
func redactError(err error, password []byte) error {
	if err == nil || len(password) < 4 || !strings.Contains(err.Error(), string(password)) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), string(password), "xxxxx"))
}
