package simulate

import (
	"context"
	"errors"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"sync"
	"time"
)

// Delivery counts what a transport Sink (HTTP, MQTT) did with the events it
// was sent. Once every Send has returned nil, Sent = Accepted + Rejected:
// an event is retried until one or the other, never dropped. A Send that
// returned an error (ctx done, a refusal that no retry mends) leaves
// Sent - Accepted - Rejected events whose fate the receiver did not tell.
type Delivery struct {
	// Sent is how many events were handed to the transport, each counted
	// once however often it was sent again.
	Sent int64 `json:"sent"`
	// Accepted is how many the receiver took: listed as appended in an
	// HTTP answer, or acknowledged by the MQTT broker (PUBACK).
	Accepted int64 `json:"accepted"`
	// Rejected is how many the receiver refused for good (an HTTP answer's
	// rejections, an MQTT PUBACK with an error reason).
	Rejected int64 `json:"rejected"`
	// Reasons counts rejected events by the receiver's reason.
	Reasons map[string]int64 `json:"reasons,omitempty"`
	// Retried is how many requests (HTTP) or publishes (MQTT) were sent
	// again, and Causes counts them by why: "429", "503", "network", …
	Retried int64            `json:"retried"`
	Causes  map[string]int64 `json:"causes,omitempty"`
	// Attempts is how many requests or publishes were made, retries
	// included.
	Attempts int64 `json:"attempts"`
	// NoSubscribers (MQTT) is how many accepted publishes the broker said
	// no one subscribed to: with nothing listening they went nowhere.
	NoSubscribers int64 `json:"no_subscribers,omitempty"`
}

// ErrUnreachable is wrapped by the error a transport Sink's Send returns
// when the receiver was never reached: the MQTT sink's first connection
// to the broker failed (no TCP connection, or no answer to CONNECT), or
// the HTTP source answered none of the sink's requests. Nothing was
// delivered then, and nothing will be: Send does not retry it, since a
// receiver that was never there is taken for a wrong address. (A broker
// or source that answered once and then went away is retried.)
var ErrUnreachable = errors.New("not reached")

// Pending is how many events were sent whose fate is not known (0 once
// every Send has returned nil).
func (d Delivery) Pending() int64 { return d.Sent - d.Accepted - d.Rejected }

// counter keeps a Delivery for concurrent senders.
type counter struct {
	mu sync.Mutex
	d  Delivery
}

func (c *counter) update(f func(d *Delivery)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.d)
}

func (c *counter) sent(n int)     { c.update(func(d *Delivery) { d.Sent += int64(n) }) }
func (c *counter) attempt()       { c.update(func(d *Delivery) { d.Attempts++ }) }
func (c *counter) accepted(n int) { c.update(func(d *Delivery) { d.Accepted += int64(n) }) }
func (c *counter) noSubscriber()  { c.update(func(d *Delivery) { d.NoSubscribers++ }) }
func (c *counter) retried(cause string) {
	c.update(func(d *Delivery) {
		d.Retried++
		if d.Causes == nil {
			d.Causes = map[string]int64{}
		}
		d.Causes[cause]++
	})
}

func (c *counter) rejected(reason string, n int) {
	c.update(func(d *Delivery) {
		d.Rejected += int64(n)
		if d.Reasons == nil {
			d.Reasons = map[string]int64{}
		}
		d.Reasons[reason] += int64(n)
	})
}

// snapshot returns a copy of the counts.
func (c *counter) snapshot() Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.d
	d.Reasons = maps.Clone(d.Reasons)
	d.Causes = maps.Clone(d.Causes)
	return d
}

// Retry pacing of the transport Sinks.
const (
	// RetryMinBackoff and RetryMaxBackoff bound the wait before a retry
	// that the receiver gave no Retry-After for (a network error, a
	// broker restarting): RetryMinBackoff doubling at each failure in a
	// row, at most RetryMaxBackoff, less up to a quarter of jitter.
	RetryMinBackoff = 100 * time.Millisecond
	RetryMaxBackoff = 5 * time.Second
	// DefaultMaxRetryAfter caps the Retry-After an HTTP source advises.
	DefaultMaxRetryAfter = time.Minute
)

// backoff is the wait before retry n (0 for the first) after failures
// that advise no wait.
func backoff(n int) time.Duration {
	d := RetryMinBackoff
	for i := 0; i < n && d < RetryMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, RetryMaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/4+1)) //nolint:gosec // jitter, not a secret
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lanes splits batch into n lanes by key, so that each key's events stay
// in one lane, in order; events without a key are spread round the lanes.
func lanes(batch []Event, n int) [][]Event {
	out := make([][]Event, n)
	if n == 1 {
		out[0] = batch
		return out
	}
	for i, ev := range batch {
		l := i % n
		if ev.Key != "" {
			l = int(maphash.String(laneSeed, ev.Key) % uint64(n))
		}
		out[l] = append(out[l], ev)
	}
	return out
}

var laneSeed = maphash.MakeSeed()
