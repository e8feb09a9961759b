package bench

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

const (
	// EventSize is the size in bytes of a generated event's JSON.
	EventSize = 200
	// Keys is how many distinct user_ids the events spread over.
	Keys = 10000
	// Pages is how many distinct pages the events spread over.
	Pages = 5000
	// payloadField is the entry field holding the event (the pipeline's
	// input.payload).
	payloadField = "data"
	// prefillBatch is events per pipelined round trip of the pre-fill.
	prefillBatch = 1000
)

// events generates clickstream-like events of EventSize bytes:
//
//	{"event_id":"t3-42","user_id":"u1234","ts":1700000000000000000,
//	 "at":1700000000000,"type":"page_view","page":"/p/4821",
//	 "ref":"/search?q=p17","pad":"xx…"}
//
// event_id is unique within the bench run (tag names the scenario run),
// user_id is uniform over Keys users and is the key, ts is the unix time
// in nanoseconds when the event was made and at the same in milliseconds
// (the windowed pipeline's input.event_time; every side gets it, so that
// every side reads the same bytes). page is uniform over 5,000 pages. pad
// fills the event to EventSize.
type events struct {
	tag string
	n   uint64
	rng *rand.Rand
	buf []byte
	// observe, if set, is told the user, at and page number of each event
	// made (the windowed scenario's expected windows).
	observe func(user int, atMS int64, page int)
}

func newEvents(tag string, seed uint64) *events {
	return &events{tag: tag, rng: rand.New(rand.NewPCG(seed, 0xedd1)), buf: make([]byte, 0, 2*EventSize)}
}

// next returns the next event stamped with ts (unix ns) as a record for
// the producer, keyed by its user_id, of a user picked at random.
func (e *events) next(ts int64) processor.Record {
	return e.of(e.rng.IntN(Keys), ts)
}

// of returns the next event, of user "u<user>", stamped with ts.
func (e *events) of(user int, ts int64) processor.Record {
	e.n++
	b := e.buf[:0]
	b = append(b, `{"event_id":"`...)
	b = append(b, e.tag...)
	b = append(b, '-')
	b = strconv.AppendUint(b, e.n, 10)
	b = append(b, `","user_id":"u`...)
	b = strconv.AppendInt(b, int64(user), 10)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	at := floorDiv(ts, int64(time.Millisecond))
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, at, 10)
	page := e.rng.IntN(Pages)
	b = append(b, `,"type":"page_view","page":"/p/`...)
	b = strconv.AppendInt(b, int64(page), 10)
	b = append(b, `","ref":"/search?q=p`...)
	b = strconv.AppendInt(b, int64(e.rng.IntN(100)), 10)
	b = append(b, `","pad":"`...)
	for len(b)+2 < EventSize {
		b = append(b, 'x')
	}
	b = append(b, `"}`...)
	e.buf = b
	if e.observe != nil {
		e.observe(user, at, page)
	}
	return processor.Record{Key: "u" + strconv.Itoa(user), Fields: []string{payloadField, string(b)}}
}

// prefill sends n events through prod in pipelined batches of prefillBatch.
func prefill(ctx context.Context, prod *processor.Producer, ev *events, n int, now func() int64) error {
	recs := make([]processor.Record, 0, prefillBatch)
	for sent := 0; sent < n; sent += len(recs) {
		recs = recs[:0]
		for range min(prefillBatch, n-sent) {
			recs = append(recs, ev.next(now()))
		}
		if _, err := prod.Send(ctx, recs); err != nil {
			return err
		}
	}
	return nil
}

// floorDiv is a/b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
