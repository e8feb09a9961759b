package mosquittotest

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// client is a plain paho client of one broker, for these tests.
type client struct {
	*paho.Client
	msgs chan string
}

type connectOptions struct {
	id             string
	persistent     bool // clean start off, session expiry 1h
	user, password string
	tls            *tls.Config
}

// connect connects to addr, returning the client and the CONNACK's error.
func connect(t *testing.T, addr string, o connectOptions) (*client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
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
	c := &client{msgs: make(chan string, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- string(pr.Packet.Payload)
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: o.id, KeepAlive: 30, CleanStart: !o.persistent}
	if o.persistent {
		exp := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &exp}
	}
	if o.user != "" {
		cp.Username, cp.UsernameFlag = o.user, true
		cp.Password, cp.PasswordFlag = []byte(o.password), true
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

func mustConnect(t *testing.T, addr string, o connectOptions) *client {
	t.Helper()
	c, err := connect(t, addr, o)
	if err != nil {
		t.Fatalf("connect to %s as %q: %v", addr, o.id, err)
	}
	return c
}

func publish(t *testing.T, c *client, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := c.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(p)}); err != nil {
			t.Fatalf("publish %q: %v", p, err)
		}
	}
}

func receive(t *testing.T, c *client, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case m := <-c.msgs:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("received %v, want %d messages", got, n)
		}
	}
	return got
}

// A restart keeps a persistent session, its subscription and the QoS 1
// messages queued for it while its client was away.
func TestRestartKeepsSessionsAndQueuedMessages(t *testing.T) {
	b := Start(t)
	sub := mustConnect(t, b.Addr(), connectOptions{id: "sub", persistent: true})
	if _, err := sub.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub := mustConnect(t, b.Addr(), connectOptions{id: "pub"})
	publish(t, pub, "t/1", "a", "b", "c")

	b.Restart(t)
	sub = mustConnect(t, b.Addr(), connectOptions{id: "sub", persistent: true})
	if got := strings.Join(receive(t, sub, 3), ","); got != "a,b,c" {
		t.Errorf("after restart the session received %s, want a,b,c", got)
	}
}

// Kill stops the broker at once; Restart brings it back on the same port.
func TestKillAndRestart(t *testing.T) {
	b := Start(t)
	b.Kill()
	if _, err := connect(t, b.Addr(), connectOptions{id: "x"}); err == nil {
		t.Fatal("connect after Kill succeeded, want an error")
	}
	b.Kill() // a second Kill does nothing
	b.Restart(t)
	c := mustConnect(t, b.Addr(), connectOptions{id: "x"})
	if _, err := c.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "k", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	publish(t, c, "k", "back")
	if got := receive(t, c, 1); got[0] != "back" {
		t.Errorf("received %q, want back", got[0])
	}
	if err := b.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

// With Users, only those users get in.
func TestUsers(t *testing.T) {
	b := StartWith(t, Options{Users: map[string]string{"ingest": "s3cret-pw"}})
	if _, err := connect(t, b.Addr(), connectOptions{id: "anon"}); err == nil {
		t.Error("an anonymous client got in, want it refused")
	}
	if _, err := connect(t, b.Addr(), connectOptions{id: "bad", user: "ingest", password: "wrong"}); err == nil {
		t.Error("a wrong password got in, want it refused")
	}
	mustConnect(t, b.Addr(), connectOptions{id: "good", user: "ingest", password: "s3cret-pw"})
}

// With TLS the listener speaks TLS only, with the given certificates.
func TestTLS(t *testing.T) {
	certs := redistest.NewCerts(t)
	client := certs.ClientTLS(t)
	b := StartWith(t, Options{TLS: &TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile, CAFile: certs.CAFile, Client: client}})
	if !strings.HasPrefix(b.URL(), "mqtts://") {
		t.Errorf("URL() = %s, want mqtts://", b.URL())
	}
	c := mustConnect(t, b.Addr(), connectOptions{id: "tls", tls: client})
	if _, err := c.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "s", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	publish(t, c, "s", "secure")
	receive(t, c, 1)
	if _, err := connect(t, b.Addr(), connectOptions{id: "plain"}); err == nil {
		t.Error("a plain client got in on the TLS listener")
	}
}
