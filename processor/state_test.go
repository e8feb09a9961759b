package processor

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// acked is how many entries of the partitions of "in" group "t" has acked:
// entries read less those pending.
func acked(tb testing.TB, c redis.UniversalClient, partitions int) int64 {
	tb.Helper()
	ctx := context.Background()
	var n int64
	for p := 0; p < partitions; p++ {
		gs, err := c.XInfoGroups(ctx, PartitionStream("in", p, partitions)).Result()
		if err != nil {
			continue // not created yet
		}
		for _, g := range gs {
			if g.Name == "t" {
				n += g.EntriesRead - g.Pending
			}
		}
	}
	return n
}

// Done-when 2 of the state issue: a counting step (read-modify-write of a
// per-key counter, an increment and a per-key HyperLogLog) with injected
// transient failures, one worker SIGKILLed mid-run and a rebalance from 2
// to 3 to 2 workers, ends with exact counts for every key, checked from
// the input alone, and nothing pending.
func TestKeyedStateCountsExactlyUnderChaos(t *testing.T) {
	keys, per, partitions := 2000, 100, 8
	if testing.Short() {
		keys, per = 200, 30
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()

	// The input, and what it must add up to: per events per key, each with
	// one of 7 users; the reference HyperLogLog of each key gets the same
	// users (a HyperLogLog depends only on the set of elements added).
	recs := make([]Record, 0, keys*per)
	users := make(map[string][]any, keys)
	for seq := 0; seq < per; seq++ {
		for k := 0; k < keys; k++ {
			key := "k" + strconv.Itoa(k)
			user := fmt.Sprintf("u%d", (k*31+seq*7)%(5+k%7))
			users[key] = append(users[key], user)
			recs = append(recs, Record{Key: key, Fields: []string{"data", event(key, seq, "user", user)}})
		}
	}
	produce(t, c, partitions, recs)
	total := int64(len(recs))

	env := []string{"EDDY_TEST_PARTITIONS=" + strconv.Itoa(partitions)}
	a := startWorker(t, srv.Addr(), "count", "A", env...)
	b := startWorker(t, srv.Addr(), "count", "B", env...)
	waitProgress := func(frac float64) {
		t.Helper()
		waitFor(t, 3*time.Minute, fmt.Sprintf("%.0f%% acked", 100*frac), func() bool {
			return acked(t, c, partitions) >= int64(frac*float64(total))
		})
	}
	waitProgress(0.2)
	_ = a.cmd.Process.Signal(syscall.SIGKILL) // mid-batch: its partitions move after the lease lapses
	a.exitCode(t, 10*time.Second)
	startWorker(t, srv.Addr(), "count", "A", env...) // restarted under the same name
	waitProgress(0.4)
	cw := startWorker(t, srv.Addr(), "count", "C", env...) // 2 → 3 workers
	waitProgress(0.6)
	_ = b.cmd.Process.Signal(syscall.SIGTERM) // 3 → 2: B drains and leaves
	if code := b.exitCode(t, 30*time.Second); code != 0 {
		t.Errorf("worker B exited %d after SIGTERM; stderr:\n%s", code, b.stderr.String())
	}
	waitFor(t, 3*time.Minute, "every entry acked, nothing pending", func() bool {
		if acked(t, c, partitions) < total {
			return false
		}
		for p := 0; p < partitions; p++ {
			if pendingCount(t, c, PartitionStream("in", p, partitions)) > 0 {
				return false
			}
		}
		return true
	})

	// Every key's counts, from the input alone.
	type got struct {
		state *redis.MapStringStringCmd
		hll   *redis.IntCmd
		ref   *redis.IntCmd
	}
	res := make(map[string]got, keys)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for key, us := range users {
			part := PartitionOf(key, partitions)
			p.PFAdd(ctx, "ref:"+key, us...)
			res[key] = got{
				state: p.HGetAll(ctx, StateKey("in", part, partitions, "t", "c", key)),
				hll:   p.PFCount(ctx, DistinctKey("in", part, partitions, "t", "users", key)),
				ref:   p.PFCount(ctx, "ref:"+key),
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	want := strconv.Itoa(per)
	for key, r := range res {
		st := r.state.Val()
		if st["n"] != want || st["incr"] != want || st["last_seq"] != strconv.Itoa(per-1) || r.hll.Val() != r.ref.Val() {
			if bad < 5 {
				t.Errorf("%s: state %v, distinct users %d; want n = incr = %s, last_seq %d, distinct %d",
					key, st, r.hll.Val(), want, per-1, r.ref.Val())
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys counted wrong", bad, keys)
	}
	if n := xlen(t, c, "in:dlq"); n > 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	t.Logf("%d keys × %d events exact after a SIGKILL, a restart and a 2→3→2 rebalance", keys, per)
	_ = cw
}

// A handler reads its key's state as left by the key's earlier entries,
// committed or still in flight in the same batch, and its own effects so
// far; an attempt that fails leaves nothing behind in the state.
func TestStateReadsOwnAndEarlierEffects(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var recs []Record
	for seq := 0; seq < 20; seq++ {
		recs = append(recs, Record{Key: "k", Fields: []string{"data", event("k", seq)}})
	}
	produce(t, c, 1, recs)
	var seen []int64
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		st, err := m.State("c")
		if err != nil {
			return err
		}
		m.StateIncr("c", "n", 1)
		own, _ := m.State("c")
		if own.Int("n") != st.Int("n")+1 {
			return Permanentf("test", "own effects not seen: %d after %d", own.Int("n"), st.Int("n"))
		}
		if m.Attempt == 1 && st.Int("n")%3 == 1 {
			m.StateSet("c", "junk", "x")
			return fmt.Errorf("fail once after recording effects")
		}
		seen = append(seen, st.Int("n"))
		return nil
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, StateNames: []string{"c"},
		BatchSize: 8, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	key := StateKey("in", 0, 1, "t", "c", "k")
	waitFor(t, 30*time.Second, "20 increments", func() bool { return c.HGet(ctx, key, "n").Val() == "20" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, n := range seen {
		if n != int64(i) {
			t.Fatalf("reads of the counter = %v, want 0, 1, 2, … in order", seen)
		}
	}
	if v := c.HGet(context.Background(), key, "junk").Val(); v != "" {
		t.Errorf("junk = %q: effects of a reset attempt were written", v)
	}
}

// Keyed state needs one writer per key: New refuses it with ordering none.
func TestStateRefusedWithOrderingNone(t *testing.T) {
	_, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Options{Pipeline: "t", Stream: "in",
		Decoder: jsonDecoder, Handler: HandlerFunc(emitHandler), Ordering: OrderingNone, StateNames: []string{"c"}})
	if err == nil {
		t.Fatal("New with StateNames and ordering none = nil error, want one")
	}
}

// With dedupe and keyed state, a duplicate never reaches the state: not
// when it is in the same batch as its first, not while its first is in
// flight, and not after its first has committed, even with the commit
// deciding duplicates (DedupeAtCommit).
func TestStateIgnoresDuplicates(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var recs []Record
	for seq := 0; seq < 50; seq++ {
		r := Record{Key: "k", Fields: []string{"data", event("k", seq)}}
		recs = append(recs, r, r) // each event twice, back to back
	}
	produce(t, c, 1, recs)
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		st, err := m.State("c")
		if err != nil {
			return err
		}
		m.StateSet("c", "n", strconv.FormatInt(st.Int("n")+1, 10)) // read-modify-write
		return nil
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, StateNames: []string{"c"},
		DedupeWindow: time.Hour, DedupeAtCommit: true, BatchSize: 16, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 30*time.Second, "all acked", func() bool { return acked(t, c, 1) == 100 })
	// and once more after everything committed: the lookup finds them
	produce(t, c, 1, recs[:20])
	waitFor(t, 30*time.Second, "the resent ones acked", func() bool { return acked(t, c, 1) == 120 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := c.HGet(context.Background(), StateKey("in", 0, 1, "t", "c", "k"), "n").Val(); n != "50" {
		t.Fatalf("counter = %s, want 50: duplicates reached the state", n)
	}
}

// The cache folds an entry's effects into the committed state only if its
// commit wrote them; effects of entries handled after it stay applied.
func TestStateCacheDropsUnwrittenEffects(t *testing.T) {
	srv, c := newMiniClient(t)
	_ = srv
	ks := keyspace{stream: "in", n: 1, group: "t"}
	cache := newStateCache(ks, []string{"c"}, 10, time.Now)
	ctx := context.Background()
	key := StateKey("in", 0, 1, "t", "c", "k")
	c.HSet(ctx, key, "n", "10")
	mk := func() *Message {
		m := &Message{Key: "k", ks: ks, states: cache}
		m.StateIncr("c", "n", 1)
		return m
	}
	if err := cache.pin(ctx, c, []string{"k", "k", "k"}); err != nil {
		t.Fatal(err)
	}
	m1, m2, m3 := mk(), mk(), mk()
	for _, m := range []*Message{m1, m2, m3} {
		cache.apply("k", m, m.effects)
	}
	if got := cache.get("k", "c")["n"]; got != "13" {
		t.Fatalf("n with three increments pending = %s, want 13", got)
	}
	cache.release("k", m1, true)
	cache.release("k", m2, false) // the commit did not write it
	if got := cache.get("k", "c")["n"]; got != "12" {
		t.Errorf("n after one written and one dropped, one pending = %s, want 12", got)
	}
	cache.release("k", m3, true)
	if got := cache.get("k", "c")["n"]; got != "12" {
		t.Errorf("n after all committed = %s, want 12", got)
	}
}

// getField holds of its field what get holds, whatever the pending effects
// of the key's entries do to it or to other fields.
func TestStateCacheGetFieldMatchesGet(t *testing.T) {
	ks := keyspace{stream: "s", n: 1, group: "g"}
	c := newStateCache(ks, []string{"w"}, 10, time.Now)
	sk := StateKey("s", 0, 1, "g", "w", "k")
	e := &stateEntry{key: "k", base: map[string]map[string]string{"w": {"a": "1", "b": "x", "gone": "y"}}}
	e.elem = c.lru.PushFront(e)
	c.entries["k"] = e
	m := &Message{}
	c.apply("k", m, []Effect{
		{Kind: EffectHIncrBy, Key: sk, Fields: []string{"a", "2"}},
		{Kind: EffectHSet, Key: sk, Fields: []string{"c", "new", "b", "y"}},
		{Kind: EffectHDel, Key: sk, Fields: []string{"gone"}},
		{Kind: EffectHIncrBy, Key: sk, Fields: []string{"d", "5"}},
		{Kind: EffectHSet, Key: "another-key", Fields: []string{"a", "other"}},
	})
	all := c.get("k", "w")
	for _, f := range []string{"a", "b", "c", "d", "gone", "never"} {
		got, ok := c.getField("k", "w", f)[f]
		want, wok := all[f]
		if got != want || ok != wok {
			t.Errorf("getField(%s) = %q %v, get holds %q %v", f, got, ok, want, wok)
		}
	}
	if all["a"] != "3" || all["d"] != "5" || all["b"] != "y" {
		t.Errorf("get = %v", all)
	}
}
