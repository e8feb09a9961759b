package dedupe

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

func TestCheckAndMark(t *testing.T) {
	at := time.UnixMilli
	tests := []struct {
		name      string
		w         Window
		now       time.Time
		wantCheck []string
		wantMark  string
		wantExp   int64
	}{
		{"one-second buckets, 3s window", Window{Window: 3 * time.Second, Bucket: time.Second}, at(10_500),
			[]string{"p:10", "p:9", "p:8", "p:7"}, "p:10", 14_000},
		{"on a bucket boundary", Window{Window: 2 * time.Second, Bucket: time.Second}, at(10_000),
			[]string{"p:10", "p:9", "p:8"}, "p:10", 13_000},
		{"default bucket is window/8", Window{Window: 8 * time.Second}, at(5_000),
			[]string{"p:5", "p:4", "p:3", "p:2", "p:1", "p:0", "p:-1", "p:-2", "p:-3"}, "p:5", 14_000},
		{"former width looked up after the current", Window{Window: 8 * time.Second, Bucket: 4 * time.Second, Former: time.Second}, at(5_000),
			[]string{"p:1", "p:0", "p:5", "p:4", "p:3", "p:2", "p:1", "p:0", "p:-1", "p:-2", "p:-3"}, "p:1", 16_000},
		{"former equal to the bucket: once", Window{Window: 8 * time.Second, Bucket: time.Second, Former: time.Second}, at(1_000),
			[]string{"p:1", "p:0", "p:-1", "p:-2", "p:-3", "p:-4", "p:-5", "p:-6", "p:-7"}, "p:1", 10_000},
		{"disabled", Window{}, at(5_000), nil, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Check("p", tt.now); fmt.Sprint(got) != fmt.Sprint(tt.wantCheck) {
				t.Errorf("Check = %v, want %v", got, tt.wantCheck)
			}
			if !tt.w.Enabled() {
				return
			}
			key, exp := tt.w.Mark("p", tt.now)
			if key != tt.wantMark || exp.UnixMilli() != tt.wantExp {
				t.Errorf("Mark = %s %d, want %s %d", key, exp.UnixMilli(), tt.wantMark, tt.wantExp)
			}
		})
	}
}

// An id marked at t is found by every check until t+window, whatever the
// bucket width: the sets checked always cover the mark's set.
func TestMarkedIDIsCheckedForTheWholeWindow(t *testing.T) {
	for _, w := range []Window{
		{Window: 10 * time.Second, Bucket: time.Second},
		{Window: 10 * time.Second, Bucket: 3 * time.Second},
		{Window: 10 * time.Second, Bucket: 10 * time.Second},
	} {
		for markMs := int64(100_000); markMs < 103_000; markMs += 250 {
			mark, exp := w.Mark("p", time.UnixMilli(markMs))
			if exp.UnixMilli() < markMs+w.Window.Milliseconds() {
				t.Fatalf("%v: set %s marked at %d expires at %d, before the window ends", w, mark, markMs, exp.UnixMilli())
			}
			for nowMs := markMs; nowMs <= markMs+w.Window.Milliseconds(); nowMs += 500 {
				found := false
				for _, k := range w.Check("p", time.UnixMilli(nowMs)) {
					found = found || k == mark
				}
				if !found {
					t.Fatalf("%v: id marked at %d in %s is not checked at %d", w, markMs, mark, nowMs)
				}
			}
		}
	}
}

func TestSeenAndMarkIDs(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	ctx := context.Background()
	w := Window{Window: time.Minute, Bucket: 10 * time.Second}
	now := time.Now() // PEXPIREAT is absolute: a time in the past deletes the set
	if err := w.MarkIDs(ctx, c, "p", now, "a", "b"); err != nil {
		t.Fatal(err)
	}
	later := now.Add(45 * time.Second) // another bucket, same window
	got, err := w.Seen(ctx, c, "p", later, []string{"a", "x", "", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[true false false true]" {
		t.Errorf("Seen = %v, want [true false false true]", got)
	}
	got, _ = w.Seen(ctx, c, "p", now.Add(2*time.Minute), []string{"a"})
	if got[0] {
		t.Error("Seen after the window = true, want false")
	}
}

// A worker whose bucket width changed (an upgrade that changed the
// default) still finds the ids its predecessor marked, for a whole window.
func TestFormerWidthRemembered(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	ctx := context.Background()
	before := Window{Window: time.Hour, Bucket: time.Hour / 8}
	after := Window{Window: time.Hour, Bucket: time.Hour / 2, Former: time.Hour / 8}
	now := time.Now()
	if err := before.MarkIDs(ctx, c, "p", now, "old"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, time.Minute, 59 * time.Minute} {
		got, err := after.Seen(ctx, c, "p", now.Add(d), []string{"old", "new"})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != "[true false]" {
			t.Errorf("%v after the upgrade: Seen = %v, want [true false]", d, got)
		}
	}
	without := after
	without.Former = 0
	if got, _ := without.Seen(ctx, c, "p", now, []string{"old"}); got[0] {
		t.Error("without Former the old width's set was found: the test proves nothing")
	}
}

// Expiry is Redis's job: checked on a real server, which expires keys by
// itself (miniredis only on FastForward).
func TestMarksExpireOnRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	w := Window{Window: time.Second, Bucket: 250 * time.Millisecond}
	now := time.Now() // one instant: a bucket boundary between two calls would name another set
	if err := w.MarkIDs(ctx, c, "p", now, "a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.Seen(ctx, c, "p", now, []string{"a"}); !got[0] {
		t.Fatal("Seen right after marking = false, want true")
	}
	key, _ := w.Mark("p", now)
	if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > w.Window+w.Bucket {
		t.Errorf("PTTL(%s) = %v, want within (0, %v]", key, ttl, w.Window+w.Bucket)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(ctx, key).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 5s after a 1s window", key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
