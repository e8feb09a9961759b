package simulate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/internal/mqttconn"
)

// Defaults of MQTT.
const (
	// DefaultMQTTConnections is MQTT.Connections's default.
	DefaultMQTTConnections = 4
	// DefaultMQTTInFlight is MQTT.InFlight's default: publishes awaiting
	// their PUBACK at once, over all connections.
	DefaultMQTTInFlight = 64
	// DefaultMQTTKeepAlive is the keep-alive of the connections.
	DefaultMQTTKeepAlive = 30 * time.Second
	// DefaultMQTTConnectTimeout bounds a connection attempt, CONNACK
	// included.
	DefaultMQTTConnectTimeout = 10 * time.Second
	// DefaultMQTTAckTimeout bounds the wait for a PUBACK; a publish not
	// acked by then is sent again on a new connection.
	DefaultMQTTAckTimeout = 30 * time.Second
)

// MQTT reason codes the MQTT sink tells apart (MQTT 5, 2.4).
const (
	mqttNoSubscribers   = 0x10
	mqttNotAuthorized   = 0x87
	mqttTopicInvalid    = 0x90
	mqttQuotaExceeded   = 0x97
	mqttFirstErrorCode  = 0x80
	mqttBadUserPassword = 0x86
)

// MQTT is a Sink that publishes each event at QoS 1 to a broker, on the
// topic its Topic template makes of it, as a fleet of devices would:
// InFlight publishes at a time over Connections connections, each key's
// events in one lane and so in order.
//
// Each publish is sent again until the broker acknowledges it (PUBACK):
// after a connection is lost or a PUBACK does not come within
// DefaultMQTTAckTimeout, on a new connection, with a backoff
// (RetryMinBackoff doubling to RetryMaxBackoff) while the broker cannot be
// reached. An event sent again may then reach subscribers twice; the
// pipeline's dedupe keeps one. A PUBACK with an error reason is a
// rejection, except "quota exceeded", which is waited out. Send returns an
// error, and the Feeder stops, on what no retry mends: the first
// connection refused (wrong address, user or password), "not authorized"
// and "topic name invalid".
//
// A PUBACK only says that the broker has the message. Whether a
// subscriber (Eddy's MQTT source) gets it is the broker's business: with no
// subscriber it goes nowhere (Delivery.NoSubscribers counts those the
// broker says so of), and a broker that caps the messages it queues for a
// slow subscriber (Mosquitto's max_queued_messages, 1000 by default)
// drops those over the cap.
type MQTT struct {
	// Broker is mqtt://host[:port] (1883 by default) or tcp://; mqtts://
	// or ssl:// (8883) for TLS. Required.
	Broker string
	// Topic makes each event's topic. Required.
	Topic *Topic
	// ClientID is the prefix of the connections' client ids,
	// "<ClientID>-<n>". Default "eddy-simulate-<random hex>".
	ClientID string
	// Username and Password log in; default none.
	Username string
	Password []byte
	// TLS configures mqtts://; nil: the system's roots, the broker's host
	// name.
	TLS *tls.Config
	// Connections is how many connections the publishes share. Default
	// DefaultMQTTConnections.
	Connections int
	// InFlight is how many publishes await their PUBACK at once, over all
	// connections. Default DefaultMQTTInFlight.
	InFlight int
	// Retrying, when set, is told of every retry: its cause ("network",
	// "connect", "quota_exceeded", …) and the wait before it, if any. It
	// is called from the publishing goroutines, several at once: it must
	// be safe for that and must not block.
	Retrying func(cause string, wait time.Duration)

	once    sync.Once
	initErr error
	addr    string // host:port
	useTLS  bool
	conns   []*mqttConn
	counts  counter
}

var _ Sink = (*MQTT)(nil)

// Delivery returns what the sink has done so far.
func (m *MQTT) Delivery() Delivery { return m.counts.snapshot() }

func (m *MQTT) init() error {
	m.once.Do(func() {
		m.initErr = m.setup()
	})
	return m.initErr
}

func (m *MQTT) setup() error {
	if m.Topic == nil {
		return errors.New("simulate: MQTT.Topic is required")
	}
	if m.Broker == "" {
		return errors.New("simulate: MQTT.Broker is required")
	}
	u, err := url.Parse(m.Broker)
	if err != nil {
		return fmt.Errorf("simulate: MQTT.Broker: %w", err)
	}
	port := ""
	switch u.Scheme {
	case "mqtt", "tcp":
		port = "1883"
	case "mqtts", "ssl":
		port, m.useTLS = "8883", true
	default:
		return fmt.Errorf("simulate: MQTT.Broker %q: want mqtt://, tcp://, mqtts:// or ssl://", m.Broker)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("simulate: MQTT.Broker %q: no host", m.Broker)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	m.addr = net.JoinHostPort(u.Hostname(), port)
	if m.ClientID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // never fails
		m.ClientID = "eddy-simulate-" + hex.EncodeToString(b[:])
	}
	if m.Connections <= 0 {
		m.Connections = DefaultMQTTConnections
	}
	if m.InFlight <= 0 {
		m.InFlight = DefaultMQTTInFlight
	}
	m.conns = make([]*mqttConn, m.Connections)
	for i := range m.conns {
		m.conns[i] = &mqttConn{m: m, id: m.ClientID + "-" + strconv.Itoa(i)}
	}
	return nil
}

// Send publishes batch, InFlight at a time, and returns once the broker
// has acknowledged or refused every event, or on the first error no retry
// mends, or when ctx is done. Send may be called from several goroutines
// at once; a key's events keep their order within a Send, and across Sends
// that do not overlap.
func (m *MQTT) Send(ctx context.Context, batch []Event) error {
	if err := m.init(); err != nil {
		return err
	}
	m.counts.sent(len(batch))
	g, ctx := errgroup.WithContext(ctx)
	for i, lane := range lanes(batch, m.InFlight) {
		if len(lane) == 0 {
			continue
		}
		conn := m.conns[i%len(m.conns)]
		g.Go(func() error {
			for _, ev := range lane {
				if err := m.publish(ctx, conn, ev); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// publish sends ev until the broker acknowledges or refuses it.
func (m *MQTT) publish(ctx context.Context, conn *mqttConn, ev Event) error {
	pub := &paho.Publish{Topic: m.Topic.Fill(ev.Data), QoS: 1, Payload: ev.Data}
	for failures := 0; ; failures++ {
		cli, err := conn.get(ctx)
		if err != nil {
			return err
		}
		m.counts.attempt()
		// The wait for the PUBACK ends with the connection too: paho can
		// take a publish into a session whose connection is just lost, and
		// would then wait for the whole timeout.
		actx, cancel := context.WithTimeout(ctx, DefaultMQTTAckTimeout)
		stop := context.AfterFunc(cli.lost, cancel)
		resp, err := cli.Publish(actx, pub)
		stop()
		cancel()
		if err == nil {
			m.counts.accepted(1)
			if resp != nil && resp.ReasonCode == mqttNoSubscribers {
				m.counts.noSubscriber()
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cause, wait := "network", time.Duration(0)
		if resp != nil && resp.ReasonCode >= mqttFirstErrorCode {
			switch resp.ReasonCode {
			case mqttNotAuthorized, mqttTopicInvalid:
				return fmt.Errorf("simulate: publish to %s on %s: refused, reason %#x %s", pub.Topic, m.Broker, resp.ReasonCode, reasonText(resp))
			case mqttQuotaExceeded:
				cause, wait = "quota_exceeded", backoff(failures)
			default:
				m.counts.rejected(fmt.Sprintf("reason_%#x", resp.ReasonCode), 1)
				return nil
			}
		} else {
			// No answer: the connection is lost or stuck. A new one.
			conn.drop(cli)
		}
		m.counts.retried(cause)
		if m.Retrying != nil {
			m.Retrying(cause, wait)
		}
		if wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
		}
	}
}

func reasonText(resp *paho.PublishResponse) string {
	if resp.Properties != nil && resp.Properties.ReasonString != "" {
		return "(" + resp.Properties.ReasonString + ")"
	}
	return ""
}

// Close disconnects every connection. Publishes still waiting for their
// PUBACK fail; call it after the last Send has returned.
func (m *MQTT) Close() error {
	for _, c := range m.conns {
		c.close()
	}
	return nil
}

// mqttConn is one connection of the sink, made again when lost.
type mqttConn struct {
	m  *MQTT
	id string

	mu     sync.Mutex
	cli    *client
	closed bool
	ever   bool // connected once: a failure since is waited out
}

// client is one connection's paho client, and a context done once the
// client has shut down (the connection lost or closed).
type client struct {
	*paho.Client
	lost context.Context
}

// get returns the connection, connecting (again) if there is none. The
// first connection of the sink fails at once; later ones are tried again
// with a backoff until ctx is done, since a broker that was there is
// likely restarting.
func (c *mqttConn) get(ctx context.Context) (*client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("simulate: MQTT sink closed")
	}
	if c.cli != nil {
		select {
		case <-c.cli.Done():
			c.cli = nil
		default:
			return c.cli, nil
		}
	}
	for failures := 0; ; failures++ {
		cli, err := c.dial(ctx)
		if err == nil {
			c.cli, c.ever = cli, true
			return cli, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var refused *connectRefused
		if !c.ever || errors.As(err, &refused) {
			return nil, err
		}
		wait := backoff(failures)
		c.m.counts.retried("connect")
		if c.m.Retrying != nil {
			c.m.Retrying("connect", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// connectRefused is a CONNACK with an error reason: no retry mends it.
type connectRefused struct {
	broker string
	code   byte
	reason string
}

func (e *connectRefused) Error() string {
	msg := fmt.Sprintf("simulate: broker %s refused the connection: reason %#x", e.broker, e.code)
	if e.code == mqttBadUserPassword || e.code == mqttNotAuthorized {
		msg += " (user name or password not accepted)"
	}
	if e.reason != "" {
		msg += ": " + e.reason
	}
	return msg
}

func (c *mqttConn) dial(ctx context.Context) (*client, error) {
	m := c.m
	ctx, cancel := context.WithTimeout(ctx, DefaultMQTTConnectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if m.useTLS {
		cfg := m.TLS
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		conn, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", m.addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", m.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("simulate: MQTT broker %s %w: %w", m.Broker, ErrUnreachable, err)
	}
	cli := paho.NewClient(paho.ClientConfig{Conn: mqttconn.Wrap(conn), PacketTimeout: DefaultMQTTAckTimeout})
	cp := &paho.Connect{ClientID: c.id, KeepAlive: uint16(DefaultMQTTKeepAlive / time.Second), CleanStart: true}
	if m.Username != "" {
		cp.Username, cp.UsernameFlag = m.Username, true
	}
	if len(m.Password) > 0 {
		cp.Password, cp.PasswordFlag = m.Password, true
	}
	ack, err := cli.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		if ack != nil && ack.ReasonCode >= mqttFirstErrorCode {
			r := &connectRefused{broker: m.Broker, code: ack.ReasonCode}
			if ack.Properties != nil {
				r.reason = ack.Properties.ReasonString
			}
			return nil, r
		}
		return nil, fmt.Errorf("simulate: MQTT broker %s %w: CONNECT: %w", m.Broker, ErrUnreachable, err)
	}
	lost, cancel := context.WithCancel(context.WithoutCancel(ctx)) // the connection's life, not the dial's
	go func() {
		<-cli.Done()
		cancel()
	}()
	return &client{Client: cli, lost: lost}, nil
}

// drop closes cli if it is still the connection, so that the next get
// makes a new one.
func (c *mqttConn) drop(cli *client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == cli {
		_ = cli.Disconnect(&paho.Disconnect{})
		c.cli = nil
	}
}

// close disconnects and waits until the client's goroutines are done.
func (c *mqttConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cli != nil {
		_ = c.cli.Disconnect(&paho.Disconnect{})
		<-c.cli.Done()
		c.cli = nil
	}
}
