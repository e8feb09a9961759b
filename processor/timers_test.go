package processor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// timerEvent is an event that asks its key's handler to set timer name,
// due at due.
func timerEvent(key, name string, seq int, due time.Time) Record {
	return Record{Key: key, Fields: []string{"data",
		fmt.Sprintf(`{"k":%q,"id":"%s-%d","seq":%d,"timer":%q,"due":%d}`, key, key, seq, seq, name, due.UnixMilli())}}
}

// Done-when 3 of the state issue: 10,000 timers across 8 partitions, set
// while workers are killed and rebalanced: every timer fires exactly once,
// never before it is due, and in due order per key. The lateness of the
// firings (commit time less due time) is logged, and separately that of
// timers on partitions that receive nothing more, which should be about
// one timer tick.
func TestTimersFireExactlyOnceUnderChaos(t *testing.T) {
	keys, per, partitions := 1000, 10, 8
	if testing.Short() {
		keys = 100
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	env := []string{"EDDY_TEST_PARTITIONS=" + strconv.Itoa(partitions)}
	a := startWorker(t, srv.Addr(), "timers", "A", env...)
	b := startWorker(t, srv.Addr(), "timers", "B", env...)

	// Every timer is due after the last event that sets one has been
	// produced, in an order per key that differs from the order they are
	// set in, so that "in due order" is the engine's doing.
	rng := rand.New(rand.NewPCG(1, 2))
	firstDue := time.Now().Add(8 * time.Second)
	var recs []Record
	for k := 0; k < keys; k++ {
		key := "k" + strconv.Itoa(k)
		for i, off := range rng.Perm(per) {
			due := firstDue.Add(time.Duration(off)*400*time.Millisecond + time.Duration(rng.IntN(300))*time.Millisecond)
			recs = append(recs, timerEvent(key, "t"+strconv.Itoa(i), i, due))
		}
	}
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	// Events of one key keep their relative order whatever the shuffle:
	// each sets a timer of its own name.
	chunk := len(recs) / 4
	produce(t, c, partitions, recs[:chunk])
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	a.exitCode(t, 10*time.Second)
	startWorker(t, srv.Addr(), "timers", "A", env...)
	produce(t, c, partitions, recs[chunk:2*chunk])
	cw := startWorker(t, srv.Addr(), "timers", "C", env...) // 2 → 3
	produce(t, c, partitions, recs[2*chunk:3*chunk])
	_ = b.cmd.Process.Signal(syscall.SIGTERM) // 3 → 2
	produce(t, c, partitions, recs[3*chunk:])
	if time.Until(firstDue) < time.Second {
		t.Logf("warning: events produced %v after the first due time; the machine is slow", -time.Until(firstDue))
	}
	// Once firing has begun, kill another worker.
	waitFor(t, 30*time.Second, "firings to begin", func() bool { return xlen(t, c, "{in}:fired") > 0 })
	_ = cw.cmd.Process.Signal(syscall.SIGKILL)
	cw.exitCode(t, 10*time.Second)
	total := int64(keys * per)
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d firings", total), func() bool { return xlen(t, c, "{in}:fired") >= total })

	// Idle partitions: new timers with no entries after them fire within
	// about a tick of due (logged, not asserted: a timing).
	idleDue := time.Now().Add(1500 * time.Millisecond)
	var idle []Record
	for k := 0; k < 50; k++ {
		idle = append(idle, timerEvent("idle"+strconv.Itoa(k), "once", 0, idleDue.Add(time.Duration(k)*10*time.Millisecond)))
	}
	produce(t, c, partitions, idle)
	waitFor(t, time.Minute, "idle firings", func() bool { return xlen(t, c, "{in}:fired") >= total+int64(len(idle)) })
	// Anything doubled would show up now, after a while with nothing due.
	time.Sleep(500 * time.Millisecond)

	es, err := c.XRange(ctx, "{in}:fired", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	lastDue := map[string]int64{}
	var late, idleLate []time.Duration
	bad := 0
	for _, e := range es {
		key, name := e.Values["key"].(string), e.Values["name"].(string)
		due, _ := strconv.ParseInt(e.Values["due"].(string), 10, 64)
		at, _ := strconv.ParseInt(e.Values["at"].(string), 10, 64)
		committed := idTime(e.ID).UnixMilli()
		count[key+"/"+name]++
		if at < due {
			t.Errorf("%s/%s ran at %d, before it was due at %d", key, name, at, due)
		}
		if due < lastDue[key] {
			if bad < 5 {
				t.Errorf("%s/%s due %d fired after a timer of its key due %d", key, name, due, lastDue[key])
			}
			bad++
		}
		lastDue[key] = max(lastDue[key], due)
		d := time.Duration(committed-due) * time.Millisecond
		if len(key) > 4 && key[:4] == "idle" {
			idleLate = append(idleLate, d)
		} else {
			late = append(late, d)
		}
	}
	for k := 0; k < keys; k++ {
		for i := 0; i < per; i++ {
			if n := count["k"+strconv.Itoa(k)+"/t"+strconv.Itoa(i)]; n != 1 {
				if bad < 10 {
					t.Errorf("timer k%d/t%d fired %d times, want once", k, i, n)
				}
				bad++
			}
		}
	}
	if len(count) != keys*per+len(idle) {
		t.Errorf("%d distinct timers fired, want %d", len(count), keys*per+len(idle))
	}
	if bad > 0 {
		t.Fatalf("%d timers wrong", bad)
	}
	for p := 0; p < partitions; p++ {
		ks := keyspace{stream: "in", p: p, n: partitions, group: "t"}
		tk := timerKeysOf(ks)
		if n := c.ZCard(ctx, tk.processing).Val() + c.HLen(ctx, tk.data).Val(); n != 0 {
			t.Errorf("partition %d: %d timers left after all fired", p, n)
		}
	}
	t.Logf("%d timers, each fired once in due order per key; lateness under chaos p50 %v p99 %v max %v; on idle partitions p50 %v p99 %v max %v (tick 50ms)",
		keys*per, pct(late, 50), pct(late, 99), pct(late, 100), pct(idleLate, 50), pct(idleLate, 99), pct(idleLate, 100))
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// With a backlog of due timers (many more than a batch), each timer's
// handler runs once: a timer that a read lists just before its firing
// commits is not dispatched again.
func TestTimerHandledOnceUnderBacklog(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const n = 3000
	var mu sync.Mutex
	calls := map[string]int{}
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if m.Timer != nil {
			mu.Lock()
			calls[m.Timer.Key+"/"+m.Timer.Name]++
			mu.Unlock()
			m.Emit("{in}:fired", 0, "k", m.Timer.Key)
			return nil
		}
		m.SetTimer("t", time.Now().Add(-time.Second), "") // due at once
		return nil
	})
	var recs []Record
	for k := 0; k < n; k++ {
		key := "k" + strconv.Itoa(k)
		recs = append(recs, Record{Key: key, Fields: []string{"data", event(key, 0)}})
	}
	produce(t, c, 1, recs)
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, BatchSize: 16,
		Block: 20 * time.Millisecond, TimerTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, time.Minute, "every timer fired", func() bool { return xlen(t, c, "{in}:fired") >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	twice := 0
	for id, k := range calls {
		if k != 1 {
			if twice < 5 {
				t.Errorf("timer %s handled %d times", id, k)
			}
			twice++
		}
	}
	if twice > 0 || len(calls) != n {
		t.Fatalf("%d of %d timers handled more than once; %d handled", twice, n, len(calls))
	}
}

// A timer whose data is gone (a hand edit, an eviction) cannot fire: it is
// dead-lettered with what is known of it and removed, and the timers
// behind it fire.
func TestMalformedTimerDeadLettered(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	tk := timerKeysOf(keyspace{stream: "in", n: 1, group: "t"})
	past := float64(time.Now().Add(-time.Minute).UnixMilli())
	c.ZAdd(ctx, tk.processing, redis.Z{Score: past, Member: timerMember("k", "broken")})
	good := TimerSpec{Key: "k", Name: "good", At: time.Now().Add(-time.Second)}
	c.ZAdd(ctx, tk.processing, redis.Z{Score: float64(good.At.UnixMilli()), Member: timerMember("k", "good")})
	c.HSet(ctx, tk.data, timerMember("k", "good"), encodeTimerData(&good))
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if m.Timer != nil {
			m.Emit("fired", 0, "name", m.Timer.Name)
		}
		return nil
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, BatchSize: 1,
		Block: 20 * time.Millisecond, TimerTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitFor(t, 20*time.Second, "the good timer fired and the broken one dead-lettered", func() bool {
		return xlen(t, c, "fired") == 1 && xlen(t, c, "in:dlq") == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dls, _, _, _ := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
	if len(dls) != 1 || dls[0].Timer != "broken" || dls[0].Reason != ReasonInvalid {
		t.Errorf("dead letters = %+v, want the broken timer's, reason invalid", dls)
	}
	if n := c.ZCard(ctx, tk.processing).Val(); n != 0 {
		t.Errorf("%d timers left", n)
	}
}

// Event-time timers follow the partition's watermark: the highest event
// time seen less AllowedLateness fires them, and when input stops the
// watermark moves with the clock after IdleWatermark.
func TestEventTimeTimers(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour) // event times an hour in the past
	dec := DecoderFunc(func(m *Message) error {
		if err := jsonDecoder.Decode(m); err != nil {
			return err
		}
		at, _ := m.Data.(map[string]any)["at"].(float64)
		m.EventTime = time.UnixMilli(int64(at))
		return nil
	})
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if m.Timer != nil {
			m.Emit("fired", 0, "name", m.Timer.Name)
			return nil
		}
		if m.Key == "setter" {
			m.SetEventTimer("early", base.Add(10*time.Second), "")
			m.SetEventTimer("late", base.Add(time.Hour/2), "")
		}
		return nil
	})
	ev := func(key string, at time.Time) Record {
		return Record{Key: key, Fields: []string{"data", fmt.Sprintf(`{"k":%q,"id":"%s-%d","at":%d}`, key, key, at.UnixMilli(), at.UnixMilli())}}
	}
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: dec, Handler: h, Block: 20 * time.Millisecond,
		TimerTick: 10 * time.Millisecond, AllowedLateness: 5 * time.Second, IdleWatermark: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	produce(t, c, 1, []Record{ev("setter", base)})
	waitFor(t, 10*time.Second, "the timers set", func() bool {
		return c.ZCard(ctx, timerKeysOf(keyspace{stream: "in", n: 1, group: "t"}).event).Val() == 2
	})
	// Event time 12s: the watermark is 7s, before "early" (10s).
	produce(t, c, 1, []Record{ev("other", base.Add(12*time.Second))})
	waitFor(t, 10*time.Second, "the second event", func() bool { return acked(t, c, 1) == 2 })
	if n := xlen(t, c, "fired"); n != 0 {
		t.Fatalf("%d fired with the watermark before every timer", n)
	}
	// Event time 16s: the watermark is 11s, past "early" only.
	produce(t, c, 1, []Record{ev("other", base.Add(16*time.Second))})
	waitFor(t, 10*time.Second, "early fired", func() bool { return xlen(t, c, "fired") == 1 })
	// No more input: after IdleWatermark the clock (an hour past the event
	// times) moves the watermark past "late".
	waitFor(t, 20*time.Second, "late fired with input stopped", func() bool { return xlen(t, c, "fired") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if names := c.XRange(ctx, "fired", "-", "+").Val(); names[0].Values["name"] != "early" || names[1].Values["name"] != "late" {
		t.Errorf("fired %v, want early then late", names)
	}
}

// With max_inflight equal to batch_size, a read blocking on an idle
// partition must leave room for the timer loop: the timers set by the last
// entries fire with no more input.
func TestTimersFireOnIdlePartitionWithInflightOfOneBatch(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const n = 20
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if m.Timer != nil {
			m.Emit("{in}:fired", 0, "k", m.Timer.Key)
			return nil
		}
		m.SetTimer("t", time.Now().Add(200*time.Millisecond), "")
		return nil
	})
	var recs []Record
	for k := range n {
		key := "k" + strconv.Itoa(k)
		recs = append(recs, Record{Key: key, Fields: []string{"data", event(key, 0)}})
	}
	produce(t, c, 1, recs)
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, BatchSize: 8, MaxInflight: 8,
		Block: time.Second, TimerTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 20*time.Second, "every timer fired on the idle partition", func() bool { return xlen(t, c, "{in}:fired") >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
