package mqttconn

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// countingConn is a net.Conn that records its writes and serves reads
// from a buffer.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	in     *bytes.Reader
	reads  int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.in.Read(p)
}

// Conn writes each packet in one write, whole, even from many goroutines,
// and reads packets through its buffer.
func TestConn(t *testing.T) {
	t.Parallel()
	var want bytes.Buffer
	for i := range 50 {
		p := &paho.Publish{Topic: "sensors/dev-1/temperature", QoS: 1, PacketID: uint16(i + 1), Payload: []byte(`{"value":21.5}`), Properties: &paho.PublishProperties{}}
		if _, err := p.Packet().WriteTo(&want); err != nil {
			t.Fatal(err)
		}
	}
	cc := &countingConn{in: bytes.NewReader(want.Bytes())}
	pc := Wrap(cc)

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &paho.Publish{Topic: "sensors/dev-1/temperature", QoS: 1, PacketID: uint16(i + 1), Payload: []byte(`{"value":21.5}`), Properties: &paho.PublishProperties{}}
			if _, err := p.Packet().WriteTo(pc); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(cc.writes) != 50 {
		t.Fatalf("%d writes for 50 packets, want one each", len(cc.writes))
	}
	for _, w := range cc.writes {
		cp, err := packets.ReadPacket(bytes.NewReader(w))
		if err != nil || cp.Type != packets.PUBLISH {
			t.Fatalf("a write is not one whole PUBLISH: %v, %x", err, w)
		}
	}

	for i := range 50 {
		cp, err := packets.ReadPacket(pc)
		if err != nil || cp.Type != packets.PUBLISH || cp.Content.(*packets.Publish).PacketID != uint16(i+1) {
			t.Fatalf("packet %d read back: %v, %+v", i, err, cp)
		}
	}
	if cc.reads > 3 {
		t.Errorf("%d reads of the connection for 50 packets, want a few (buffered)", cc.reads)
	}
}

// A write that fails closes the connection and fails the writes after it.
func TestConnWriteFails(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	_ = b.Close()
	c := Wrap(a)
	p := &paho.Publish{Topic: "t", QoS: 1, PacketID: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{}}
	if _, err := p.Packet().WriteTo(c); err != nil {
		t.Fatalf("first WriteTo = %v, want nil (the failure shows at Unlock)", err)
	}
	if _, err := p.Packet().WriteTo(c); err == nil {
		t.Error("WriteTo after a failed write = nil, want the write's error")
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open after a failed write")
	}
}
