package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// Cleanup deletes the bench's keys, its partition streams and the
// engine's hash-tagged keys included, and nothing else, across many SCAN
// pages.
func TestCleanupLeavesOthersKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	prefix := newPrefix()
	other := newPrefix()
	mine := []string{prefix + "1:in", prefix + "1:out", "{" + prefix + "1:in:3}", "{" + prefix + "1:in}:eddy:dedupe:bench:1"}
	theirs := []string{"user:1", other + "1:in", "{" + other + "1:in:0}", "x" + prefix, "{x" + prefix + "}"}
	for i := range 1200 {
		mine = append(mine, prefix+"many:"+strconv.Itoa(i))
	}
	for _, k := range append(slices.Clone(mine), theirs...) {
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Cleanup(ctx, rdb, prefix)
	if err != nil || n != len(mine) {
		t.Fatalf("Cleanup(%s) = %d, %v; want %d, nil", prefix, n, err, len(mine))
	}
	left, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	want := slices.Sorted(slices.Values(theirs))
	if !slices.Equal(left, want) {
		t.Errorf("after Cleanup(%s) the keys are %q, want %q", prefix, left, want)
	}
}

// The baseline outputs and acks every event once, marks every id, and
// returns nil, having finished its batches, when ctx is cancelled.
func TestBaseline(t *testing.T) {
	for _, consumers := range []int{1, 3} {
		t.Run(fmt.Sprintf("consumers=%d", consumers), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			ctx := context.Background()
			const n = 5000
			if err := prefill(ctx, processor.NewProducer(rdb, "in", 1, 0), newEvents("b", 1), n, func() int64 { return 1 }); err != nil {
				t.Fatal(err)
			}
			b := Baseline{Client: rdb, Stream: "in", Group: "g", Output: "out", Seen: "seen", Consumers: consumers, Batch: 100, MaxLen: outputMaxLen}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- b.Run(runCtx) }()
			deadline := time.Now().Add(20 * time.Second)
			for rdb.XLen(ctx, "out").Val() < n {
				if time.Now().After(deadline) {
					t.Fatalf("output has %d of %d entries after 20s", rdb.XLen(ctx, "out").Val(), n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Baseline.Run = %v, want nil after cancel", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Baseline.Run did not return within 5s of cancel")
			}
			if got := rdb.XLen(ctx, "out").Val(); got != n {
				t.Errorf("output has %d entries, want %d", got, n)
			}
			if got := rdb.SCard(ctx, "seen").Val(); got != n {
				t.Errorf("seen set has %d ids, want %d", got, n)
			}
			if p := rdb.XPending(ctx, "in", "g").Val(); p == nil || p.Count != 0 {
				t.Errorf("XPENDING in g = %+v, want 0 pending", p)
			}
			// Each output carries its input's fields (in another order with
			// several consumers).
			ins, outs := map[any]bool{}, map[any]bool{}
			for _, m := range rdb.XRange(ctx, "in", "-", "+").Val() {
				ins[m.Values[payloadField]] = true
			}
			for _, m := range rdb.XRange(ctx, "out", "-", "+").Val() {
				outs[m.Values[payloadField]] = true
			}
			if len(outs) != n || !maps.Equal(ins, outs) {
				t.Errorf("outputs: %d distinct payloads, want the %d of the input", len(outs), len(ins))
			}
		})
	}
}

// An entry without an event id stops the baseline with an error naming it.
func TestBaselineBadEntry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{payloadField, "not json"}}).Val()
	err := Baseline{Client: rdb, Stream: "in", Group: "g", Output: "out", Seen: "seen"}.Run(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !containsAll(err.Error(), id, "in", "event_id") {
		t.Errorf("Baseline.Run on a bad entry = %v, want an error naming entry %s of in", err, id)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestServerStartStop(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs /proc to check that the server is gone")
	}
	ctx := context.Background()
	s, err := StartServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING %s: %v", s.URL(), err)
	}
	pid := s.Pid()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("redis-server %d still there after Stop", pid)
	}
}

func TestServerNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartServer(context.Background(), t.TempDir())
	if !errors.Is(err, ErrNoRedisServer) {
		t.Errorf("StartServer without redis-server on PATH = %v, want %v", err, ErrNoRedisServer)
	}
}
