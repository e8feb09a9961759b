package processor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// owners returns the consumer holding each partition's lease ("" if none).
func owners(tb testing.TB, c redis.Cmdable, partitions int) []string {
	tb.Helper()
	out := make([]string, partitions)
	for p := range out {
		v, _ := c.Get(context.Background(), leaseKey("in", p, partitions, "t")).Result()
		out[p], _, _ = strings.Cut(v, "/")
	}
	return out
}

// A worker paused (SIGSTOP) past its lease wakes up to find its partition
// owned by another worker: its late commit (or read) is rejected by the
// fence, the new owner finishes its entries, and every key's outputs are
// complete, once each and in order.
func TestFencingRejectsAPausedWorker(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const keys, per = 40, 50
	produce(t, c, 1, interleaved(keys, per))

	a := startWorker(t, srv.Addr(), "slow", "worker-a", "EDDY_TEST_LOG=1")
	waitFor(t, 20*time.Second, "worker a to own the partition and commit", func() bool { return xlen(t, c, "out") >= 100 })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	b := startWorker(t, srv.Addr(), "slow", "worker-b", "EDDY_TEST_LOG=1")
	waitFor(t, 20*time.Second, "worker b to own the partition", func() bool { return owners(t, c, 1)[0] == "worker-b" })
	took := time.Since(paused)
	waitFor(t, 20*time.Second, "worker b to commit", func() bool { return xlen(t, c, "out") >= 300 })
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every output", func() bool { return xlen(t, c, "out") >= keys*per })
	waitFor(t, 10*time.Second, "the paused worker to notice", func() bool {
		return strings.Contains(a.stderr.String(), "partition_lease_lost")
	})
	for _, w := range []*worker{a, b} {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		if code := w.exitCode(t, 10*time.Second); code != 0 {
			t.Errorf("exit code = %d; log:\n%s", code, w.stderr.String())
		}
	}
	t.Logf("worker b owned the partition %v after worker a was paused (session timeout 1.5s)", took.Round(time.Millisecond))
	for _, l := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(l, "fenced") || strings.Contains(l, "lease_lost") {
			t.Logf("paused worker: %s", l)
		}
	}
	if !strings.Contains(a.stderr.String(), "commit_fenced") && !strings.Contains(a.stderr.String(), `"noticed_at":"read"`) &&
		!strings.Contains(a.stderr.String(), `"noticed_at":"renew"`) {
		t.Errorf("the paused worker's log shows no fenced commit, read or renewal:\n%s", a.stderr.String())
	}
	byKey, _ := outputsByKey(t, c)
	checkExactlyInOrder(t, byKey, keys, per)
}

// Partitions spread evenly over the workers; when one stops gracefully it
// hands its partitions over at once, without waiting for its leases to
// expire.
func TestRebalanceOnJoinAndLeave(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const partitions = 6
	obs := &ownedObserver{owned: map[int]bool{}}
	newWorker := func(name string) *Processor {
		o := workerOptions(name, HandlerFunc(emitHandler))
		if name == "a" {
			o.Observer = obs
		}
		o.Partitions, o.SessionTimeout = partitions, time.Minute // only a graceful hand-off can be fast
		p, err := New(c, o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	count := func(own []string, name string) int {
		n := 0
		for _, o := range own {
			if o == name {
				n++
			}
		}
		return n
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopA()
	defer stopB()
	var wg sync.WaitGroup
	run := func(ctx context.Context, p *Processor) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	run(ctxA, newWorker("a"))
	waitFor(t, 10*time.Second, "a to own everything", func() bool { return count(owners(t, c, partitions), "a") == partitions })
	run(ctxB, newWorker("b"))
	waitFor(t, 10*time.Second, "an even split", func() bool {
		own := owners(t, c, partitions)
		return count(own, "a") == 3 && count(own, "b") == 3
	})
	waitFor(t, 5*time.Second, "a's observer to see 3 partitions owned", func() bool { return obs.count() == 3 })
	// Events keep flowing to every partition after the rebalance.
	var recs []Record
	for i := 0; i < 300; i++ {
		recs = append(recs, Record{Key: "k" + strconv.Itoa(i), Fields: []string{"data", event("k"+strconv.Itoa(i), 0)}})
	}
	produce(t, c, partitions, recs)
	waitFor(t, 10*time.Second, "all outputs", func() bool { return xlen(t, c, "out") == 300 })

	left := time.Now()
	stopA()
	waitFor(t, 10*time.Second, "b to own everything", func() bool { return count(owners(t, c, partitions), "b") == partitions })
	if took := time.Since(left); took > 5*time.Second {
		t.Errorf("hand-off after a graceful stop took %v; want well under the 1m session timeout", took)
	} else {
		t.Logf("hand-off after a graceful stop took %v (session timeout 1m)", took.Round(time.Millisecond))
	}
	stopB()
	wg.Wait()
	if n := obs.count(); n != 0 {
		t.Errorf("a's observer sees %d partitions owned after a stopped, want 0", n)
	}
}

// ownedObserver tracks OwnershipObserver calls.
type ownedObserver struct {
	countingObserver
	mu    sync.Mutex
	owned map[int]bool
	lost  int
}

func (o *ownedObserver) Owned(_ string, p int, owned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owned[p] = owned
}

func (o *ownedObserver) LeaseLost(string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lost++
}

func (o *ownedObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, v := range o.owned {
		if v {
			n++
		}
	}
	return n
}

// The fence itself, step by step: once another worker holds the lease, a
// commit, read or claim with the old fence writes, reads and claims
// nothing.
func TestStaleFenceIsRejected(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	lease, token := leaseKey("in", 0, 1, "t"), tokenKey("in", 0, 1, "t")
	if err := ensureGroup(ctx, c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", event("a", 0)}}, {Key: "a", Fields: []string{"data", event("a", 1)}}})

	old, _, err := acquireLease(ctx, c, lease, token, "zombie", "i1", 200*time.Millisecond, true)
	if err != nil || old == "" {
		t.Fatalf("acquireLease = %q, %v", old, err)
	}
	r, err := readOwned(ctx, c, "in", lease, "t", "zombie", 1, old, "0-0")
	if err != nil || r.fenced || len(r.entries) != 1 || r.foreign != 0 {
		t.Fatalf("readOwned with a valid fence = %+v, %v; want one entry", r, err)
	}
	if _, holder, _ := acquireLease(ctx, c, lease, token, "b", "i2", time.Minute, true); holder != old {
		t.Fatalf("another worker took a held lease (holder %q)", holder)
	}
	time.Sleep(300 * time.Millisecond) // the zombie's lease expires
	fresh, _, err := acquireLease(ctx, c, lease, token, "b", "i2", time.Minute, true)
	if err != nil || fresh == "" || fresh == old {
		t.Fatalf("acquireLease after expiry = %q, %v; want a new fence", fresh, err)
	}
	if !strings.HasSuffix(fresh, "/2") {
		t.Errorf("new fence %q, want token 2", fresh)
	}

	// The zombie's late commit of the entry it read.
	var a commitArgs
	a.reset("in", "in:dlq", lease, old, "t", "", nil, 0, 0)
	a.processed(r.entries[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}})
	reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
	if err != nil || reply != "!fenced" {
		t.Fatalf("commit with a stale fence = %q, %v; want !fenced", reply, err)
	}
	if n := xlen(t, c, "out"); n != 0 {
		t.Errorf("a fenced commit wrote %d outputs", n)
	}
	if n := pendingCount(t, c, "in"); n != 1 {
		t.Errorf("pending after a fenced commit = %d, want the entry still pending", n)
	}
	if r, _ := readOwned(ctx, c, "in", lease, "t", "zombie", 10, old, r.entries[0].id); !r.fenced || len(r.entries) != 0 {
		t.Errorf("a read with a stale fence = %+v, want fenced and no entries", r)
	}
	// That read took the second entry all the same; the new owner sees it.
	if r, err := readOwned(ctx, c, "in", lease, "t", "b", 10, fresh, "0-0"); err != nil || r.fenced || r.foreign != 2 || len(r.entries) != 0 {
		t.Errorf("the new owner's read = %+v, %v; want both entries pending for another consumer", r, err)
	}
	if r, _ := fencedClaim(ctx, c, "in", lease, "t", "zombie", "0-0", old); !r.fenced {
		t.Error("a claim with a stale fence was not fenced")
	}
	if ok, _ := renewLease(ctx, c, lease, old, time.Minute); ok {
		t.Error("a stale fence renewed the lease")
	}

	// The new owner takes the zombie's entry over and commits it.
	cl, err := fencedClaim(ctx, c, "in", lease, "t", "b", "0-0", fresh)
	if err != nil || cl.fenced || len(cl.entries) != 1 || cl.entries[0].deliveries != 2 {
		t.Fatalf("new owner's claim = %+v, %v; want the entry, delivered twice", cl, err)
	}
	a.reset("in", "in:dlq", lease, fresh, "t", "", nil, 0, 0)
	a.processed(cl.entries[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}})
	if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != "p" {
		t.Fatalf("the owner's commit = %q, %v; want p", reply, err)
	}
}

// The dry run that precedes a commit on Redis Cluster answers as the commit
// would: a repeated id in one batch is stale the second time, and a missing
// group makes every entry stale instead of an error retried forever.
func TestDryRunAgreesWithCommit(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := ensureGroup(ctx, c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", event("a", 0)}}})
	es, _ := readNew(ctx, c, "in", "t", "w", 10, 10*time.Millisecond)
	build := func(dry bool) *commitArgs {
		var a commitArgs
		a.reset("in", "in:dlq", leaseKey("in", 0, 1, "t"), "", "t", "", nil, 0, 0)
		a.processed(es[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}})
		a.processed(es[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}})
		a.dryRun(dry)
		return &a
	}
	a := build(true)
	dry, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
	if err != nil || dry != "ps" {
		t.Fatalf("dry run = %q, %v; want ps", dry, err)
	}
	if n := xlen(t, c, "out"); n != 0 {
		t.Errorf("a dry run wrote %d outputs", n)
	}
	a = build(false)
	if real, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || real != dry {
		t.Errorf("commit = %q, %v; want the dry run's %q", real, err, dry)
	}
	c.Del(ctx, "in")
	a = build(true)
	if dry, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || dry != "ss" {
		t.Errorf("dry run without the group = %q, %v; want ss", dry, err)
	}
}
