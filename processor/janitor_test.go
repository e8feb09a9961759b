package processor

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Consumers that are not live members and have nothing pending are
// removed from the group; a consumer with pending entries is never
// removed, nor one whose membership is alive.
func TestJanitorRemovesOnlyDeadEmptyConsumers(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.XGroupCreateMkStream(ctx, "in", "t", "0").Err(); err != nil {
		t.Fatal(err)
	}
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", event("a", 0)}}})
	for _, name := range []string{"dead-empty", "alive-empty"} {
		if err := c.XGroupCreateConsumer(ctx, "in", "t", name).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// dead-pending holds the entry and never acks it.
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "t", Consumer: "dead-pending", Streams: []string{"in", ">"}, Count: 1}).Err(); err != nil {
		t.Fatal(err)
	}
	// alive-empty is a live member, as a running worker would be.
	now := c.Time(ctx).Val()
	if err := c.ZAdd(ctx, membersKey("in", "t"), redis.Z{Score: float64(now.Add(time.Minute).UnixMilli()), Member: "alive-empty"}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // all three idle past the session timeout

	o := workerOptions("me", HandlerFunc(emitHandler))
	o.SessionTimeout, o.Heartbeat = 300*time.Millisecond, 100*time.Millisecond
	// Ordering none, and a long reclaim_after, keep dead-pending's entry
	// where it is (an owner under ordering key would take it over).
	o.Ordering, o.ReclaimAfter = OrderingNone, time.Hour
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		cs, err := c.XInfoConsumers(ctx, "in", "t").Result()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		sort.Strings(out)
		return out
	}
	runUntil(t, p, func() bool {
		for _, n := range names() {
			if n == "dead-empty" {
				return false
			}
		}
		return true
	}, 10*time.Second)
	got := names()
	want := []string{"alive-empty", "dead-pending"} // "me" left on its way out: it had nothing pending
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("consumers after the sweep = %v, want %v", got, want)
	}
	if n := pendingCount(t, c, "in"); n != 1 {
		t.Errorf("pending = %d, want dead-pending's 1 entry untouched", n)
	}
	if err := c.ZScore(ctx, membersKey("in", "t"), "me").Err(); err == nil {
		t.Error("the worker is still a member after it stopped")
	}
}

// A group created with StartNewest skips what the stream held before.
func TestStartNewest(t *testing.T) {
	_, c := newMiniClient(t)
	addEvents(t, c, "in", `{"k":"old"}`)
	o := workerOptions("me", HandlerFunc(func(ctx context.Context, m *Message) error {
		m.Emit("out", 0, "key", m.Key)
		return nil
	}))
	o.DedupeWindow, o.Start = 0, StartNewest
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	go func() {
		for c.Exists(ctx, "in").Val() == 1 && len(c.XInfoGroups(ctx, "in").Val()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		addEvents(t, c, "in", `{"k":"new"}`)
	}()
	runUntil(t, p, func() bool { return c.XLen(ctx, "out").Val() >= 1 }, 10*time.Second)
	out := c.XRange(ctx, "out", "-", "+").Val()
	if len(out) != 1 || out[0].Values["key"] != "new" {
		t.Errorf("outputs = %v, want only the entry added after the group", out)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 150 * time.Millisecond},
		{2, 100 * time.Millisecond, 300 * time.Millisecond},
		{4, 400 * time.Millisecond, 1200 * time.Millisecond},
		{10, 500 * time.Millisecond, 1500 * time.Millisecond}, // capped at 1s
	}
	for _, tt := range tests {
		for i := 0; i < 200; i++ {
			if d := backoff(100*time.Millisecond, time.Second, tt.attempt); d < tt.min || d > tt.max {
				t.Fatalf("backoff(100ms, 1s, %d) = %v, want within [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
}
