package processor

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// newTestInspector returns an Inspector of pipeline "p" on stream "s" with
// the given partitions, on a fresh redis-server, and a client of it.
func newTestInspector(tb testing.TB, partitions int) (*Inspector, *redis.Client) {
	tb.Helper()
	c := redistest.Start(tb).Client(tb)
	in, err := NewInspector(c, Options{Pipeline: "p", Stream: "s", Partitions: partitions})
	if err != nil {
		tb.Fatal(err)
	}
	return in, c
}

func inspectorXAdd(tb testing.TB, c redis.Cmdable, stream string, n int) {
	tb.Helper()
	for range n {
		if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{"k", "v"}}).Err(); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestNewInspector(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { _ = c.Close() })
	in, err := NewInspector(c, Options{Pipeline: "p", Stream: "s"}) // no Handler, no Decoder
	if err != nil {
		t.Fatalf("NewInspector without Handler and Decoder = %v, want nil", err)
	}
	if o := in.Options(); o.Group != "p" || o.Partitions != 1 || o.DeadLetterStream != "s:dlq" || o.Ordering != OrderingKey {
		t.Errorf("Options() = group %q, partitions %d, dlq %q, ordering %q, want the defaults p, 1, s:dlq, key",
			o.Group, o.Partitions, o.DeadLetterStream, o.Ordering)
	}
	for _, tc := range []struct {
		name string
		rdb  redis.UniversalClient
		o    Options
		want string
	}{
		{"no stream", c, Options{Pipeline: "p"}, "Options.Stream is required"},
		{"bad ordering", c, Options{Pipeline: "p", Stream: "s", Ordering: "any"}, "Options.Ordering"},
		{"nil client", nil, Options{Pipeline: "p", Stream: "s"}, "nil Redis client"},
	} {
		if _, err := NewInspector(tc.rdb, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewInspector(%s) = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// Where nothing has run and nothing was produced, every view is empty and
// none is an error.
func TestInspectorFreshServer(t *testing.T) {
	ctx := context.Background()
	in, _ := newTestInspector(t, 3)
	stats, err := in.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats on a fresh server = %v, want nil", err)
	}
	if len(stats) != 3 {
		t.Fatalf("Stats = %d partitions, want 3", len(stats))
	}
	for i, s := range stats {
		want := PartitionStats{Partition: i, Stream: PartitionStream("s", i, 3)}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("Stats()[%d] = %+v, want %+v", i, s, want)
		}
	}
	if n, err := in.Unrouted(ctx); n != 0 || err != nil {
		t.Errorf("Unrouted = %d, %v, want 0, nil", n, err)
	}
	if ms, err := in.Members(ctx); len(ms) != 0 || err != nil {
		t.Errorf("Members = %v, %v, want none", ms, err)
	}
	if ps, err := in.Pending(ctx, 2, 10); len(ps) != 0 || err != nil {
		t.Errorf("Pending(2, 10) = %v, %v, want none", ps, err)
	}
	if n, last, err := in.DeadLetterSpan(ctx); n != 0 || last != "" || err != nil {
		t.Errorf("DeadLetterSpan = %d, %q, %v, want 0, \"\", nil", n, last, err)
	}
	if dls, last, foreign, err := in.DeadLetters(ctx, "", 10); len(dls) != 0 || last != "" || len(foreign) != 0 || err != nil {
		t.Errorf("DeadLetters = %v, %q, %v, %v, want none", dls, last, foreign, err)
	}
}

// A stream that has entries but no group yet: the whole stream is lag.
func TestInspectorNoGroupYet(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 2)
	inspectorXAdd(t, c, "{s:1}", 5)
	// Another pipeline's group on the same stream is not ours.
	if err := c.XGroupCreate(ctx, "{s:1}", "other", "$").Err(); err != nil {
		t.Fatal(err)
	}
	stats, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[1]; s.Length != 5 || s.GroupExists || s.Lag != 5 || s.Pending != 0 {
		t.Errorf("Stats()[1] = %+v, want length 5, no group, lag 5", s)
	}
	if s := stats[0]; s.Length != 0 || s.GroupExists || s.Lag != 0 {
		t.Errorf("Stats()[0] = %+v, want zeros", s)
	}
}

// Entries added to the bare stream name of a partitioned pipeline are
// counted; with one partition the bare name is the partition.
func TestInspectorUnrouted(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 4)
	inspectorXAdd(t, c, "s", 3)
	inspectorXAdd(t, c, "{s:2}", 1)
	if n, err := in.Unrouted(ctx); n != 3 || err != nil {
		t.Errorf("Unrouted = %d, %v, want 3, nil", n, err)
	}
	one, err := NewInspector(c, Options{Pipeline: "p", Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := one.Unrouted(ctx); n != 0 || err != nil {
		t.Errorf("Unrouted with one partition = %d, %v, want 0, nil", n, err)
	}
	if err := c.Set(ctx, "t", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	other, err := NewInspector(c, Options{Pipeline: "p", Stream: "t", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := other.Unrouted(ctx); n != 0 || err != nil {
		t.Errorf("Unrouted with a string at the bare name = %d, %v, want 0, nil", n, err)
	}
}

// Pending entries are listed oldest first with their consumer and delivery
// count, and the stats count them; the lease shows the owner.
func TestInspectorPendingAndLease(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 2)
	inspectorXAdd(t, c, "{s:0}", 3)
	if err := c.XGroupCreate(ctx, "{s:0}", "p", "0").Err(); err != nil {
		t.Fatal(err)
	}
	read := func(consumer, id string, count int64) {
		t.Helper()
		err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "p", Consumer: consumer, Streams: []string{"{s:0}", id}, Count: count}).Err()
		if err != nil {
			t.Fatal(err)
		}
	}
	read("c1", ">", 1)
	read("c1", "0", 1) // delivers c1's pending entry again
	read("c2", ">", 1)
	if err := c.Set(ctx, leaseKey("s", 0, 2, "p"), "w1/abc/7", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	ps, err := in.Pending(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Consumer != "c1" || ps[0].Deliveries != 2 || ps[1].Consumer != "c2" || ps[1].Deliveries != 1 ||
		!IDAfter(ps[1].ID, ps[0].ID) {
		t.Errorf("Pending(0, 10) = %+v, want c1's entry delivered twice, then c2's once", ps)
	}
	if ps, err := in.Pending(ctx, 0, 1); len(ps) != 1 || err != nil {
		t.Errorf("Pending(0, 1) = %+v, %v, want one entry", ps, err)
	}
	for _, tc := range []struct{ partition, count int }{{-1, 1}, {2, 1}, {0, 0}} {
		if _, err := in.Pending(ctx, tc.partition, tc.count); err == nil {
			t.Errorf("Pending(%d, %d) = nil error, want one", tc.partition, tc.count)
		}
	}

	stats, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := stats[0]
	if !s.GroupExists || s.Length != 3 || s.Lag != 1 || s.Pending != 2 || s.Consumers != 2 {
		t.Errorf("Stats()[0] = %+v, want group, length 3, lag 1, pending 2, consumers 2", s)
	}
	if s.Owner != "w1" || s.Token != 7 || s.Fence != "w1/abc/7" || s.LeaseTTL <= 0 || s.LeaseTTL > time.Minute {
		t.Errorf("Stats()[0] lease = owner %q token %d fence %q ttl %v, want w1, 7, w1/abc/7, up to 1m", s.Owner, s.Token, s.Fence, s.LeaseTTL)
	}
}

// A key of the wrong type is an error that names the pipeline and stream.
func TestInspectorStatsWrongType(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 2)
	if err := c.Set(ctx, "{s:1}", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := in.Stats(ctx)
	if err == nil || !redis.HasErrorPrefix(err, "WRONGTYPE") || !strings.Contains(err.Error(), "stats of p: {s:1}") {
		t.Errorf("Stats with a string at {s:1} = %v, want WRONGTYPE naming the pipeline and stream", err)
	}
}

func TestInspectorMembers(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 1)
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	err = c.ZAdd(ctx, membersKey("s", "p"),
		redis.Z{Member: "live", Score: float64(now.Add(time.Minute).UnixMilli())},
		redis.Z{Member: "gone", Score: float64(now.Add(-time.Minute).UnixMilli())}).Err()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := in.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Consumer != "live" || time.Until(ms[0].Expires) <= 0 {
		t.Errorf("Members = %+v, want only live, expiring in the future", ms)
	}
}

// Dead letters are read from the pipeline's dead-letter stream and
// replayed to the partition they came from.
func TestInspectorDeadLettersAndReplay(t *testing.T) {
	ctx := context.Background()
	in, c := newTestInspector(t, 2)
	add := func(fields ...string) string {
		t.Helper()
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: "s:dlq", Values: fields}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	add("data", "1", "eddy.reason", ReasonInvalid, "eddy.stream", "{s:1}", "eddy.id", "1-1", "eddy.pipeline", "p")
	foreign := add("hand", "written")
	if n, last, err := in.DeadLetterSpan(ctx); n != 2 || last != foreign || err != nil {
		t.Errorf("DeadLetterSpan = %d, %q, %v, want 2, %q, nil", n, last, err, foreign)
	}
	dls, last, skipped, err := in.DeadLetters(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Reason != ReasonInvalid || dls[0].Stream != "{s:1}" || last != foreign || len(skipped) != 1 {
		t.Fatalf("DeadLetters = %+v, %q, %v, want one dead letter and the hand-written entry skipped", dls, last, skipped)
	}
	id, err := in.Replay(ctx, dls[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.XRange(ctx, "{s:1}", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != id || got[0].Values["data"] != "1" {
		t.Errorf("{s:1} after Replay = %+v, want the original fields under id %s", got, id)
	}
	if n, _, err := in.DeadLetterSpan(ctx); n != 1 || err != nil {
		t.Errorf("DeadLetterSpan after Replay = %d, %v, want 1 (the foreign entry)", n, err)
	}
}
