package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Keys of the effect tests. Every one shares the hash tag "{in}", so the
// commit script may touch them all on Redis Cluster too.
const (
	effStream  = "{in}"
	effDLQ     = "{in}:dlq"
	effLease   = "{in}:lease"
	effKey     = "{in}:x"       // the key an effect under test writes
	effWitness = "{in}:witness" // a counter another effect of the entry adds 1 to
	effGroup   = "t"
)

var effTimers = timerKeys{processing: "{in}:timers", event: "{in}:etimers", data: "{in}:timerdata"}

// effDue and effEventAt are the due times of the tests' timers.
var (
	effDue     = time.UnixMilli(1_700_000_000_000)
	effEventAt = time.UnixMilli(1_600_000_000_123)
)

// effBackend is a Redis the test started: one redis-server or a Cluster.
type effBackend struct {
	name  string
	c     redis.UniversalClient
	flush func(t *testing.T)
}

// effBackends starts one redis-server and a 3-master Cluster.
func effBackends(t *testing.T) []effBackend {
	t.Helper()
	srv := redistest.Start(t).Client(t)
	bs := []effBackend{{name: "redis", c: srv, flush: func(t *testing.T) {
		t.Helper()
		if err := srv.FlushAll(t.Context()).Err(); err != nil { // a server this test started
			t.Fatal(err)
		}
	}}}
	if testing.Short() {
		return bs
	}
	cl := redistest.StartCluster(t, 3).Client(t)
	return append(bs, effBackend{name: "cluster", c: cl, flush: func(t *testing.T) {
		t.Helper()
		err := cl.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
		if err != nil { // a cluster this test started
			t.Fatal(err)
		}
	}})
}

// TestEffectsOnRedis runs the commit script with every effect kind, timer
// firings and an unknown opcode on a real redis-server and on a 3-master
// Redis Cluster (all keys in the partition's slot).
func TestEffectsOnRedis(t *testing.T) {
	for _, b := range effBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("kinds", func(t *testing.T) { testEffectKinds(t, b) })
			t.Run("timer_firing", func(t *testing.T) { testEffectTimerFiring(t, b) })
			t.Run("unknown_opcode", func(t *testing.T) { testEffectUnknownOpcode(t, b) })
		})
	}
}

// effectRow is one way of writing one effect kind.
type effectRow struct {
	name   string
	effect Effect
	// setup writes what the keys hold before the commit (nil: nothing).
	setup func(ctx context.Context, c redis.UniversalClient)
	// check tests what one commit wrote.
	check func(t *testing.T, ctx context.Context, c redis.UniversalClient)
	// undo changes what the commit wrote so that a second write would show
	// (for writes that are idempotent); nil when it would show anyway.
	undo func(ctx context.Context, c redis.UniversalClient)
	// wrongType makes a key the effect writes hold another type; the
	// commit replies wrongReply ("!<type> <key>"), or with wrongReply ""
	// the kind takes a key of any type and the commit goes through.
	wrongType  func(ctx context.Context, c redis.UniversalClient)
	wrongReply string
}

// effectRows has one or more rows for every kind of effectKinds.
func effectRows() map[EffectKind][]effectRow {
	timer := &TimerSpec{Key: "a", Name: "n", At: effDue, Payload: "pl\x00ad"}
	etimer := &TimerSpec{Key: "a", Name: "n", At: effEventAt, EventTime: true, Payload: "ep"}
	member := timerMember("a", "n")
	other := timerMember("b", "n")
	asHash := func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "a", "b") }
	asStream := func(ctx context.Context, c redis.UniversalClient) {
		c.XAdd(ctx, &redis.XAddArgs{Stream: effKey, Values: []string{"a", "b"}})
	}
	fill := func(ctx context.Context, c redis.UniversalClient) { // 300 entries, ids 1-1 … 300-1
		p := c.Pipeline()
		for i := 1; i <= 300; i++ {
			p.XAdd(ctx, &redis.XAddArgs{Stream: effKey, ID: fmt.Sprintf("%d-1", i), Values: []string{"i", strconv.Itoa(i)}})
		}
		_, _ = p.Exec(ctx)
	}
	lastIs := func(t *testing.T, ctx context.Context, c redis.UniversalClient, want string) {
		t.Helper()
		last, err := c.XRevRangeN(ctx, effKey, "+", "-", 1).Result()
		if err != nil || len(last) != 1 || fmt.Sprint(last[0].Values) != want {
			t.Errorf("last entry of %s = %v, %v; want %s", effKey, last, err, want)
		}
	}
	hashIs := func(t *testing.T, ctx context.Context, c redis.UniversalClient, key, want string) {
		t.Helper()
		if got := fmt.Sprint(c.HGetAll(ctx, key).Val()); got != want {
			t.Errorf("HGETALL %s = %s, want %s", key, got, want)
		}
	}
	setTimer := func(z string, ts *TimerSpec) func(ctx context.Context, c redis.UniversalClient) {
		return func(ctx context.Context, c redis.UniversalClient) {
			m := timerMember(ts.Key, ts.Name)
			c.ZAdd(ctx, z, redis.Z{Score: float64(ts.At.UnixMilli()), Member: m})
			c.HSet(ctx, effTimers.data, m, encodeTimerData(ts))
		}
	}
	both := func(fs ...func(ctx context.Context, c redis.UniversalClient)) func(ctx context.Context, c redis.UniversalClient) {
		return func(ctx context.Context, c redis.UniversalClient) {
			for _, f := range fs {
				f(ctx, c)
			}
		}
	}
	timerIs := func(t *testing.T, ctx context.Context, c redis.UniversalClient, want *TimerSpec, in, notIn string) {
		t.Helper()
		m := timerMember(want.Key, want.Name)
		if sc, err := c.ZScore(ctx, in, m).Result(); err != nil || int64(sc) != want.At.UnixMilli() {
			t.Errorf("ZSCORE %s %q = %v, %v; want %d", in, m, sc, err, want.At.UnixMilli())
		}
		if err := c.ZScore(ctx, notIn, m).Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("ZSCORE %s %q: %v, want the timer gone from the other set", notIn, m, err)
		}
		data, err := c.HGet(ctx, effTimers.data, m).Result()
		if err != nil {
			t.Fatalf("HGET %s %q: %v", effTimers.data, m, err)
		}
		got, err := decodeTimer(m, data)
		if err != nil || got.Key != want.Key || got.Name != want.Name || !got.At.Equal(want.At) || got.EventTime != want.EventTime || got.Payload != want.Payload {
			t.Errorf("decodeTimer(%q, %q) = %+v, %v; want %+v", m, data, got, err, *want)
		}
	}
	timerGone := func(t *testing.T, ctx context.Context, c redis.UniversalClient, m string) {
		t.Helper()
		for _, z := range []string{effTimers.processing, effTimers.event} {
			if err := c.ZScore(ctx, z, m).Err(); !errors.Is(err, redis.Nil) {
				t.Errorf("ZSCORE %s %q: %v, want the timer gone", z, m, err)
			}
		}
		if c.HExists(ctx, effTimers.data, m).Val() {
			t.Errorf("HEXISTS %s %q = true, want its data gone", effTimers.data, m)
		}
	}
	unsetTimer := func(ctx context.Context, c redis.UniversalClient) {
		c.ZRem(ctx, effTimers.processing, member)
		c.ZRem(ctx, effTimers.event, member)
		c.HDel(ctx, effTimers.data, member)
	}
	asString := func(k string) func(ctx context.Context, c redis.UniversalClient) {
		return func(ctx context.Context, c redis.UniversalClient) { c.Set(ctx, k, "s", 0) }
	}

	return map[EffectKind][]effectRow{
		EffectXAdd: {{
			name:   "no trim",
			effect: Effect{Kind: EffectXAdd, Key: effKey, Fields: []string{"k", "v", "n", "1"}},
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				if n := xlen(t, c, effKey); n != 1 {
					t.Errorf("XLEN %s = %d, want 1", effKey, n)
				}
				lastIs(t, ctx, c, "map[k:v n:1]")
			},
			wrongType: asHash, wrongReply: "!hash " + effKey,
		}, {
			name:   "MAXLEN ~",
			effect: Effect{Kind: EffectXAdd, Key: effKey, MaxLen: 10, Fields: []string{"k", "v"}},
			setup:  fill,
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				// ~ trims whole nodes (100 entries each by default): some
				// are gone, never below the cap.
				if n := xlen(t, c, effKey); n < 10 || n >= 301 {
					t.Errorf("XLEN %s = %d after MAXLEN ~ 10, want trimmed to 10..300", effKey, n)
				}
				lastIs(t, ctx, c, "map[k:v]")
			},
			wrongType: asHash, wrongReply: "!hash " + effKey,
		}, {
			name:   "MINID ~",
			effect: Effect{Kind: EffectXAdd, Key: effKey, MinID: "250-0", Fields: []string{"k", "v"}},
			setup:  fill,
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				if n := xlen(t, c, effKey); n >= 301 {
					t.Errorf("XLEN %s = %d after MINID ~ 250-0, want fewer than 301", effKey, n)
				}
				if es := c.XRange(ctx, effKey, "250-1", "250-1").Val(); len(es) != 1 {
					t.Errorf("entry 250-1 (not older than MINID) was trimmed")
				}
				lastIs(t, ctx, c, "map[k:v]")
			},
			wrongType: asString(effKey), wrongReply: "!string " + effKey,
		}},
		EffectHSet: {{
			name:   "fields",
			effect: Effect{Kind: EffectHSet, Key: effKey, Fields: []string{"f", "v", "g", "w"}},
			setup:  func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "old", "1", "f", "0") },
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				hashIs(t, ctx, c, effKey, "map[f:v g:w old:1]")
			},
			undo:      func(ctx context.Context, c redis.UniversalClient) { c.HDel(ctx, effKey, "f", "g") },
			wrongType: asStream, wrongReply: "!stream " + effKey,
		}},
		EffectHDel: {{
			name:   "fields",
			effect: Effect{Kind: EffectHDel, Key: effKey, Fields: []string{"f", "g"}},
			setup:  func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "f", "1", "g", "2", "h", "3") },
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				hashIs(t, ctx, c, effKey, "map[h:3]")
			},
			undo:      func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "f", "1") },
			wrongType: asString(effKey), wrongReply: "!string " + effKey,
		}},
		EffectHIncrBy: {{
			name:   "field",
			effect: Effect{Kind: EffectHIncrBy, Key: effKey, Fields: []string{"n", "-2"}},
			setup:  func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "n", "44") },
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				hashIs(t, ctx, c, effKey, "map[n:42]")
			},
			wrongType: asStream, wrongReply: "!stream " + effKey,
		}},
		EffectHIncrByFloat: {{
			name:   "field",
			effect: Effect{Kind: EffectHIncrByFloat, Key: effKey, Fields: []string{"n", "0.25"}},
			setup:  func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "n", "1.5") },
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				hashIs(t, ctx, c, effKey, "map[n:1.75]")
			},
			wrongType:  func(ctx context.Context, c redis.UniversalClient) { c.SAdd(ctx, effKey, "m") },
			wrongReply: "!set " + effKey,
		}},
		EffectPExpire: {{
			name:   "hash",
			effect: Effect{Kind: EffectPExpire, Key: effKey, TTL: time.Hour},
			setup:  func(ctx context.Context, c redis.UniversalClient) { c.HSet(ctx, effKey, "f", "v") },
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				if d := c.PTTL(ctx, effKey).Val(); d <= 0 || d > time.Hour {
					t.Errorf("PTTL %s = %v, want (0, 1h]", effKey, d)
				}
				hashIs(t, ctx, c, effKey, "map[f:v]")
			},
			undo: func(ctx context.Context, c redis.UniversalClient) { c.Persist(ctx, effKey) },
			// PEXPIRE takes a key of any type: a stream is no wrong type.
			wrongType: asStream,
		}},
		EffectPFAdd: {{
			name:   "elements",
			effect: Effect{Kind: EffectPFAdd, Key: effKey, Fields: []string{"a", "b", "c", "a"}},
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				if n := c.PFCount(ctx, effKey).Val(); n != 3 {
					t.Errorf("PFCOUNT %s = %d, want 3", effKey, n)
				}
			},
			undo:      func(ctx context.Context, c redis.UniversalClient) { c.Del(ctx, effKey) },
			wrongType: asHash, wrongReply: "!hash " + effKey,
		}},
		EffectTimerSet: {{
			// set before as an event-time timer: moving it to processing
			// time takes it out of the event-time set
			name:   "processing time",
			effect: Effect{Kind: EffectTimerSet, Timer: timer},
			setup:  setTimer(effTimers.event, &TimerSpec{Key: "a", Name: "n", At: time.UnixMilli(5), EventTime: true}),
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				timerIs(t, ctx, c, timer, effTimers.processing, effTimers.event)
			},
			undo:      unsetTimer,
			wrongType: asString(effTimers.processing), wrongReply: "!string " + effTimers.processing,
		}, {
			name:   "event time",
			effect: Effect{Kind: EffectTimerSet, Timer: etimer},
			setup:  setTimer(effTimers.processing, &TimerSpec{Key: "a", Name: "n", At: time.UnixMilli(5)}),
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				timerIs(t, ctx, c, etimer, effTimers.event, effTimers.processing)
			},
			undo: unsetTimer,
			wrongType: func(ctx context.Context, c redis.UniversalClient) {
				c.HSet(ctx, effTimers.event, "a", "b")
			},
			wrongReply: "!hash " + effTimers.event,
		}},
		EffectTimerCancel: {{
			name:   "processing time",
			effect: Effect{Kind: EffectTimerCancel, Timer: &TimerSpec{Key: "a", Name: "n"}},
			setup:  both(setTimer(effTimers.processing, timer), setTimer(effTimers.processing, &TimerSpec{Key: "b", Name: "n", At: effDue})),
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				timerGone(t, ctx, c, member)
				timerIs(t, ctx, c, &TimerSpec{Key: "b", Name: "n", At: effDue}, effTimers.processing, effTimers.event)
			},
			undo:      setTimer(effTimers.processing, timer),
			wrongType: asString(effTimers.data), wrongReply: "!string " + effTimers.data,
		}, {
			name:   "event time",
			effect: Effect{Kind: EffectTimerCancel, Timer: &TimerSpec{Key: "a", Name: "n"}},
			setup:  both(setTimer(effTimers.event, etimer), setTimer(effTimers.event, &TimerSpec{Key: "b", Name: "n", At: effEventAt, EventTime: true})),
			check: func(t *testing.T, ctx context.Context, c redis.UniversalClient) {
				timerGone(t, ctx, c, member)
				if !c.HExists(ctx, effTimers.data, other).Val() {
					t.Errorf("another key's timer lost its data")
				}
			},
			undo:      setTimer(effTimers.event, etimer),
			wrongType: asString(effTimers.event), wrongReply: "!string " + effTimers.event,
		}},
	}
}

// effSnapshot prints what the tests' keys hold, to tell whether a run
// wrote anything.
func effSnapshot(t *testing.T, ctx context.Context, c redis.UniversalClient) string {
	t.Helper()
	var b strings.Builder
	for _, k := range []string{effKey, effWitness, effTimers.processing, effTimers.event, effTimers.data, effDLQ, "{in}:out"} {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", k, err)
		}
		fmt.Fprintf(&b, "%s %s", k, typ)
		switch typ {
		case "stream":
			first := c.XRangeN(ctx, k, "-", "+", 1).Val()
			last := c.XRevRangeN(ctx, k, "+", "-", 1).Val()
			fmt.Fprintf(&b, " len %d first %v last %v", c.XLen(ctx, k).Val(), first, last)
		case "hash":
			fmt.Fprint(&b, " ", c.HGetAll(ctx, k).Val())
		case "zset":
			fmt.Fprint(&b, " ", c.ZRangeWithScores(ctx, k, 0, -1).Val())
		case "set":
			m := c.SMembers(ctx, k).Val()
			sort.Strings(m)
			fmt.Fprint(&b, " ", m)
		case "string":
			fmt.Fprintf(&b, " %q", c.Get(ctx, k).Val())
		}
		if c.PTTL(ctx, k).Val() > 0 {
			b.WriteString(" ttl")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// effPending adds n entries to the stream "{in}" (making group "t" first)
// and reads them as consumer "w": n entries pending, oldest first.
func effPending(t *testing.T, ctx context.Context, c redis.UniversalClient, n int) []string {
	t.Helper()
	if err := ensureGroup(ctx, c, effStream, effGroup, StartOldest); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: effStream, Values: []string{"data", strconv.Itoa(i)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	es, err := readNew(ctx, c, effStream, effGroup, "w", n, 10*time.Millisecond)
	if err != nil || len(es) != n {
		t.Fatalf("read %d entries, %v; want %d", len(es), err, n)
	}
	ids := make([]string, n)
	for i, e := range es {
		ids[i] = e.id
	}
	return ids
}

// effCommitArgs starts a commit of "{in}" for group "t" with the tests'
// timer keys; with a fence, the lease is set to it.
func effCommitArgs(t *testing.T, ctx context.Context, c redis.UniversalClient, fence string) *commitArgs {
	t.Helper()
	if fence != "" {
		if err := c.Set(ctx, effLease, fence, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a := &commitArgs{}
	a.reset(effStream, effDLQ, effLease, fence, effGroup, "", nil, 0, 0)
	a.setTimers(effTimers)
	return a
}

// effRun runs the commit script with a's arguments, as a dry run or not.
func effRun(t *testing.T, ctx context.Context, c redis.UniversalClient, a *commitArgs, dry bool) string {
	t.Helper()
	if a.conflict != "" {
		t.Fatalf("commitArgs conflict on %q", a.conflict)
	}
	a.dryRun(dry)
	defer a.dryRun(false)
	reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
	if err != nil {
		t.Fatalf("commit (dry run %v): %v", dry, err)
	}
	return reply
}

func effWitnessCount(t *testing.T, ctx context.Context, c redis.UniversalClient) int64 {
	t.Helper()
	n, err := c.HGet(ctx, effWitness, "n").Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

// testEffectKinds writes every kind through the commit script: exactly
// once when its entry commits, not again when the same commit runs again
// (the entry is acked), not at all in a dry run, and not at all when a key
// the entry writes holds another type. Each row runs alone (XADD and HSET
// as the commit's common effect) and after another effect of the same
// entry (through the kind's own handler), with an XACK per entry and with
// a fence's one XACK for the batch.
func testEffectKinds(t *testing.T, b effBackend) {
	rows := effectRows()
	kinds := make([]EffectKind, 0, len(effectKinds))
	for k := range effectKinds {
		kinds = append(kinds, k)
		if len(rows[k]) == 0 {
			t.Errorf("effect kind %s has no row: add one to effectRows", k)
		}
	}
	for k := range rows {
		if _, ok := effectKinds[k]; !ok {
			t.Errorf("effectRows has rows of %s, which effectKinds does not know", k)
		}
	}
	slices.Sort(kinds)
	witness := Effect{Kind: EffectHIncrBy, Key: effWitness, Fields: []string{"n", "1"}}
	for _, k := range kinds {
		for _, row := range rows[k] {
			for _, shape := range []string{"alone", "after another"} {
				for _, fence := range []string{"", "f1"} {
					name := fmt.Sprintf("%s/%s/%s/fence=%q", k, row.name, shape, fence)
					t.Run(name, func(t *testing.T) {
						effects := []Effect{row.effect}
						if shape != "alone" {
							effects = []Effect{witness, row.effect}
						}
						if err := checkEffects(effects); err != nil {
							t.Fatalf("checkEffects(%v) = %v, want nil", effects, err)
						}
						testEffectRow(t, b, row, effects, fence)
					})
				}
			}
		}
	}
}

func testEffectRow(t *testing.T, b effBackend, row effectRow, effects []Effect, fence string) {
	ctx := t.Context()
	c := b.c
	wantWitness := int64(0)
	if len(effects) > 1 {
		wantWitness = 1
	}

	b.flush(t)
	if row.setup != nil {
		row.setup(ctx, c)
	}
	id := effPending(t, ctx, c, 1)[0]
	a := effCommitArgs(t, ctx, c, fence)
	a.processed(id, "", effects)
	if e := row.effect; e.Key != "" {
		if got, want := a.types[a.keyIdx[e.Key]-1], effectKinds[e.Kind].keyType; got != want {
			t.Errorf("%s encodes key %s with type %q, its keyType is %q", e.Kind, e.Key, got, want)
		}
	}
	before := effSnapshot(t, ctx, c)

	if got := effRun(t, ctx, c, a, true); got != "p" {
		t.Errorf("dry run = %q, want p", got)
	}
	if got := effSnapshot(t, ctx, c); got != before {
		t.Errorf("a dry run wrote:\n%s\nwant\n%s", got, before)
	}
	if n := pendingCount(t, c, effStream); n != 1 {
		t.Errorf("%d pending after a dry run, want 1", n)
	}

	if got := effRun(t, ctx, c, a, false); got != "p" {
		t.Fatalf("commit = %q, want p", got)
	}
	row.check(t, ctx, c)
	if n := effWitnessCount(t, ctx, c); n != wantWitness {
		t.Errorf("witness = %d after the commit, want %d", n, wantWitness)
	}
	if n := pendingCount(t, c, effStream); n != 0 {
		t.Errorf("%d pending after the commit, want 0", n)
	}
	if effSnapshot(t, ctx, c) == before {
		t.Errorf("the commit wrote nothing")
	}

	if row.undo != nil {
		row.undo(ctx, c)
	}
	again := effSnapshot(t, ctx, c)
	if got := effRun(t, ctx, c, a, false); got != "s" {
		t.Errorf("the same commit again = %q, want s (already acked)", got)
	}
	if got := effRun(t, ctx, c, a, true); got != "s" {
		t.Errorf("a dry run of it again = %q, want s", got)
	}
	if got := effSnapshot(t, ctx, c); got != again {
		t.Errorf("the same commit again wrote:\n%s\nwant\n%s", got, again)
	}

	// A key of another type: nothing of the entry is written, and it
	// stays pending.
	b.flush(t)
	row.wrongType(ctx, c)
	id = effPending(t, ctx, c, 1)[0]
	a = effCommitArgs(t, ctx, c, fence)
	a.processed(id, "", effects)
	before = effSnapshot(t, ctx, c)
	got := effRun(t, ctx, c, a, false)
	if row.wrongReply == "" { // a kind that takes any type
		if got != "p" {
			t.Errorf("commit to a key of another type = %q, want p (any type)", got)
		}
		if d := c.PTTL(ctx, effKey).Val(); d <= 0 {
			t.Errorf("PTTL %s = %v after a commit to it as a %s, want a time to live", effKey, d, c.Type(ctx, effKey).Val())
		}
		return
	}
	if got != row.wrongReply {
		t.Errorf("commit to a key of another type = %q, want %q", got, row.wrongReply)
	}
	if after := effSnapshot(t, ctx, c); after != before {
		t.Errorf("a commit refused for a wrong type wrote:\n%s\nwant\n%s", after, before)
	}
	if n := pendingCount(t, c, effStream); n != 1 {
		t.Errorf("%d pending after a commit refused for a wrong type, want 1", n)
	}
}

// testEffectTimerFiring commits timer firings: a timer still set with the
// due time it fires with is removed from its set and the data hash, and
// its effects are written; fired again, or moved to another due time
// meanwhile, it is stale and nothing is written. A dead-lettered firing
// writes its dead letter once.
func testEffectTimerFiring(t *testing.T, b effBackend) {
	c := b.c
	fired := []Effect{
		{Kind: EffectHIncrBy, Key: effWitness, Fields: []string{"n", "1"}},
		{Kind: EffectXAdd, Key: effKey, Fields: []string{"fired", "1"}},
	}
	// set commits an entry whose one effect sets ts.
	set := func(t *testing.T, ts *TimerSpec) {
		t.Helper()
		ctx := t.Context()
		a := effCommitArgs(t, ctx, c, "")
		a.processed(effPending(t, ctx, c, 1)[0], "", []Effect{{Kind: EffectTimerSet, Timer: ts}})
		if got := effRun(t, ctx, c, a, false); got != "p" {
			t.Fatalf("commit setting timer %s = %q, want p", ts.Name, got)
		}
	}
	isSet := func(t *testing.T, ts *TimerSpec) bool {
		t.Helper()
		ctx := t.Context()
		m := timerMember(ts.Key, ts.Name)
		sc, err := c.ZScore(ctx, effTimers.queue(ts.EventTime), m).Result()
		has := c.HExists(ctx, effTimers.data, m).Val()
		if (err == nil) != has {
			t.Errorf("timer %q: in its set %v, in the data hash %v", m, err == nil, has)
		}
		return err == nil && int64(sc) == ts.At.UnixMilli()
	}
	written := func(t *testing.T, want int64) {
		t.Helper()
		if n := effWitnessCount(t, t.Context(), c); n != want {
			t.Errorf("firing effects written %d times, want %d", n, want)
		}
		if n := xlen(t, c, effKey); n != want {
			t.Errorf("XLEN %s = %d, want %d", effKey, n, want)
		}
	}

	for _, tc := range []struct {
		name string
		ts   TimerSpec
	}{
		{"processing time", TimerSpec{Key: "a", Name: "n", At: effDue, Payload: "p"}},
		{"event time", TimerSpec{Key: "a", Name: "n", At: effEventAt, EventTime: true, Payload: "e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			ts := tc.ts
			t.Run("fired", func(t *testing.T) {
				b.flush(t)
				set(t, &ts)
				a := effCommitArgs(t, ctx, c, "")
				a.timerFired(&ts, fired)
				if got := effRun(t, ctx, c, a, true); got != "p" {
					t.Errorf("dry run of a firing = %q, want p", got)
				}
				if !isSet(t, &ts) {
					t.Errorf("a dry run of a firing removed the timer")
				}
				written(t, 0)
				if got := effRun(t, ctx, c, a, false); got != "p" {
					t.Errorf("firing = %q, want p", got)
				}
				if m := timerMember(ts.Key, ts.Name); c.ZScore(ctx, effTimers.queue(ts.EventTime), m).Err() == nil || c.HExists(ctx, effTimers.data, m).Val() {
					t.Errorf("a fired timer is still in its set or the data hash")
				}
				written(t, 1)
				if got := effRun(t, ctx, c, a, false); got != "s" {
					t.Errorf("the same firing again = %q, want s", got)
				}
				written(t, 1)
			})
			t.Run("moved", func(t *testing.T) {
				b.flush(t)
				set(t, &ts)
				moved := ts
				moved.At = ts.At.Add(time.Second)
				moved.Payload = "moved"
				set(t, &moved)
				a := effCommitArgs(t, ctx, c, "")
				a.timerFired(&ts, fired)
				if got := effRun(t, ctx, c, a, false); got != "s" {
					t.Errorf("firing a timer moved meanwhile = %q, want s", got)
				}
				written(t, 0)
				if !isSet(t, &moved) {
					t.Errorf("firing at the old due time removed the moved timer")
				}
				a = effCommitArgs(t, ctx, c, "")
				a.timerFired(&moved, fired)
				if got := effRun(t, ctx, c, a, false); got != "p" {
					t.Errorf("firing the moved timer = %q, want p", got)
				}
				written(t, 1)
			})
			t.Run("set again by its firing", func(t *testing.T) {
				b.flush(t)
				set(t, &ts)
				next := ts
				next.At = ts.At.Add(time.Minute)
				a := effCommitArgs(t, ctx, c, "")
				a.timerFired(&ts, append(slices.Clone(fired), Effect{Kind: EffectTimerSet, Timer: &next}))
				if got := effRun(t, ctx, c, a, false); got != "p" {
					t.Errorf("firing = %q, want p", got)
				}
				if !isSet(t, &next) {
					t.Errorf("a firing that sets its timer again left it unset")
				}
				if got := effRun(t, ctx, c, a, false); got != "s" {
					t.Errorf("the same firing again = %q, want s (the timer was moved)", got)
				}
				written(t, 1)
			})
			t.Run("dead-lettered", func(t *testing.T) {
				b.flush(t)
				set(t, &ts)
				a := effCommitArgs(t, ctx, c, "")
				a.timerDeadLetter(&ts, []string{"data", "x", "eddy.reason", "test"})
				if got := effRun(t, ctx, c, a, false); got != "d" {
					t.Errorf("dead-lettered firing = %q, want d", got)
				}
				if isSet(t, &ts) {
					t.Errorf("a dead-lettered timer is still set")
				}
				if got := effRun(t, ctx, c, a, false); got != "s" {
					t.Errorf("the same dead-lettered firing again = %q, want s", got)
				}
				if n := xlen(t, c, effDLQ); n != 1 {
					t.Errorf("%d dead letters, want 1", n)
				}
			})
		})
	}
}

// testEffectUnknownOpcode builds a commit by hand whose second entry has an
// opcode the script has no handler for: the commit fails with an error
// naming it before anything is written. The same arguments with a known
// opcode commit, which shows the opcode is the only fault.
func testEffectUnknownOpcode(t *testing.T, b effBackend) {
	c := b.c
	const out = "{in}:out"
	for _, fence := range []string{"", "f1"} {
		t.Run("fence="+strconv.Quote(fence), func(t *testing.T) {
			ctx := t.Context()
			argv := func(op string, ids []string) []any {
				acks := []any{0}
				if fence != "" {
					acks = []any{2, ids[0], ids[1]}
				}
				v := []any{effGroup, 0, 0, 0, fence, "c", "---sh", "XADD " + op, "", "", 0, 0, 0} // no value checks, no dedupe ids
				v = append(v, acks...)
				v = append(v, "", // no common effect
					ids[0], "p", 0, 1, "XADD", 4, "", "", 2, "k", "v",
					ids[1], "p", 0, 1, op, 5, 2, "f", "v")
				return v
			}
			keys := []string{effStream, effDLQ, effLease, out, effKey}

			b.flush(t)
			if fence != "" {
				c.Set(ctx, effLease, fence, time.Minute)
			}
			ids := effPending(t, ctx, c, 2)
			err := commitScript.Run(ctx, c, keys, argv("BOGUS", ids)...).Err()
			if err == nil || !strings.Contains(err.Error(), "unknown effect opcode BOGUS") {
				t.Errorf("commit with opcode BOGUS: error %v, want one naming the unknown effect opcode BOGUS", err)
			}
			if n := c.Exists(ctx, out, effKey).Val(); n != 0 {
				t.Errorf("a commit with an unknown opcode wrote %d keys, want none", n)
			}
			if n := pendingCount(t, c, effStream); n != 2 {
				t.Errorf("%d pending after a commit with an unknown opcode, want 2", n)
			}

			if reply, err := commitScript.Run(ctx, c, keys, argv("HSET", ids)...).Text(); err != nil || reply != "pp" {
				t.Fatalf("the same commit with opcode HSET = %q, %v; want pp", reply, err)
			}
			if n := xlen(t, c, out); n != 1 || c.HGet(ctx, effKey, "f").Val() != "v" {
				t.Errorf("the commit with HSET wrote %d outputs and hash %v", n, c.HGetAll(ctx, effKey).Val())
			}
		})
	}
}

// checkEffects refuses, as a permanent failure with reason invalid_effect,
// an effect of an unknown kind and each kind's malformed input, naming the
// kind; the engine dead-letters the entry instead of failing the commit.
func TestEffectCheck(t *testing.T) {
	at := effDue
	bad := map[EffectKind][]struct {
		name string
		e    Effect
	}{
		EffectXAdd: {
			{"odd pairs", Effect{Kind: EffectXAdd, Key: "k", Fields: []string{"f", "v", "g"}}},
			{"no fields", Effect{Kind: EffectXAdd, Key: "k"}},
			{"empty key", Effect{Kind: EffectXAdd, Fields: []string{"f", "v"}}},
			{"too many strings", Effect{Kind: EffectXAdd, Key: "k", Fields: make([]string, maxEffectStrings+2)}},
			{"MinID not an id", Effect{Kind: EffectXAdd, Key: "k", MinID: "1-2-3", Fields: []string{"f", "v"}}},
			{"MinID past 64 bits", Effect{Kind: EffectXAdd, Key: "k", MinID: "99999999999999999999", Fields: []string{"f", "v"}}},
			{"MinID sequence past 64 bits", Effect{Kind: EffectXAdd, Key: "k", MinID: "1-18446744073709551616", Fields: []string{"f", "v"}}},
		},
		EffectHSet: {
			{"odd pairs", Effect{Kind: EffectHSet, Key: "k", Fields: []string{"f"}}},
			{"no fields", Effect{Kind: EffectHSet, Key: "k", Fields: []string{}}},
		},
		EffectHDel: {
			{"no fields", Effect{Kind: EffectHDel, Key: "k"}},
		},
		EffectHIncrBy: {
			{"not an integer", Effect{Kind: EffectHIncrBy, Key: "k", Fields: []string{"n", "1.5"}}},
			{"over 64 bits", Effect{Kind: EffectHIncrBy, Key: "k", Fields: []string{"n", "9223372036854775808"}}},
			{"no increment", Effect{Kind: EffectHIncrBy, Key: "k", Fields: []string{"n"}}},
			{"three strings", Effect{Kind: EffectHIncrBy, Key: "k", Fields: []string{"n", "1", "2"}}},
		},
		EffectHIncrByFloat: {
			{"NaN", Effect{Kind: EffectHIncrByFloat, Key: "k", Fields: []string{"n", "NaN"}}},
			{"infinite", Effect{Kind: EffectHIncrByFloat, Key: "k", Fields: []string{"n", "+Inf"}}},
			{"not a number", Effect{Kind: EffectHIncrByFloat, Key: "k", Fields: []string{"n", "one"}}},
			{"no increment", Effect{Kind: EffectHIncrByFloat, Key: "k", Fields: []string{"n"}}},
		},
		EffectPExpire: {
			{"TTL 0", Effect{Kind: EffectPExpire, Key: "k"}},
			{"TTL under 1ms", Effect{Kind: EffectPExpire, Key: "k", TTL: time.Millisecond - 1}},
			{"negative TTL", Effect{Kind: EffectPExpire, Key: "k", TTL: -time.Second}},
		},
		EffectPFAdd: {
			{"no elements", Effect{Kind: EffectPFAdd, Key: "k"}},
		},
		EffectTimerSet: {
			{"no name", Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: "a", At: at}}},
			{"no timer", Effect{Kind: EffectTimerSet, Key: "k"}},
			{"no timer, no key", Effect{Kind: EffectTimerSet}},
			{"no due time", Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: "a", Name: "n"}}},
			{"separator in name", Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: "a", Name: "n" + timerSep, At: at}}},
			{"separator in key", Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: "a" + timerSep, Name: "n", At: at}}},
			{"payload too large", Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: "a", Name: "n", At: at, Payload: strings.Repeat("x", MaxTimerPayload+1)}}},
		},
		EffectTimerCancel: {
			{"no name", Effect{Kind: EffectTimerCancel, Timer: &TimerSpec{Key: "a"}}},
			{"no timer", Effect{Kind: EffectTimerCancel, Key: "k"}},
		},
		99: {
			{"unknown kind", Effect{Kind: 99, Key: "k", Fields: []string{"f", "v"}}},
		},
	}
	for k := range effectKinds {
		if len(bad[k]) == 0 {
			t.Errorf("effect kind %s has no malformed row", k)
		}
	}
	kinds := make([]EffectKind, 0, len(bad))
	for k := range bad {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		for _, row := range bad[k] {
			t.Run(k.String()+"/"+row.name, func(t *testing.T) {
				valid := Effect{Kind: EffectHSet, Key: "ok", Fields: []string{"f", "v"}}
				err := checkEffects([]Effect{valid, row.e})
				var pe *PermanentError
				if !errors.As(err, &pe) {
					t.Fatalf("checkEffects(%s) = %v, want a *PermanentError", row.name, err)
				}
				if pe.Reason != ReasonInvalidEffect {
					t.Errorf("checkEffects(%s) reason = %q, want %q", row.name, pe.Reason, ReasonInvalidEffect)
				}
				want := k.String()
				if _, known := effectKinds[k]; !known {
					want = "unknown kind 99"
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("checkEffects(%s) = %q, want it to name %q", row.name, err, want)
				}
			})
		}
	}
	if got := EffectKind(99).String(); got != "EffectKind(99)" {
		t.Errorf("EffectKind(99).String() = %q, want EffectKind(99)", got)
	}
	if EffectKind(99).fits("hash") {
		t.Errorf("EffectKind(99).fits(hash) = true, want false")
	}
}

// Every kind has its own opcode, its Lua handler in the commit script, and
// a key type the script knows (or '-').
func TestEffectKindsTable(t *testing.T) {
	ops := map[string]EffectKind{}
	lua := effectHandlersLua()
	for k, s := range effectKinds {
		if o, dup := ops[s.op]; dup {
			t.Errorf("%d and %d share opcode %q", k, o, s.op)
		}
		ops[s.op] = k
		if k.String() != s.op {
			t.Errorf("EffectKind(%d).String() = %q, want %q", k, k.String(), s.op)
		}
		if strings.ContainsAny(s.op, " \t\n") || s.op == "" {
			t.Errorf("opcode %q is empty or has a space (ARGV[8] is space-separated)", s.op)
		}
		if !strings.Contains(lua, fmt.Sprintf("handlers[%q] = function(j, write)", s.op)) {
			t.Errorf("no Lua handler for %s", s.op)
		}
		if _, ok := typeNames[s.keyType]; !ok && s.keyType != '-' {
			t.Errorf("%s: key type %q is not in typeNames", s.op, s.keyType)
		}
		if s.check == nil || s.encode == nil || s.lua == "" {
			t.Errorf("%s: check, encode or lua missing", s.op)
		}
	}
}
