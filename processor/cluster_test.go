package processor

import (
	"context"
	"strings"
	"testing"

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
}
