package processor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// The core engine's order, dedupe and reclaim tests against a Redis Cluster
// of 3 masters that the test starts. Partitions spread over the masters;
// outputs ("out") and dead letters ("in:dlq") live in other slots than the
// partitions, so they take the write-before-commit path.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-master Redis Cluster")
	}
	cl := redistest.StartCluster(t, 3)
	c := cl.Client(t)
	env := "EDDY_TEST_CLUSTER=" + strings.Join(cl.Addrs(), ",")
	slots := map[int]bool{}
	for p := 0; p < 4; p++ {
		slots[keySlot(PartitionStream("in", p, 4))] = true
	}
	if keySlot("out") == keySlot("in") {
		t.Fatal("the outputs share the partition's slot: the test would not cross slots")
	}
	flush := func(t *testing.T) { // a cluster this test started
		t.Helper()
		if err := c.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() }); err != nil {
			t.Fatal(err)
		}
	}
	if len(slots) < 2 {
		t.Fatalf("the 4 partitions share %d slot(s)", len(slots))
	}
	t.Run("order", func(t *testing.T) {
		testOrderUnderFailures(t, c)
	})
	t.Run("dedupe", func(t *testing.T) {
		flush(t)
		testDedupeSameID(t, c)
	})
	t.Run("reclaim", func(t *testing.T) {
		flush(t)
		testReclaimAfterSIGKILL(t, c, env, true)
	})
	t.Run("refused_remote_write", func(t *testing.T) {
		flush(t)
		testRefusedRemoteWrite(t, c)
	})
}

// A write outside the partition's slot that Redis refuses (an increment of
// a field holding text) dead-letters its entry, once, and the rest of the
// batch commits; the partition does not retry it forever. (The entry's
// other writes outside the slot, made in the same round trip, stand: they
// are at least once on Cluster.)
func testRefusedRemoteWrite(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	if keySlot("model:a") == keySlot("in") {
		t.Fatal("the read model shares the partition's slot")
	}
	c.HSet(ctx, "model:a", "n", "text")
	produce(t, c, 1, []Record{
		{Key: "a", Fields: []string{"data", event("a", 0)}},
		{Key: "b", Fields: []string{"data", event("b", 0)}},
	})
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		m.Record(Effect{Kind: EffectHIncrBy, Key: "model:" + m.Key, Fields: []string{"n", "1"}})
		return emitHandler(ctx, m)
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Block: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitFor(t, 20*time.Second, "both settled", func() bool { return pendingCount(t, c, "in") == 0 && xlen(t, c, "in:dlq") == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	byKey, _ := outputsByKey(t, c)
	if len(byKey["a"]) > 1 || len(byKey["b"]) != 1 || c.HGet(ctx, "model:b", "n").Val() != "1" {
		t.Errorf("outputs %v, model:b n %q: want b's once, a's at most once", byKey, c.HGet(ctx, "model:b", "n").Val())
	}
	dls, _, _, _ := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
	if len(dls) != 1 || dls[0].Key != "a" || dls[0].Reason != ReasonOutputFailed {
		t.Errorf("dead letters = %+v, want a's, output_failed", dls)
	}
}
