package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// addN appends n entries to stream with ids <ms>-0 .. counting up from ms.
func addN(t *testing.T, c redis.UniversalClient, stream string, ms int64, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%d-0", ms+int64(i))
		if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, ID: ids[i], Values: []string{"i", fmt.Sprint(i)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func readGroup(t *testing.T, c redis.UniversalClient, stream, group, consumer string, n int64) []string {
	t.Helper()
	res, err := c.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: n}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// The cut of each case, on a stream of 100 entries with ids 1000-0 ..
// 1099-0, with what the groups have read and acked.
func TestTrimNeverPastUnacked(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	now := time.UnixMilli(1100)

	type want struct {
		removed, length, over int64
		heldBy, heldFrom      string
		abandoned             bool
	}
	cases := []struct {
		name   string
		r      Retention
		groups func(t *testing.T, s string, ids []string)
		want   want
	}{
		{"no group: the length cap in full", Retention{MaxLen: 30}, nil,
			want{removed: 70, length: 30}},
		{"no group: the age cap in full", Retention{MaxAge: 40 * time.Millisecond}, nil,
			want{removed: 60, length: 40}},
		{"no cap reached", Retention{MaxLen: 100}, nil,
			want{length: 100}},
		{"a group that acked all it read, 50", Retention{MaxLen: 10}, func(t *testing.T, s string, ids []string) {
			c.XGroupCreate(ctx, s, "g", "0")
			read := readGroup(t, c, s, "g", "a", 50)
			c.XAck(ctx, s, "g", read...)
		}, want{removed: 50, length: 50, over: 40, heldBy: "g", heldFrom: "1049-1"}},
		{"a group with entry 20 pending and all else acked", Retention{MaxLen: 10}, func(t *testing.T, s string, ids []string) {
			c.XGroupCreate(ctx, s, "g", "0")
			read := readGroup(t, c, s, "g", "a", 100)
			c.XAck(ctx, s, "g", append(read[:20:20], read[21:]...)...)
		}, want{removed: 20, length: 80, over: 70, heldBy: "g", heldFrom: "1020-0"}},
		{"two groups: the slower one holds the cut", Retention{MaxLen: 10}, func(t *testing.T, s string, ids []string) {
			c.XGroupCreate(ctx, s, "fast", "0")
			c.XAck(ctx, s, "fast", readGroup(t, c, s, "fast", "a", 100)...)
			c.XGroupCreate(ctx, s, "slow", "0")
			c.XAck(ctx, s, "slow", readGroup(t, c, s, "slow", "b", 5)...)
		}, want{removed: 5, length: 95, over: 85, heldBy: "slow", heldFrom: "1004-1"}},
		{"a group with no consumer that never read: abandoned", Retention{MaxLen: 10}, func(t *testing.T, s string, ids []string) {
			c.XGroupCreate(ctx, s, "gone", "0")
		}, want{length: 100, over: 90, heldBy: "gone", heldFrom: "0-1", abandoned: true}},
		{"groups all caught up: the cap in full", Retention{MaxLen: 10, MaxAge: 5 * time.Millisecond}, func(t *testing.T, s string, ids []string) {
			c.XGroupCreate(ctx, s, "g", "$")
		}, want{removed: 95, length: 5}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fmt.Sprintf("s%d", i)
			ids := addN(t, c, s, 1000, 100)
			if tc.groups != nil {
				tc.groups(t, s, ids)
			}
			dry, err := RetentionStatus(ctx, c, s, tc.r, now)
			if err != nil {
				t.Fatal(err)
			}
			if dry.Removed != 0 || c.XLen(ctx, s).Val() != 100 {
				t.Fatalf("the status trimmed: %+v, length %d", dry, c.XLen(ctx, s).Val())
			}
			got, err := trim(ctx, c, s, tc.r, now, false)
			if err != nil {
				t.Fatal(err)
			}
			g := want{removed: got.Removed, length: got.Length, over: got.Over, heldBy: got.HeldBy, heldFrom: got.HeldFrom, abandoned: got.Abandoned}
			if g != tc.want {
				t.Fatalf("trim = %+v, want %+v", g, tc.want)
			}
			if dry.HeldBy != got.HeldBy || dry.HeldFrom != got.HeldFrom {
				t.Fatalf("status held by %q from %q, the trim by %q from %q", dry.HeldBy, dry.HeldFrom, got.HeldBy, got.HeldFrom)
			}
			if n := c.XLen(ctx, s).Val(); n != got.Length {
				t.Fatalf("XLEN %d, report %d", n, got.Length)
			}
		})
	}
}

// The workers measure max_age on Redis's clock, the one entry ids are
// made by, not on their own: a zero now asks the trim script for TIME. A
// clock a test drives is used as it is.
func TestRetentionMaxAgeOnRedisClock(t *testing.T) {
	if got := redisNow(SystemClock()); !got.IsZero() {
		t.Errorf("redisNow(SystemClock()) = %v, want the zero time (Redis's clock)", got)
	}
	mc := NewManualClock(time.UnixMilli(5000))
	if got := redisNow(mc); !got.Equal(time.UnixMilli(5000)) {
		t.Errorf("redisNow(a manual clock) = %v, want its time", got)
	}

	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	rt, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	ms := rt.UnixMilli()
	old := addN(t, c, "s", ms-10*time.Hour.Milliseconds(), 3)
	older := addN(t, c, "s", ms-2*time.Hour.Milliseconds(), 3)
	young := addN(t, c, "s", ms-time.Minute.Milliseconds(), 3)
	rep, err := trim(ctx, c, "s", Retention{MaxAge: time.Hour}, time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := c.XRange(ctx, "s", "-", "+").Result()
	if rep.Removed != int64(len(old)+len(older)) || len(left) != len(young) || left[0].ID != young[0] {
		t.Errorf("trim by max_age 1h on Redis's clock removed %d and left %v; want %d removed and %v left", rep.Removed, left, len(old)+len(older), young)
	}
	// A driven clock ten hours behind Redis's: nothing is an hour old yet.
	addN(t, c, "d", ms-2*time.Hour.Milliseconds(), 3)
	rep, err = trim(ctx, c, "d", Retention{MaxAge: time.Hour}, time.UnixMilli(ms-10*time.Hour.Milliseconds()), false)
	if err != nil || rep.Removed != 0 {
		t.Errorf("trim with a clock 10h behind removed %d, %v; want 0", rep.Removed, err)
	}
}
