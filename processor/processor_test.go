package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// jsonDecoder reads a JSON payload from field "data" with "k" as key and
// "id" as dedupe id.
var jsonDecoder = DecoderFunc(func(m *Message) error {
	raw, ok := m.Field("data")
	if !ok {
		return Permanentf(ReasonNotJSON, "entry %s has no data field", m.ID)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return Permanent(ReasonNotJSON, err)
	}
	k, ok := v["k"].(string)
	if !ok {
		return Permanentf(ReasonMissingKey, "no key k")
	}
	m.Key = k
	m.DedupeID, _ = v["id"].(string)
	m.Data = v
	return nil
})

func newMiniClient(tb testing.TB) (*miniredis.Miniredis, *redis.Client) {
	tb.Helper()
	mr := miniredis.RunT(tb)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { c.Close() })
	return mr, c
}

func addEvents(tb testing.TB, c *redis.Client, stream string, events ...string) {
	tb.Helper()
	for _, e := range events {
		if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{"data", e}}).Err(); err != nil {
			tb.Fatal(err)
		}
	}
}

// runUntil runs p until cond holds (or fails the test after limit), then stops it.
func runUntil(tb testing.TB, p *Processor, cond func() bool, limit time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			tb.Fatalf("condition not reached within %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		tb.Fatalf("Run() = %v, want nil", err)
	}
}

func TestProcessorSmoke(t *testing.T) {
	_, c := newMiniClient(t)
	var calls atomic.Int64
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		n := calls.Add(1)
		if n == 2 {
			return errors.New("transient")
		}
		m.Emit("out", 0, "key", m.Key, "id", m.DedupeID)
		m.SetState("state:"+m.Key, "last", m.DedupeID)
		return nil
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h,
		DedupeWindow: time.Hour, Backoff: time.Millisecond, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addEvents(t, c, "in", `{"k":"a","id":"1"}`, `{"k":"a","id":"2"}`, `{"k":"b","id":"3"}`, `{"k":"a","id":"1"}`, `not json`)
	ctx := context.Background()
	runUntil(t, p, func() bool {
		n, _ := c.XLen(ctx, "out").Result()
		d, _ := c.XLen(ctx, "in:dlq").Result()
		return n == 3 && d == 1
	}, 10*time.Second)
	out, _ := c.XRange(ctx, "out", "-", "+").Result()
	// Keys run in parallel lanes and a2 was retried, so only the order
	// within a key is fixed.
	got := map[string][]string{}
	for _, e := range out {
		k := fmt.Sprint(e.Values["key"])
		got[k] = append(got[k], fmt.Sprint(e.Values["id"]))
	}
	if fmt.Sprint(got) != "map[a:[1 2] b:[3]]" {
		t.Errorf("outputs by key = %v, want map[a:[1 2] b:[3]]", got)
	}
	pend, _ := c.XPending(ctx, "in", "t").Result()
	if pend.Count != 0 {
		t.Errorf("pending = %d, want 0", pend.Count)
	}
	dl, _ := c.XRange(ctx, "in:dlq", "-", "+").Result()
	if dl[0].Values["eddy.reason"] != ReasonNotJSON || dl[0].Values["data"] != "not json" {
		t.Errorf("dead letter = %v", dl[0].Values)
	}
	st, _ := c.HGetAll(ctx, "state:a").Result()
	if st["last"] != "2" {
		t.Errorf("state:a = %v, want last=2", st)
	}
}

// A decoder that panics dead-letters the entry (the same input would panic
// again) instead of crashing the worker.
func TestDecoderPanicIsDeadLettered(t *testing.T) {
	_, c := newMiniClient(t)
	dec := DecoderFunc(func(m *Message) error {
		if v, _ := m.Field("data"); v == "boom" {
			panic("decoder bug")
		}
		return jsonDecoder(m)
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: dec, Block: 50 * time.Millisecond,
		Handler: HandlerFunc(func(ctx context.Context, m *Message) error { m.Emit("out", 0, "k", m.Key); return nil })})
	if err != nil {
		t.Fatal(err)
	}
	addEvents(t, c, "in", "boom", `{"k":"a"}`)
	ctx := context.Background()
	runUntil(t, p, func() bool { return c.XLen(ctx, "in:dlq").Val() == 1 && c.XLen(ctx, "out").Val() == 1 }, 10*time.Second)
	dl := c.XRange(ctx, "in:dlq", "-", "+").Val()[0].Values
	if dl["eddy.reason"] != ReasonInvalid || !strings.Contains(dl["eddy.error"].(string), "decoder panic") {
		t.Errorf("dead letter = %v, want reason invalid with the panic", dl)
	}
}
