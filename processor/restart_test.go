package processor

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// With ordering none, a restarted worker takes back only the entries still
// pending under its name: one another worker has reclaimed meanwhile stays
// with that worker, and "deleted" is logged only for an entry really gone
// from the stream.
func TestRestartTakesBackOnlyItsOwn(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	var recs []Record
	for seq := 0; seq < 3; seq++ {
		recs = append(recs, Record{Key: "k" + string(rune('a'+seq)), Fields: []string{"data", event("k", seq)}})
	}
	produce(t, c, 1, recs)
	if err := c.XGroupCreate(ctx, "in", "t", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// A read all three and died; B reclaimed the first; the third was
	// deleted from the stream.
	es, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "t", Consumer: "A", Streams: []string{"in", ">"}, Count: 10}).Result()
	if err != nil || len(es[0].Messages) != 3 {
		t.Fatalf("read: %v %v", es, err)
	}
	ids := []string{es[0].Messages[0].ID, es[0].Messages[1].ID, es[0].Messages[2].ID}
	if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: "in", Group: "t", Consumer: "B", Messages: ids[:1]}).Err(); err != nil {
		t.Fatal(err)
	}
	c.XDel(ctx, "in", ids[2])

	core, logs := observer.New(zap.InfoLevel)
	var handled []string
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		handled = append(handled, m.ID)
		return emitHandler(ctx, m)
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Consumer: "A", Ordering: OrderingNone, Decoder: jsonDecoder,
		Handler: h, Logger: zap.New(core), ReclaimAfter: time.Hour, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitFor(t, 10*time.Second, "A's own entry processed", func() bool { return xlen(t, c, "out") >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(handled) != 1 || handled[0] != ids[1] {
		t.Errorf("restarted A handled %v, want only %s (its own; %s is B's, %s is deleted)", handled, ids[1], ids[0], ids[2])
	}
	pend, _ := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "in", Group: "t", Start: "-", End: "+", Count: 10}).Result()
	if len(pend) != 1 || pend[0].ID != ids[0] || pend[0].Consumer != "B" {
		t.Errorf("pending = %+v, want only %s, still B's", pend, ids[0])
	}
	deleted := logs.FilterMessage("pending_entry_deleted_from_stream").All()
	if len(deleted) != 1 || deleted[0].ContextMap()["entry_id"] != ids[2] {
		t.Errorf("deleted warnings = %v, want one, for %s", deleted, ids[2])
	}
}
