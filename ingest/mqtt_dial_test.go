package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eclipse/paho.golang/autopaho"

	"github.com/eddy-streams/eddy/internal/mqttconn"
)

// The source dials the broker itself (autopaho's AttemptConnection) and
// hands paho an mqttconn.Conn, with and without TLS.
func TestMQTTDialWrapsTheConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())

	for _, tt := range []struct {
		name, addr string
		tls        *tls.Config
	}{
		{"tcp", ln.Addr().String(), nil},
		{"tls", tlsSrv.Listener.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	} {
		f := parseFile(t, mqttConfig("mqtt://"+tt.addr, namedTopics))
		m, err := NewMQTT(f, &f.Sources.MQTT[0], nil, MQTTOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.tls = tt.tls
		cfg := m.clientConfig(t.Context(), nil, nil, nil)
		if cfg.AttemptConnection == nil {
			t.Fatalf("%s: clientConfig has no AttemptConnection: autopaho would dial an unwrapped connection", tt.name)
		}
		conn, err := cfg.AttemptConnection(t.Context(), autopaho.ClientConfig{}, m.broker)
		if err != nil {
			t.Fatalf("%s: AttemptConnection = %v", tt.name, err)
		}
		c, ok := conn.(*mqttconn.Conn)
		if !ok {
			t.Errorf("%s: AttemptConnection gave a %T, want an *mqttconn.Conn", tt.name, conn)
		} else if _, isTLS := c.Conn.(*tls.Conn); isTLS != (tt.tls != nil) {
			t.Errorf("%s: the wrapped connection is a %T, want TLS %v", tt.name, c.Conn, tt.tls != nil)
		}
		_ = conn.Close()
	}
}
