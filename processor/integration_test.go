package processor

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
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

// These tests pin the delivery contract (doc.go) against real redis-server
// processes that they start themselves.

// countingObserver counts commit outcomes.
type countingObserver struct {
	processed, duplicates, stale, retries atomic.Int64
	mu                                    sync.Mutex
	dead                                  map[string]int
}

func (o *countingObserver) Committed(c Commit) {
	o.processed.Add(int64(c.Processed))
	o.duplicates.Add(int64(c.Duplicates))
	o.stale.Add(int64(c.Stale))
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead == nil {
		o.dead = map[string]int{}
	}
	for r, n := range c.DeadLetters {
		o.dead[r] += n
	}
}
func (o *countingObserver) Retried(string, int, error)    { o.retries.Add(1) }
func (o *countingObserver) Handled(string, time.Duration) {}
func (o *countingObserver) deadLetters(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dead[reason]
}
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func xlen(tb testing.TB, c redis.Cmdable, stream string) int64 {
	tb.Helper()
	n, err := c.XLen(context.Background(), stream).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		tb.Fatal(err)
	}
	return n
}

// outputsByKey reads the "out" stream and returns, per key, the seq values
// in stream order, and the number of outputs per dedupe id.
func outputsByKey(tb testing.TB, c redis.Cmdable) (map[string][]int, map[string]int) {
	tb.Helper()
	return outputsOf(tb, c, "out")
}

// outputsOf is outputsByKey for any output stream.
func outputsOf(tb testing.TB, c redis.Cmdable, stream string) (map[string][]int, map[string]int) {
	tb.Helper()
	byKey, byID := map[string][]int{}, map[string]int{}
	start := "-"
	for {
		es, err := c.XRangeN(context.Background(), stream, start, "+", 10000).Result()
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range es {
			k := e.Values["key"].(string)
			seq, _ := strconv.Atoi(e.Values["seq"].(string))
			byKey[k] = append(byKey[k], seq)
			byID[e.Values["id"].(string)]++
		}
		if len(es) < 10000 {
			return byKey, byID
		}
		start = "(" + es[len(es)-1].ID
	}
}

// checkExactlyInOrder fails unless every key 0..keys-1 has outputs 0..per-1 in order.
func checkExactlyInOrder(tb testing.TB, byKey map[string][]int, keys, per int) {
	tb.Helper()
	bad := 0
	for k := 0; k < keys; k++ {
		key := "k" + strconv.Itoa(k)
		got := byKey[key]
		ok := len(got) == per
		for i := 0; ok && i < per; i++ {
			ok = got[i] == i
		}
		if !ok {
			if bad < 5 {
				tb.Errorf("outputs of %s = %v, want 0..%d in order, each once", key, got, per-1)
			}
			bad++
		}
	}
	if bad > 0 || len(byKey) != keys {
		tb.Fatalf("%d of %d keys wrong; %d keys have outputs", bad, keys, len(byKey))
	}
}

// interleaved returns per events for each of keys keys "k0".."k<keys-1>",
// in rounds: every key's event 0, then every key's event 1, and so on.
func interleaved(keys, per int) []Record {
	recs := make([]Record, 0, keys*per)
	for seq := 0; seq < per; seq++ {
		for k := 0; k < keys; k++ {
			key := "k" + strconv.Itoa(k)
			recs = append(recs, Record{Key: key, Fields: []string{"data", event(key, seq)}})
		}
	}
	return recs
}

func produce(tb testing.TB, c redis.UniversalClient, partitions int, recs []Record) {
	tb.Helper()
	p := NewProducer(c, "in", partitions, 0)
	for i := 0; i < len(recs); i += 1000 {
		if _, err := p.Send(context.Background(), recs[i:min(i+1000, len(recs))]); err != nil {
			tb.Fatal(err)
		}
	}
}

func pendingCount(tb testing.TB, c redis.Cmdable, stream string) int64 {
	tb.Helper()
	p, err := c.XPending(context.Background(), stream, "t").Result()
	if isNoGroup(err) {
		return 0 // the worker has not created the group yet
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p.Count
}

// 3a: 5,000 keys × 40 events over 4 partitions and 32 lanes, with random
// handler delays and injected transient failures: every key's outputs come
// out in input order, none missing, none twice.
func TestOrderUnderFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 events on a real redis-server")
	}
	testOrderUnderFailures(t, redistest.Start(t).Client(t))
}

func testOrderUnderFailures(t *testing.T, c redis.UniversalClient) {
	const keys, per, partitions = 5000, 40, 4
	recs := interleaved(keys, per)
	produce(t, c, partitions, recs)

	obs := &countingObserver{}
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		r := rand.IntN(1000)
		switch {
		case r < 30: // 3% fail transiently and are retried in place
			return errors.New("injected transient failure")
		case r < 80: // 5% are slow
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
		return emitHandler(ctx, m)
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Partitions: partitions, Lanes: 32,
		Decoder: jsonDecoder, Handler: h, Observer: obs, DedupeWindow: time.Hour,
		MaxAttempts: 20, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Block: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runUntil(t, p, func() bool { return obs.processed.Load() >= keys*per }, 3*time.Minute)
	t.Logf("%d events in %v (%.0f/s, race detector on: %v), %d retries",
		keys*per, time.Since(start).Round(time.Millisecond), float64(keys*per)/time.Since(start).Seconds(), raceEnabled, obs.retries.Load())

	byKey, _ := outputsByKey(t, c)
	checkExactlyInOrder(t, byKey, keys, per)
	if obs.retries.Load() == 0 {
		t.Error("no retries happened; the failure injection did not work")
	}
	for pt := 0; pt < partitions; pt++ {
		if n := pendingCount(t, c, PartitionStream("in", pt, partitions)); n != 0 {
			t.Errorf("partition %d has %d pending, want 0", pt, n)
		}
	}
	if n := xlen(t, c, "in:dlq"); n != 0 {
		t.Errorf("dead letters = %d, want 0", n)
	}
}

// 3b: an id published three times is processed once, whether the copies
// are in flight together or arrive after the first was committed.
func TestDedupeSameID(t *testing.T) {
	testDedupeSameID(t, redistest.Start(t).Client(t))
	t.Run("at commit only", func(t *testing.T) {
		testDedupeSameID(t, redistest.Start(t).Client(t), func(o *Options) { o.DedupeAtCommit = true })
	})
}

func testDedupeSameID(t *testing.T, c redis.UniversalClient, opts ...func(*Options)) {
	obs := &countingObserver{}
	var handled atomic.Int64
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		handled.Add(1)
		return emitHandler(ctx, m)
	})
	o := workerOptions("c1", h)
	o.Observer = obs
	for _, f := range opts {
		f(&o)
	}
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	same := event("a", 1)
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", same}}, {Key: "a", Fields: []string{"data", same}},
		{Key: "b", Fields: []string{"data", event("b", 1)}}, {Key: "a", Fields: []string{"data", same}}})
	runUntil(t, p, func() bool { return obs.processed.Load()+obs.duplicates.Load() == 4 }, 10*time.Second)

	// A fourth copy after the first was committed is caught before the
	// handler, or with DedupeAtCommit by the commit, after it.
	before := handled.Load()
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", same}}})
	runUntil(t, p, func() bool { return obs.duplicates.Load() == 3 }, 10*time.Second)

	_, byID := outputsByKey(t, c)
	if byID["a-1"] != 1 || byID["b-1"] != 1 {
		t.Errorf("outputs per id = %v, want a-1 and b-1 once each", byID)
	}
	if got := obs.processed.Load(); got != 2 {
		t.Errorf("processed = %d, want 2", got)
	}
	switch got := handled.Load() - before; {
	case o.DedupeAtCommit && got != 1:
		t.Errorf("with DedupeAtCommit the handler ran %d times for the late copy, want 1 (no lookup before it)", got)
	case !o.DedupeAtCommit && got != 0:
		t.Errorf("handler ran %d times for a copy that was already committed, want 0", got)
	}
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// 3b: a worker that dies after handling an entry but before committing it
// leaves no effect; the redelivered entry produces its output once.
func TestCrashBetweenHandleAndCommit(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var recs []Record
	for i := 0; i < 20; i++ {
		recs = append(recs, Record{Key: "k" + strconv.Itoa(i%3), Fields: []string{"data", event("k"+strconv.Itoa(i%3), i)}})
	}
	produce(t, c, 1, recs)
	marker := filepath.Join(t.TempDir(), "crashed")
	env := []string{"EDDY_TEST_MARKER=" + marker, "EDDY_TEST_TARGET=k1-7"}

	w1 := startWorker(t, srv.Addr(), "crash-before-commit", "w1", env...)
	if code := w1.exitCode(t, 20*time.Second); code != 3 {
		t.Fatalf("first worker exit code = %d, want 3 (crash before commit); stderr:\n%s", code, w1.stderr.String())
	}
	if _, byID := outputsByKey(t, c); byID["k1-7"] != 0 {
		t.Fatalf("outputs of k1-7 after the crash = %d, want 0 (nothing of an uncommitted entry)", byID["k1-7"])
	}
	if pendingCount(t, c, "in") == 0 {
		t.Fatal("nothing pending after the crash; the crash did not land between handling and commit")
	}

	w2 := startWorker(t, srv.Addr(), "crash-before-commit", "w1", env...) // the same consumer restarts
	waitFor(t, 20*time.Second, "all 20 outputs", func() bool { return xlen(t, c, "out") >= 20 })
	_ = w2.cmd.Process.Signal(syscall.SIGTERM)
	if code := w2.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("second worker exit code = %d, want 0; stderr:\n%s", code, w2.stderr.String())
	}
	_, byID := outputsByKey(t, c)
	for i := 0; i < 20; i++ {
		id := "k" + strconv.Itoa(i%3) + "-" + strconv.Itoa(i)
		if byID[id] != 1 {
			t.Errorf("outputs of %s = %d, want 1", id, byID[id])
		}
	}
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// 3c: a worker killed with SIGKILL mid-batch leaves pending entries; another
// worker takes them over after ReclaimAfter and completes them. Nothing is
// lost and nothing doubled.
func TestReclaimAfterSIGKILL(t *testing.T) {
	srv := redistest.Start(t)
	testReclaimAfterSIGKILL(t, srv.Client(t), "EDDY_TEST_REDIS="+srv.Addr(), false)
}

// testReclaimAfterSIGKILL runs worker processes that reach Redis as env
// says (EDDY_TEST_REDIS=addr or EDDY_TEST_CLUSTER=addr,addr,…). With
// cluster, "out" lives in another slot than the partition: it is written
// before the commit, at least once, and checked after dedupe by event id,
// as a downstream consumer would; "{in}:out" shares the partition's slot
// and must come out exactly once either way.
func testReclaimAfterSIGKILL(t *testing.T, c redis.UniversalClient, env string, cluster bool) {
	const keys, per = 50, 40
	recs := interleaved(keys, per)
	produce(t, c, 1, recs)

	a := startWorker(t, "", "slow", "worker-a", env)
	waitFor(t, 30*time.Second, "worker a to commit some entries", func() bool { return xlen(t, c, "out") >= 200 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.exitCode(t, 5*time.Second)
	left := pendingCount(t, c, "in")
	if left == 0 {
		t.Fatal("no entries pending after SIGKILL; the kill did not land mid-batch")
	}
	done := xlen(t, c, "out")
	t.Logf("killed worker a after %d outputs with %d entries pending", done, left)

	b := startWorker(t, "", "slow", "worker-b", env)
	waitFor(t, 60*time.Second, "worker b to finish everything", func() bool { return xlen(t, c, "out") >= keys*per })
	waitFor(t, 10*time.Second, "nothing pending", func() bool { return pendingCount(t, c, "in") == 0 })
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("worker b exit code = %d; stderr:\n%s", code, b.stderr.String())
	}
	sameSlot, _ := outputsOf(t, c, "{in}:out")
	checkExactlyInOrder(t, sameSlot, keys, per)
	byKey, byID := outputsByKey(t, c)
	if cluster {
		doubled := 0
		for _, n := range byID {
			doubled += n - 1
		}
		t.Logf("outputs in another slot written twice across the kill: %d (at least once, by design)", doubled)
		for k, seqs := range byKey { // what a consumer deduplicating by id sees
			seen := map[int]bool{}
			var first []int
			for _, s := range seqs {
				if !seen[s] {
					seen[s] = true
					first = append(first, s)
				}
			}
			byKey[k] = first
		}
	}
	checkExactlyInOrder(t, byKey, keys, per)
	if n := xlen(t, c, "in:dlq"); n != 0 {
		t.Errorf("dead letters = %d, want 0", n)
	}
}

// 3d: an entry whose handler crashes the process every time is
// dead-lettered after MaxAttempts deliveries, and the pipeline goes on.
func TestPoisonEntryDeadLettered(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var recs []Record
	for i := 0; i < 30; i++ {
		key := "k" + strconv.Itoa(i%4)
		ev := event(key, i)
		if i == 10 {
			ev = `{"k":"k2","id":"poison","seq":10,"poison":true}`
		}
		recs = append(recs, Record{Key: key, Fields: []string{"data", ev, "origin", "test"}})
	}
	produce(t, c, 1, recs)

	crashes := 0
	for run := 0; run < 8; run++ {
		w := startWorker(t, srv.Addr(), "poison", "w1")
		exited := false
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !exited && xlen(t, c, "out") < 29 {
			select {
			case <-w.exited:
				exited = true
			case <-time.After(20 * time.Millisecond):
			}
		}
		if exited {
			if code := w.exitCode(t, time.Second); code != 2 {
				t.Fatalf("worker exit code = %d, want 2 (poison crash); stderr:\n%s", code, w.stderr.String())
			}
			crashes++
			continue
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		if code := w.exitCode(t, 10*time.Second); code != 0 {
			t.Fatalf("worker exit code = %d, want 0; stderr:\n%s", code, w.stderr.String())
		}
		break
	}
	if crashes != 3 {
		t.Errorf("crashes = %d, want 3 (max_attempts)", crashes)
	}
	if n := xlen(t, c, "out"); n != 29 {
		t.Errorf("outputs = %d, want 29: the pipeline goes on after the poison entry", n)
	}
	dl, err := c.XRange(context.Background(), "in:dlq", "-", "+").Result()
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters = %v (%v), want 1", dl, err)
	}
	v := dl[0].Values
	if v["eddy.reason"] != ReasonMaxDeliveries || v["origin"] != "test" || !strings.Contains(v["data"].(string), `"poison":true`) {
		t.Errorf("dead letter = %v, want reason %s with the original fields", v, ReasonMaxDeliveries)
	}
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// 3e: bad input is dead-lettered at once, with its reason and its original
// fields intact and in order.
func TestBadInputDeadLetteredAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	obs := &countingObserver{}
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		if _, ok := m.Data.(map[string]any)["amount"].(string); ok {
			return Permanentf(ReasonInvalid, "amount: want a number")
		}
		return emitHandler(ctx, m)
	})
	o := workerOptions("c1", h)
	o.Observer, o.MaxEventBytes = obs, 512
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		fields []string
		reason string
	}{
		{[]string{"data", "{not json", "z", "1"}, ReasonNotJSON},
		{[]string{"other", "x"}, ReasonNotJSON},
		{[]string{"data", `{"id":"x"}`}, ReasonMissingKey},
		{[]string{"data", `{"k":"a","id":"big","pad":"` + strings.Repeat("x", 600) + `"}`}, ReasonTooLarge},
		{[]string{"data", `{"k":"a","id":"s","amount":"12"}`}, ReasonInvalid},
		{[]string{"data", event("a", 1)}, ""},
	}
	ctx := context.Background()
	for _, tc := range cases {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: tc.fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	runUntil(t, p, func() bool { return xlen(t, c, "in:dlq") == 5 && xlen(t, c, "out") == 1 }, 10*time.Second)
	raw, err := c.Do(ctx, "XRANGE", "in:dlq", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	dl, err := parseEntries(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dl {
		tc := cases[i]
		if got := strings.Join(d.fields[:len(tc.fields)], "|"); got != strings.Join(tc.fields, "|") {
			t.Errorf("dead letter %d fields start %q, want the original %q", i, got, strings.Join(tc.fields, "|"))
		}
		m := &Message{Fields: d.fields}
		reason, _ := m.Field("eddy.reason")
		attempts, _ := m.Field("eddy.attempts")
		errText, _ := m.Field("eddy.error")
		if reason != tc.reason || attempts != "1" || errText == "" {
			t.Errorf("dead letter %d: reason %q attempts %q error %q, want reason %q at attempt 1 with an error", i, reason, attempts, errText, tc.reason)
		}
		for _, f := range []string{"eddy.stream", "eddy.id", "eddy.pipeline", "eddy.consumer"} {
			if v, ok := m.Field(f); !ok || v == "" {
				t.Errorf("dead letter %d: %s missing", i, f)
			}
		}
	}
	if obs.retries.Load() != 0 {
		t.Errorf("retries = %d, want 0: bad input is never retried", obs.retries.Load())
	}
}

// 3f: SIGTERM under load: the worker finishes and commits what is in flight,
// exits 0 within the shutdown timeout; a hard stop leaves the rest pending
// for the next worker. Nothing is lost either way.
func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		timeout    time.Duration
	}{
		{"soft", "slow", 5 * time.Second},
		{"hard", "stuck", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			c := srv.Client(t)
			var recs []Record
			for i := 0; i < 3000; i++ {
				key := "k" + strconv.Itoa(i%100)
				recs = append(recs, Record{Key: key, Fields: []string{"data", event(key, i/100)}})
			}
			produce(t, c, 1, recs)
			w := startWorker(t, srv.Addr(), tc.mode, "w1", "EDDY_TEST_SHUTDOWN="+tc.timeout.String())
			waitFor(t, 20*time.Second, "work in flight", func() bool { return pendingCount(t, c, "in") > 0 })
			sent := time.Now()
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
			if code := w.exitCode(t, tc.timeout+3*time.Second); code != 0 {
				t.Fatalf("exit code = %d, want 0; stderr:\n%s", code, w.stderr.String())
			}
			took := time.Since(sent)
			// Block (100ms) bounds the read in progress; allow a second of slack.
			if took > tc.timeout+time.Second {
				t.Errorf("exit took %v, want within shutdown_timeout %v", took, tc.timeout)
			}
			left := pendingCount(t, c, "in")
			t.Logf("exited %v after SIGTERM; %d outputs, %d left pending", took.Round(time.Millisecond), xlen(t, c, "out"), left)
			if tc.mode == "slow" && left != 0 {
				t.Errorf("pending after a soft stop = %d, want 0", left)
			}
			if tc.mode == "stuck" && left == 0 {
				t.Errorf("pending after a hard stop = 0, want the abandoned entries")
			}
			// The next worker (a healthy one) finishes the rest: nothing lost.
			w2 := startWorker(t, srv.Addr(), "slow", "w1")
			waitFor(t, 60*time.Second, "all outputs", func() bool { return xlen(t, c, "out") >= 3000 })
			_ = w2.cmd.Process.Signal(syscall.SIGTERM)
			w2.exitCode(t, 10*time.Second)
			byKey, _ := outputsByKey(t, c)
			checkExactlyInOrder(t, byKey, 100, 30)
		})
	}
}

// A Redis that goes away (SIGKILL) and comes back (same port, its AOF
// intact): the worker retries reads and commits, logs, and finishes;
// nothing is lost, doubled or reordered.
func TestRedisGoesAway(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	c := srv.Client(t)
	const keys, per = 20, 100
	recs := interleaved(keys, per)
	produce(t, c, 1, recs)
	obs := &countingObserver{}
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		time.Sleep(200 * time.Microsecond)
		return emitHandler(ctx, m)
	})
	o := workerOptions("c1", h)
	o.Observer, o.BatchSize = obs, 20
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 20*time.Second, "some progress", func() bool { return obs.processed.Load() >= 300 })
	srv.Kill()
	time.Sleep(500 * time.Millisecond)
	srv.Restart(t)
	waitFor(t, 60*time.Second, "all entries after the restart", func() bool {
		n, err := c.XLen(context.Background(), "out").Result()
		return err == nil && n >= keys*per
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	byKey, _ := outputsByKey(t, c)
	checkExactlyInOrder(t, byKey, keys, per)
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}
