package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"go.uber.org/zap"
)

// EmbeddedBroker is an MQTT broker inside the process
// (github.com/mochi-mqtt/server/v2), for the demo only: a source whose
// broker is "embedded" subscribes to it, and anyone on the machine may
// publish to it (mosquitto_pub -h 127.0.0.1 -p 1884 …). It takes any
// client without a password and keeps sessions and queued messages in
// memory only: they are gone when the process exits. Use a real broker
// (Mosquitto, say) for anything else.
type EmbeddedBroker struct {
	srv *mqtt.Server
	tcp *listeners.TCP
	log *zap.Logger
}

// ListenEmbedded binds an embedded broker to addr ("127.0.0.1:1884";
// port 0 for any free one) and returns it; Run serves it. The error names
// the address (one in use, say).
func ListenEmbedded(addr string, log *zap.Logger) (*EmbeddedBroker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       slog.New(slog.DiscardHandler), // our own log says what matters
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "embedded", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker on %s: %w", addr, err)
	}
	return &EmbeddedBroker{srv: srv, tcp: tcp, log: log}, nil
}

// Addr is the address the broker listens on.
func (b *EmbeddedBroker) Addr() string { return b.tcp.Address() }

// URL is mqtt://Addr.
func (b *EmbeddedBroker) URL() string { return "mqtt://" + b.Addr() }

// Close closes a broker that Run will not serve (after an error elsewhere
// at start): it frees the address.
func (b *EmbeddedBroker) Close() error { return b.srv.Close() }

// Run serves clients until ctx is done, then disconnects them and closes
// the listener. The broker's own goroutines (one per client) have ended
// when it returns.
func (b *EmbeddedBroker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		_ = b.srv.Close()
		return fmt.Errorf("embedded MQTT broker on %s: %w", b.Addr(), err)
	}
	b.log.Warn("mqtt_embedded_broker_started", zap.String("addr", b.Addr()),
		zap.String("note", "demo only: an MQTT broker inside eddy, no password, sessions and queued messages in memory only and lost on exit; use a real broker such as mosquitto for anything else"))
	<-ctx.Done()
	// Close waits for the clients' connections to end. The broker (mochi)
	// can deadlock there: a delivery to a subscriber that has stopped
	// reading holds a client's in-flight lock while another waits for it,
	// and then Close never returns (seen once in a few demo stops). It is
	// given embeddedCloseWait, and then left behind: eddy is exiting.
	closed := make(chan struct{})
	go func() {
		_ = b.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
		b.log.Info("mqtt_embedded_broker_stopped", zap.String("addr", b.Addr()))
	case <-time.After(embeddedCloseWait):
		b.log.Warn("mqtt_embedded_broker_stop_abandoned", zap.String("addr", b.Addr()), zap.Duration("waited", embeddedCloseWait),
			zap.String("note", "clients' connections did not end; the broker is left to the process's exit"))
	}
	return nil
}

// embeddedCloseWait bounds how long a stop waits for the embedded broker.
const embeddedCloseWait = 3 * time.Second
