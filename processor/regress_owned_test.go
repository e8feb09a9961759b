package processor

import (
	"context"
	"io"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// dropProxy forwards TCP to addr; when armed, it cuts the connection of
// the n-th reply that delivers entries of stream "in" (an owned read's
// MULTI/EXEC), after Redis has run it (so the entries are delivered, the
// reply lost).
type dropProxy struct {
	ln    net.Listener
	armed atomic.Int32 // cut the n-th entries reply (1 = next)
	seen  atomic.Int32
}

func newDropProxy(tb testing.TB, addr string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a test proxy
	if err != nil {
		tb.Fatal(err)
	}
	p := &dropProxy{ln: ln}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			var once sync.Once
			kill := func() { once.Do(func() { c.Close(); s.Close() }) }
			go func() { _, _ = io.Copy(s, c); kill() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if deliversEntries.Match(buf[:n]) {
							if k := p.seen.Add(1); k == p.armed.Load() {
								kill()
								return
							}
						}
						if _, err := c.Write(buf[:n]); err != nil {
							kill()
							return
						}
					}
					if err != nil {
						kill()
						return
					}
				}
			}()
		}
	}()
	return p
}

// deliversEntries matches an XREADGROUP reply with entries of stream "in".
var deliversEntries = regexp.MustCompile(`\$2\r\nin\r\n\*[1-9]`)

// One lost reply of an owned read (the connection cut after Redis ran it):
// go-redis retries by itself, and the retry used to read the NEXT batch,
// leaving the first delivered but unseen while later entries of its keys
// were processed. The read now returns such entries first.
func TestLostFencedReadReplyKeepsOrder(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const keys, per = 5, 40
	produce(t, c, 1, interleaved(keys, per))
	px, p := proxiedWorker(t, srv, 3) // the third read's reply is lost
	stop := startRun(p)
	waitFor(t, 20*time.Second, "every output", func() bool { return xlen(t, c, "out") >= keys*per })
	if px.seen.Load() < 3 {
		t.Fatalf("the proxy saw %d read replies, cut none: the test did not lose a reply", px.seen.Load())
	}
	out := xlen(t, c, "out")
	pend := pendingCount(t, c, "in")
	byKey, _ := outputsByKey(t, c)
	_ = stop()
	t.Logf("%d of %d outputs, %d entries pending, after one lost read reply", out, keys*per, pend)
	for k, seqs := range byKey {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Errorf("key %s: outputs %v: a gap, order broken", k, seqs)
				break
			}
		}
	}
	if pend > 0 {
		t.Errorf("%d entries left pending and unhandled by the partition's only owner", pend)
	}
}

// Two live processes that share a consumer name (a misconfiguration, or
// "hostname-pid" in two containers) used to take the lease from each other
// without end, every takeover adding a delivery to every pending entry
// until they were dead-lettered unhandled. Only a process's first acquire
// may replace a same-name holder (a restart).
func TestSameConsumerNameDoesNotPingPong(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const keys, per = 20, 100
	produce(t, c, 1, interleaved(keys, per))
	obs := &countingObserver{}
	slow := HandlerFunc(func(ctx context.Context, m *Message) error {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return emitHandler(ctx, m)
	})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		o := workerOptions("same", slow)
		o.Observer = obs
		p, err := New(c, o)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Run(ctx) }()
	}
	waitFor(t, 20*time.Second, "every entry", func() bool { return obs.processed.Load() >= keys*per })
	stop()
	wg.Wait()
	tok, _ := c.Get(context.Background(), tokenKey("in", 0, 1, "t")).Int()
	t.Logf("fencing token after 4s: %d (owners changed %d times); processed %d of %d; dead letters max_deliveries=%d",
		tok, tok-1, obs.processed.Load(), keys*per, obs.deadLetters(ReasonMaxDeliveries))
	if tok > 3 {
		t.Errorf("lease changed hands %d times between two live processes", tok-1)
	}
	if n := obs.deadLetters(ReasonMaxDeliveries); n != 0 {
		t.Errorf("%d entries dead-lettered as max_deliveries, want 0", n)
	}
}

// Membership runs on Redis's clock: a worker's clock cannot make a live
// worker look dead (left out of the assignment) or a dead one alive.
func TestMembershipUsesRedisClock(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	key := membersKey("in", "t")
	ttl, suspect := 1500*time.Millisecond, 600*time.Millisecond
	if _, err := heartbeatMember(ctx, c, key, "d", ttl, suspect); err != nil {
		t.Fatal(err)
	}
	score := c.ZScore(ctx, key, "d").Val()
	now := c.Time(ctx).Val()
	if left := time.Duration(int64(score)-now.UnixMilli()) * time.Millisecond; left < ttl-200*time.Millisecond || left > ttl {
		t.Errorf("membership expires %v after Redis's now, want about %v", left, ttl)
	}
	live, _ := heartbeatMember(ctx, c, key, "a", ttl, suspect)
	if len(live) != 2 {
		t.Errorf("members right after both renewed = %v, want a and d", live)
	}
	time.Sleep(suspect + 100*time.Millisecond) // d stops renewing
	live, _ = heartbeatMember(ctx, c, key, "a", ttl, suspect)
	if len(live) != 1 || live[0] != "a" {
		t.Errorf("members after d missed its heartbeats = %v, want only a", live)
	}
	time.Sleep(ttl)
	_, _ = heartbeatMember(ctx, c, key, "a", ttl, suspect)
	if c.ZScore(ctx, key, "d").Err() == nil {
		t.Error("d's membership outlived the session timeout")
	}
}

// A worker that has lost its lease can still read: its read is not fenced,
// only its commits are. Entries it reads after the owner took over wait in
// its pending list; the owner sees them at its next read, lets what it has
// in flight commit, and takes them over before anything newer, so every
// key stays in order and nothing is left pending.
func TestEntriesReadByFormerOwnerAreTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	const keys, per = 3, 40
	produce(t, c, 1, interleaved(keys, per))
	o := workerOptions("owner", HandlerFunc(func(ctx context.Context, m *Message) error {
		time.Sleep(time.Millisecond)
		return emitHandler(ctx, m)
	}))
	o.BatchSize, o.MaxInflight = 5, 10
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(p)
	waitFor(t, 10*time.Second, "the owner's first outputs", func() bool { return xlen(t, c, "out") >= 10 })
	// the former owner's late read
	stolen, err := readNew(ctx, c, "in", "t", "former-owner", 7, 0)
	if err != nil || len(stolen) == 0 {
		t.Fatalf("the former owner's read = %d entries, %v; want some", len(stolen), err)
	}
	waitFor(t, 20*time.Second, "every output", func() bool { return xlen(t, c, "out") >= keys*per })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	byKey, byID := outputsByKey(t, c)
	inOrderOnce(t, byKey)
	if len(byID) != keys*per {
		t.Errorf("%d distinct outputs, want %d", len(byID), keys*per)
	}
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("%d entries left pending", n)
	}
	t.Logf("the former owner read %d entries (from %s); all %d outputs once, in order", len(stolen), stolen[0].id, keys*per)
}

// The same for the read an idle partition makes (it waits inside the read):
// entries arrive in bursts, one reply that delivers some is lost, and the
// next read returns them before anything newer.
func TestLostWaitingReadReplyKeepsOrder(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const keys, per = 5, 40
	if err := ensureGroup(context.Background(), c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	px, p := proxiedWorker(t, srv, 2)
	stop := startRun(p)
	recs := interleaved(keys, per)
	for len(recs) > 0 {
		time.Sleep(20 * time.Millisecond) // idle between bursts
		n := min(len(recs), 7)
		produce(t, c, 1, recs[:n])
		recs = recs[n:]
	}
	waitFor(t, 20*time.Second, "every output", func() bool { return xlen(t, c, "out") >= keys*per })
	if px.seen.Load() < 2 {
		t.Fatalf("the proxy saw %d read replies, cut none", px.seen.Load())
	}
	byKey, byID := outputsByKey(t, c)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	inOrderOnce(t, byKey)
	if len(byID) != keys*per || pendingCount(t, c, "in") != 0 {
		t.Errorf("%d distinct outputs of %d, %d pending", len(byID), keys*per, pendingCount(t, c, "in"))
	}
}

// Entries delivered to this consumer's name by someone else while the
// partition waited idle (a same-named process that lost its lease, or a
// read retried by go-redis after a lost reply) come before the new ones the
// waiting read wakes up with, and are handled first.
func TestWaitingReadReturnsEntriesDeliveredToItsName(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := ensureGroup(ctx, c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	o := workerOptions("w", HandlerFunc(emitHandler))
	o.Block = 2 * time.Second
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(p)
	waitFor(t, 10*time.Second, "the partition owned", func() bool { return c.Exists(ctx, leaseKey("in", 0, 1, "t")).Val() == 1 })
	time.Sleep(200 * time.Millisecond) // waiting in its read now
	recs := interleaved(2, 6)
	// in one transaction: the worker wakes up after it, to find only the
	// fourth entry new
	pipe := c.TxPipeline()
	for _, r := range recs[:4] {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: r.Fields})
	}
	pipe.Do(ctx, "XREADGROUP", "GROUP", "t", "w", "COUNT", 3, "STREAMS", "in", ">")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	produce(t, c, 1, recs[4:])
	waitFor(t, 10*time.Second, "every output", func() bool { return xlen(t, c, "out") >= int64(len(recs)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	byKey, byID := outputsByKey(t, c)
	inOrderOnce(t, byKey)
	if len(byID) != len(recs) || pendingCount(t, c, "in") != 0 {
		t.Errorf("%d distinct outputs of %d, %d pending", len(byID), len(recs), pendingCount(t, c, "in"))
	}
}

// Reads whose replies are lost one after another deliver more entries to
// this consumer than one read returns. A read whose own unseen entries fill
// its count leaves the new ones it delivered for later reads; taken as the
// loop takes them (seen = the last entry returned), the reads return every
// entry once, in stream order. (They used to return the first batch and
// then the newest, leaving the middle pending under the owner's own name.)
func TestOwnedReadsAfterLostRepliesHaveNoGap(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	lease := leaseKey("in", 0, 1, "t")
	if err := ensureGroup(ctx, c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, lease, "f", time.Minute)
	var recs []Record
	for i := range 40 {
		recs = append(recs, Record{Key: "a", Fields: []string{"data", event("a", i)}})
	}
	produce(t, c, 1, recs)
	all, _ := c.XRange(ctx, "in", "-", "+").Result()
	pos := map[string]int{}
	for i, m := range all {
		pos[m.ID] = i
	}
	// three reads whose replies are lost: seen does not move
	for range 3 {
		if _, err := readOwned(ctx, c, "in", lease, "t", "w", 10, "f", ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	seen := ""
	for range 10 {
		r, err := readOwned(ctx, c, "in", lease, "t", "w", 10, "f", seen)
		if err != nil || r.fenced {
			t.Fatalf("read = %+v, %v", r, err)
		}
		for _, e := range r.entries {
			got = append(got, pos[e.id])
		}
		if len(r.entries) > 0 {
			seen = r.entries[len(r.entries)-1].id
		}
	}
	for i := range got {
		if got[i] != i {
			t.Fatalf("entries returned in this order: %v; want 0..39 once each", got)
		}
	}
	if len(got) != 40 {
		t.Errorf("%d entries returned, want 40: %v", len(got), got)
	}
}

// inOrderOnce checks that every key's outputs are its events 0, 1, 2, … in
// order, each once.
func inOrderOnce(t *testing.T, byKey map[string][]int) {
	t.Helper()
	for k, seqs := range byKey {
		for i := range seqs {
			if seqs[i] != i {
				t.Errorf("key %s: outputs %v: out of order or doubled", k, seqs)
				break
			}
		}
	}
}

// startRun runs p in the background; stop ends the run and returns Run's
// error.
func startRun(p *Processor) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// proxiedWorker is worker "w" (batches of 10, emitHandler) whose Redis
// connections go through a dropProxy that cuts the armed-th reply that
// delivers entries.
func proxiedWorker(t *testing.T, srv *redistest.Server, armed int32) (*dropProxy, *Processor) {
	t.Helper()
	px := newDropProxy(t, srv.Addr())
	px.armed.Store(armed)
	rdb := redis.NewClient(&redis.Options{Addr: px.ln.Addr().String(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	o := workerOptions("w", HandlerFunc(emitHandler))
	o.BatchSize, o.MaxInflight = 10, 10
	p, err := New(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	return px, p
}
