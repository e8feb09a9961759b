package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// The embedded broker (demo only) carries a source's messages with no
// broker installed: a client publishes to it, the source appends.
func TestEmbeddedBroker(t *testing.T) {
	t.Parallel()
	b, err := ListenEmbedded("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	if _, err := ListenEmbedded(b.Addr(), nil); err == nil || !strings.Contains(err.Error(), b.Addr()) {
		t.Errorf("a second broker on %s: err = %v, want one naming the address", b.Addr(), err)
	}

	rdb := redistest.Start(t).Client(t)
	f := parseFile(t, mqttConfig("embedded://"+b.Addr(), namedTopics))
	src := startMQTT(t, f, 0, rdb, MQTTOptions{})
	pub := newPublisher(t, b.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "sensors/d3/humidity", 1, `{"reading_id":"e1","value":40}`, `{"reading_id":"e2","value":41}`)
	waitFor(t, 10*time.Second, "2 entries", func() bool { return entryCount(t, rdb, f.Pipeline("iot")) == 2 })
	src.stop(t)
	if s := src.m.Stats(); s.Appended != 2 {
		t.Errorf("Stats() = %+v, want 2 appended", s)
	}
}
