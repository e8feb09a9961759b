package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

func runFor(t *testing.T, p *Processor, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.Run(ctx)
}

// Regression tests for defects a review found; each failed before its fix.

// An entry with more fields than Lua can unpack into one XADD used to make
// the commit fail after its XACK: acked, never dead-lettered. Its dead
// letter now carries the fields as one JSON array.
func TestWideEntryIsDeadLetteredNotLost(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	// a good entry, then a 4100-pair entry without "data" (not_json), then a good one
	c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{"data", event("a", 0)}})
	var big []string
	for i := 0; i < 4100; i++ {
		big = append(big, "f"+strconv.Itoa(i), "v")
	}
	bigID := c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: big}).Val()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{"data", event("b", 0)}})

	obs := &countingObserver{}
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Group: "t", Decoder: jsonDecoder,
		Handler: HandlerFunc(emitHandler), Observer: obs, Block: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := runFor(t, p, 2*time.Second); err != nil {
		t.Logf("Run: %v", err)
	}
	pend := pendingCount(t, c, "in")
	dlq := xlen(t, c, "in:dlq")
	t.Logf("big entry %s: pending=%d dlq=%d processed=%d stale=%d dead(not_json)=%d",
		bigID, pend, dlq, obs.processed.Load(), obs.stale.Load(), obs.deadLetters(ReasonNotJSON))
	if pend == 0 && dlq == 0 {
		t.Errorf("entry %s was acked but neither dead-lettered nor left pending: LOST", bigID)
	}
}

// Two entries of one batch write one new key, one as a stream and one as a
// hash: the first wins, the second is dead-lettered (it used to be acked and
// then fail, lost, stopping the pipeline).
func TestEffectsOfTwoKindsOnOneKey(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{"data", event("a", 0)}})
	c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []string{"data", event("b", 0)}})
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		if m.Key == "a" {
			m.Emit("shared", 0, "x", "1")
		} else {
			m.SetState("shared", "x", "1")
		}
		return nil
	})
	var handled atomic.Int32
	p, _ := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Lanes: 1,
		Block: 100 * time.Millisecond, BatchSize: 2, MaxInflight: 2,
		Handler: HandlerFunc(func(ctx context.Context, m *Message) error {
			defer handled.Add(1)
			return h(ctx, m)
		})})
	// hold the first commit until both entries are handled, so they share a batch
	testHookBeforeCommit = func([]*task) {
		for handled.Load() < 2 {
			time.Sleep(time.Millisecond)
		}
	}
	defer func() { testHookBeforeCommit = nil }()
	err := runFor(t, p, 2*time.Second)
	typ := c.Type(ctx, "shared").Val()
	pend, dlq := pendingCount(t, c, "in"), xlen(t, c, "in:dlq")
	t.Logf("Run: %v; type(shared)=%s pending=%d dlq=%d", err, typ, pend, dlq)
	if pend == 0 && dlq == 0 {
		t.Errorf("entry b acked, its HSET never written, not dead-lettered: LOST (and the pipeline stopped)")
	}
}

// A lost XREADGROUP reply (entries delivered, reply not received) leaves
// entries pending for this consumer; they are re-read before anything newer,
// so per-key order holds.
type dropFirstRead struct{ dropped atomic.Bool }

func (d *dropFirstRead) DialHook(next redis.DialHook) redis.DialHook { return next }
func (d *dropFirstRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (d *dropFirstRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if strings.EqualFold(cmd.Name(), "xreadgroup") && err == nil && !d.dropped.Load() {
			if v, _ := cmd.(*redis.Cmd).Result(); v != nil {
				d.dropped.Store(true)
				e := errors.New("read tcp: i/o timeout (simulated lost reply)")
				cmd.SetErr(e)
				return e
			}
		}
		return err
	}
}

func TestLostReadReplyKeepsOrder(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	c.AddHook(&dropFirstRead{})
	var recs []Record
	for seq := 0; seq < 6; seq++ {
		recs = append(recs, Record{Key: "k", Fields: []string{"data", event("k", seq)}})
	}
	produce(t, c, 1, recs)
	obs := &countingObserver{}
	// Ordering none sends XREADGROUP itself (an owner reads through a
	// script), so the hook can drop its reply.
	p, _ := New(c, Options{Pipeline: "t", Stream: "in", Group: "t", Decoder: jsonDecoder, Ordering: OrderingNone,
		Handler: HandlerFunc(emitHandler), Observer: obs, BatchSize: 2, Block: 100 * time.Millisecond,
		ReclaimAfter: time.Second, ReclaimInterval: 200 * time.Millisecond})
	runUntil(t, p, func() bool { return obs.processed.Load() >= 6 }, 10*time.Second)
	byKey, _ := outputsByKey(t, c)
	t.Logf("outputs of k: %v", byKey["k"])
	if fmt.Sprint(byKey["k"]) != "[0 1 2 3 4 5]" {
		t.Errorf("order broken")
	}
}

// Entries a worker holds while one slow entry of their key runs are kept
// from looking idle, so another worker does not reclaim them and run them
// twice (or ahead of the slow one).
func TestEntryInFlightIsNotReclaimed(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var recs []Record
	for seq := 0; seq < 4; seq++ {
		recs = append(recs, Record{Key: "k", Fields: []string{"data", event("k", seq)}})
	}
	produce(t, c, 1, recs)
	var slept atomic.Bool
	var calls atomic.Int32
	slow := HandlerFunc(func(ctx context.Context, m *Message) error {
		calls.Add(1)
		if m.Data.(map[string]any)["seq"].(float64) == 0 {
			if slept.CompareAndSwap(false, true) {
				time.Sleep(4 * time.Second)
			}
		}
		return emitHandler(ctx, m)
	})
	mk := func(consumer string) *Processor {
		p, _ := New(c, Options{Pipeline: "t", Stream: "in", Group: "t", Consumer: consumer, Ordering: OrderingNone,
			Decoder: jsonDecoder, Handler: slow, BatchSize: 4, MaxInflight: 4, Block: 100 * time.Millisecond,
			ReclaimAfter: time.Second, ReclaimInterval: 200 * time.Millisecond})
		return p
	}
	a, b := mk("A"), mk("B")
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // A has read all 4
	go func() { defer wg.Done(); b.Run(ctx) }()
	wg.Wait()
	byKey, _ := outputsByKey(t, c)
	t.Logf("outputs of k: %v; handler calls %d for 4 entries", byKey["k"], calls.Load())
	if calls.Load() > 4 {
		t.Errorf("entries still being worked on by A were reclaimed by B and handled twice")
	}
}

// With Redis hung (SIGSTOP), Run returns soon after the hard stop: Redis
// calls get the stop's deadline (the client has ContextTimeoutEnabled).
func TestHardStopWithRedisHung(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	info := c.Info(context.Background(), "server").Val()
	var pid int
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "process_id:") {
			pid, _ = strconv.Atoi(strings.TrimPrefix(l, "process_id:"))
		}
	}
	p, _ := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder,
		Handler: HandlerFunc(emitHandler), Block: 500 * time.Millisecond, ShutdownTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	time.Sleep(700 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case <-done:
		t.Logf("Run returned %v after cancel", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Logf("Run still running 30s after cancel")
	}
	syscall.Kill(pid, syscall.SIGCONT)
	<-done
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v after cancel with ShutdownTimeout 500ms", d)
	}
}

// The committer waits for results the lanes are about to give
// (partition.handling). After a hard stop with entries stuck in handlers
// and queued behind them, nothing is left counted: a leak would make every
// later commit of the partition wait commitLinger for nothing.
func TestHandlingCountSettlesAfterHardStop(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	produce(t, c, 1, interleaved(3, 20))
	release := make(chan struct{})
	defer close(release)
	var handled atomic.Int32
	o := workerOptions("w", HandlerFunc(func(ctx context.Context, m *Message) error {
		if handled.Add(1) > 5 {
			select { // stuck until the test ends
			case <-release:
			case <-ctx.Done():
			}
			return ctx.Err()
		}
		return emitHandler(ctx, m)
	}))
	o.Lanes, o.ShutdownTimeout = 2, 200*time.Millisecond
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	_ = runFor(t, p, time.Second)
	for _, pt := range p.parts {
		if n := pt.handling.Load(); n != 0 {
			t.Errorf("partition %d: %d tasks still counted as being handled after Run returned", pt.n, n)
		}
	}
	if handled.Load() <= 5 {
		t.Fatalf("only %d handler calls: the stop did not find handlers busy", handled.Load())
	}
}

// linger waits for the results of tasks being handled, and returns without
// them when they do not come in time (a slow handler is not waited for).
func TestCommitLinger(t *testing.T) {
	p := &Processor{o: Options{BatchSize: 10}}
	pt := &partition{p: p, results: make(chan *task, 10)}
	ctx := context.Background()
	if got := pt.linger(ctx, []*task{{}}, time.Minute); len(got) != 1 {
		t.Errorf("nothing being handled: %d results, want the 1 in hand at once", len(got))
	}
	pt.handling.Store(1)
	go func() { // as a lane does, a while later
		time.Sleep(20 * time.Millisecond)
		pt.handling.Add(-1)
		pt.results <- &task{}
	}()
	if got := pt.linger(ctx, []*task{{}}, time.Minute); len(got) != 2 {
		t.Errorf("a result coming: %d in the batch, want 2", len(got))
	}
	pt.handling.Store(1) // a handler that takes longer than the wait
	if got := pt.linger(ctx, []*task{{}}, time.Millisecond); len(got) != 1 {
		t.Errorf("slow handler: %d results, want 1", len(got))
	}
}
