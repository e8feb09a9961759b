// Package mqttconn makes a network connection cheap for paho.golang, the
// MQTT client of Eddy's simulator and MQTT source.
//
// paho reads a packet's type and length a byte at a time (a system call
// each on a bare connection) and writes a packet in several pieces (a
// PUBLISH in four, a system call each on a connection that is not a bare
// TCP one, such as paho's own thread-safe wrapper or a TLS connection).
// Wrap returns a connection that reads through a buffer and writes each
// packet whole, in one write.
//
// It owns nothing but that wrapper: no dialing, no MQTT. Import direction:
// simulate (and any paho user) -> mqttconn; it imports nothing of Eddy's.
package mqttconn

import (
	"bufio"
	"net"
	"sync"
)

// readBuffer is the size of a connection's read buffer.
const readBuffer = 32 << 10

// Conn is a connection for paho.golang: buffered reads, one write per
// packet, safe for paho's concurrent writers.
//
// It is a sync.Locker: paho's packets.ControlPacket.WriteTo writes each
// packet between Lock and Unlock when its writer is one, so Conn gathers
// the packet's pieces under Lock and writes them at Unlock. paho writes
// every packet that way; a Write outside Lock goes straight to the
// connection.
type Conn struct {
	net.Conn
	r *bufio.Reader

	mu     sync.Mutex
	locked bool   // a packet is being written: Write gathers
	buf    []byte // the packet's pieces
	err    error  // the first write that failed; the connection is closed then
}

var (
	_ net.Conn    = (*Conn)(nil)
	_ sync.Locker = (*Conn)(nil)
)

// Wrap returns c for paho: give it as paho.ClientConfig.Conn (or return it
// from autopaho's AttemptConnection). Closing the Conn closes c.
func Wrap(c net.Conn) *Conn {
	return &Conn{Conn: c, r: bufio.NewReaderSize(c, readBuffer)}
}

// Read reads through the buffer.
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Lock starts a packet.
func (c *Conn) Lock() {
	c.mu.Lock()
	c.locked = true
}

// Unlock writes the packet gathered since Lock. A failed write closes the
// connection, so that paho's reader fails and the client shuts down, and
// fails every later write.
func (c *Conn) Unlock() {
	if len(c.buf) > 0 && c.err == nil {
		if _, err := c.Conn.Write(c.buf); err != nil {
			c.err = err
			_ = c.Close()
		}
	}
	c.buf = c.buf[:0]
	c.locked = false
	c.mu.Unlock()
}

// Write gathers p into the packet being written, or, outside Lock, writes
// it.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.locked {
		return c.Conn.Write(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}
