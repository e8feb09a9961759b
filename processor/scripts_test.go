package processor

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// commitArgs tells the script which type each key must have, and finds
// keys that one commit writes as two types before the script runs.
func TestCommitArgsTypesAndConflicts(t *testing.T) {
	xadd := func(k string) Effect { return Effect{Kind: EffectXAdd, Key: k, Fields: []string{"f", "v"}} }
	hset := func(k string) Effect { return Effect{Kind: EffectHSet, Key: k, Fields: []string{"f", "v"}} }
	for _, tc := range []struct {
		name      string
		mark      string
		effects   [][]Effect
		types     string
		conflict  string
		dedupeIDs int
	}{
		{name: "no dedupe", effects: [][]Effect{{xadd("out")}, {xadd("out"), hset("h")}}, types: "-s-sh"},
		{name: "dedupe", mark: "m1", effects: [][]Effect{{xadd("out")}}, types: "-s-S--s", dedupeIDs: 1},
		{name: "stream then hash", effects: [][]Effect{{xadd("k")}, {hset("k")}}, types: "-s-s", conflict: "k"},
		{name: "hash then stream", effects: [][]Effect{{hset("k"), xadd("k")}}, types: "-s-h", conflict: "k"},
		{name: "dead-letter stream as a hash", effects: [][]Effect{{hset("dlq")}}, types: "-s-", conflict: "dlq"},
		{name: "dead-letter stream as a stream", effects: [][]Effect{{xadd("dlq")}}, types: "-s-"},
		{name: "mark set as a stream", mark: "m1", effects: [][]Effect{{xadd("m1")}}, types: "-s-S--", conflict: "m1", dedupeIDs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a commitArgs
			var check []string
			if tc.mark != "" {
				check = []string{tc.mark, "m0"}
			}
			a.reset("in", "dlq", "lease", "", "g", tc.mark, check, 0, 0)
			for i, e := range tc.effects {
				a.processed("1-"+string(rune('0'+i)), "e"+string(rune('0'+i)), e)
			}
			if got := string(a.types); got != tc.types {
				t.Errorf("types = %q, want %q", got, tc.types)
			}
			if len(a.types) != len(a.keys) {
				t.Errorf("%d types for %d keys", len(a.types), len(a.keys))
			}
			if a.conflict != tc.conflict {
				t.Errorf("conflict = %q, want %q", a.conflict, tc.conflict)
			}
			argv := a.args()
			if got := argv[12]; got != tc.dedupeIDs {
				t.Errorf("dedupe ids = %v, want %d", got, tc.dedupeIDs)
			}
		})
	}
}

// Building the arguments twice with one commitArgs gives the same result:
// nothing of the first batch is left over in the second.
func TestCommitArgsReuse(t *testing.T) {
	build := func(a *commitArgs) ([]string, []any) {
		a.reset("in", "dlq", "lease", "f", "g", "m1", []string{"m1"}, 5, 0)
		a.processed("1-1", "e1", []Effect{{Kind: EffectXAdd, Key: "out", MaxLen: 10, Fields: []string{"a", "b"}}})
		a.deadLetter("1-2", "", []string{"x", "y"})
		a.ackOnly("1-3")
		return append([]string(nil), a.keys...), append([]any(nil), a.args()...)
	}
	var a commitArgs
	k1, v1 := build(&a)
	a.processed("9-9", "e9", []Effect{{Kind: EffectHSet, Key: "other", Fields: []string{"c", "d"}}})
	k2, v2 := build(&a)
	if !reflect.DeepEqual(k1, k2) || !reflect.DeepEqual(v1, v2) {
		t.Errorf("second build differs:\n%v %v\n%v %v", k1, v1, k2, v2)
	}
	want := []any{"g", 1, int64(5), int64(0), "f", "c", "-s-S-s", "XADD", "", "", 0, 0, 1, "e1", 3, "1-1", "1-2", "1-3",
		"XADD", 6, "MAXLEN", int64(10), 1, "a", "v",
		1, "R", 1, "b",
		"1-2", "d", 0, 2, "x", "y",
		"1-3", "a"}
	if !reflect.DeepEqual(v1, want) {
		t.Errorf("argv =\n%v\nwant\n%v", v1, want)
	}
}

// With a fence the batch is acked with one XACK. A commit run twice (a
// retry after a lost reply) writes its effects once; an id repeated in a
// batch is stale the second time; and a batch of which someone else acked
// a part by hand writes every effect rather than lose one.
func TestCommitWithOneXACK(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	lease := leaseKey("in", 0, 1, "t")
	c.Set(ctx, lease, "f1", time.Minute)
	es := pendingEntries(t, c, 6)
	out := func(k string) []Effect { return []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", k}}} }
	commit := func(ids ...string) string {
		t.Helper()
		var a commitArgs
		a.reset("in", "in:dlq", lease, "f1", "t", "m", []string{"m"}, time.Now().Add(time.Hour).UnixMilli(), 0)
		for _, id := range ids {
			a.processed(id, "e-"+id, out(id))
		}
		reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	if got := commit(es[0].id, es[1].id, es[0].id); got != "pps" {
		t.Errorf("commit = %q, want pps", got)
	}
	if got := commit(es[0].id, es[1].id); got != "ss" {
		t.Errorf("the same commit again = %q, want ss (already acked, nothing written)", got)
	}
	if n := xlen(t, c, "out"); n != 2 {
		t.Errorf("%d outputs after a commit and its retry, want 2", n)
	}
	c.XAck(ctx, "in", "t", es[2].id) // by hand
	if got := commit(es[2].id, es[3].id, es[4].id); got != "ppp" {
		t.Errorf("commit after an ack by hand = %q, want ppp (every effect written)", got)
	}
	if n := xlen(t, c, "out"); n != 5 {
		t.Errorf("%d outputs, want 5", n)
	}
	if n := pendingCount(t, c, "in"); n != 1 {
		t.Errorf("%d pending, want 1 (the sixth entry)", n)
	}
}

// Entries whose one effect is the commit's common effect send only its
// values, and not those that are the entry's own id (its dedupe id, else
// its entry id); with one XACK, such entries in a row are one run.
// Everything else goes the general way. Mixed in one commit, with and
// without dedupe ids, with a duplicate and with a value that looks like an
// own id but is not, every effect lands as it would one by one, in a
// commit and in a dry run.
func TestCommitCommonEffect(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	es := pendingEntries(t, c, 9)
	x := func(key string, kv ...string) Effect { return Effect{Kind: EffectXAdd, Key: key, Fields: kv} }
	h := func(key string, kv ...string) Effect { return Effect{Kind: EffectHSet, Key: key, Fields: kv} }
	for _, fence := range []string{"", "f1"} {
		t.Run("fence="+fence, func(t *testing.T) {
			c.Del(ctx, "out", "other", "h", "m")
			c.XGroupSetID(ctx, "in", "t", "0")
			if _, err := readNew(ctx, c, "in", "t", "w", 10, 10*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			lease := leaseKey("in", 0, 1, "t")
			c.Set(ctx, lease, fence, time.Minute)
			var a commitArgs
			a.reset("in", "in:dlq", lease, fence, "t", "m", []string{"m"}, time.Now().Add(time.Hour).UnixMilli(), 0)
			a.processed(es[0].id, "d0", []Effect{x("out", "k", "v0", "id", "d0")})                   // common, with id
			a.processed(es[1].id, "", []Effect{x("out", "k", "v1", "id", es[1].id)})                 // common, no id
			a.processed(es[2].id, "d2", []Effect{x("out", "k", "v2")})                               // other fields
			a.processed(es[3].id, "d3", []Effect{x("out", "k", "v3", "id", "d3"), h("h", "f", "3")}) // two effects
			a.processed(es[4].id, "d0", []Effect{x("out", "k", "dup", "id", "d0")})                  // duplicate of d0
			a.processed(es[5].id, "d5", []Effect{h("h", "g", "5")})                                  // a hash only
			a.processed(es[6].id, "d6", []Effect{x("out", "k", "v6", "id", "d6")})                   // common again
			a.processed(es[7].id, "d7", []Effect{x("out", "k", "v7", "id", "d6")})                   // not its own id
			a.processed(es[8].id, "d8", []Effect{x("out", "k", "v8", "id", "d8")})                   // common again
			a.dryRun(true)
			reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
			if err != nil || reply != "ppppupppp" {
				t.Fatalf("dry run = %q, %v; want ppppupppp", reply, err)
			}
			if n := xlen(t, c, "out"); n != 0 {
				t.Fatalf("a dry run wrote %d outputs", n)
			}
			a.dryRun(false)
			reply, err = commitScript.Run(ctx, c, a.keys, a.args()...).Text()
			if err != nil || reply != "ppppupppp" {
				t.Fatalf("commit = %q, %v; want ppppupppp", reply, err)
			}
			msgs, _ := c.XRange(ctx, "out", "-", "+").Result()
			var got []string
			for _, m := range msgs {
				got = append(got, fmt.Sprint(m.Values))
			}
			want := []string{"map[id:d0 k:v0]", "map[id:" + es[1].id + " k:v1]", "map[k:v2]", "map[id:d3 k:v3]",
				"map[id:d6 k:v6]", "map[id:d6 k:v7]", "map[id:d8 k:v8]"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("out = %v, want %v", got, want)
			}
			if hv := c.HGetAll(ctx, "h").Val(); !reflect.DeepEqual(hv, map[string]string{"f": "3", "g": "5"}) {
				t.Errorf("hash = %v", hv)
			}
			if m := c.SMembers(ctx, "m").Val(); len(m) != 7 {
				t.Errorf("marks = %v, want d0 d2 d3 d5 d6 d7 d8", m)
			}
		})
	}
}

// A stream's cap is applied once at the end of a commit (XTRIM ~), for
// the common effect and the general way alike: a commit of many entries
// leaves each capped stream about its cap with its newest entries, and
// a dry run trims nothing.
func TestCommitTrimsOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	const n = 600
	es := pendingEntries(t, c, n)
	for i := range 300 { // older than any MINID below
		c.XAdd(ctx, &redis.XAddArgs{Stream: "old", ID: strconv.Itoa(i+1) + "-1", Values: []string{"k", "old"}})
	}
	for _, fence := range []string{"", "f1"} {
		t.Run("fence="+fence, func(t *testing.T) {
			lease := leaseKey("in", 0, 1, "t")
			c.Set(ctx, lease, fence, time.Minute)
			var a commitArgs
			a.reset("in", "in:dlq", lease, fence, "t", "", nil, 0, 0)
			for i, e := range es {
				a.processed(e.id, "", []Effect{{Kind: EffectXAdd, Key: "out" + fence, MaxLen: 10, Fields: []string{"i", strconv.Itoa(i)}}})
			}
			a.dryRun(true)
			if _, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil {
				t.Fatal(err)
			}
			if n := xlen(t, c, "out"+fence); n != 0 {
				t.Fatalf("a dry run wrote %d entries", n)
			}
			a.dryRun(false)
			reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
			if err != nil || reply != strings.Repeat("p", n) {
				t.Fatalf("commit = %.20q…, %v", reply, err)
			}
			// MAXLEN ~ keeps whole nodes of 100 entries (the default
			// stream-node-max-entries)
			if got := xlen(t, c, "out"+fence); got < 10 || got > 110 {
				t.Errorf("XLEN = %d after 600 entries capped at 10, want 10..110", got)
			}
			last, _ := c.XRevRangeN(ctx, "out"+fence, "+", "-", 1).Result()
			if len(last) != 1 || last[0].Values["i"] != strconv.Itoa(n-1) {
				t.Errorf("newest entry = %v, want i=%d", last, n-1)
			}
			c.XGroupSetID(ctx, "in", "t", "0")
			if _, err := readNew(ctx, c, "in", "t", "w", n, 10*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Each XADD's cap may trim what one XADD's MAXLEN ~ would (Redis's
	// default LIMIT, 10,000 entries): a commit of 3 entries shrinks a
	// stream 30,000 over its cap to about the cap, and commits of 12,000
	// XADDs to one stream keep it there.
	t.Run("as much as each XADD would", func(t *testing.T) {
		for i := 0; i < 30_000; i += 1000 {
			p := c.Pipeline()
			for range 1000 {
				p.XAdd(ctx, &redis.XAddArgs{Stream: "big", Values: []string{"k", "v"}})
			}
			if _, err := p.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		commitMany := func(n int) {
			t.Helper()
			es := pendingEntries(t, c, n)
			var a commitArgs
			a.reset("in", "in:dlq", "lease", "", "t", "", nil, 0, 0)
			for i, e := range es {
				big := Effect{Kind: EffectXAdd, Key: "big", MaxLen: 100, Fields: []string{"i", strconv.Itoa(i)}}
				a.processed(e.id, "", []Effect{big, big})
			}
			if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != strings.Repeat("p", n) {
				t.Fatalf("commit = %.20q…, %v", reply, err)
			}
		}
		commitMany(2) // 4 XADDs: up to 4 trims of 10,000
		if got := xlen(t, c, "big"); got > 300 {
			t.Errorf("XLEN = %d after a commit of 4 XADDs capped at 100 to a stream of 30,000, want about 100", got)
		}
		for range 2 {
			commitMany(6000)
			if got := xlen(t, c, "big"); got > 300 {
				t.Errorf("XLEN = %d after a commit of 12,000 XADDs capped at 100, want about 100", got)
			}
		}
	})
	t.Run("MINID, the general way", func(t *testing.T) {
		var a commitArgs
		a.reset("in", "in:dlq", "lease", "", "t", "", nil, 0, 0)
		for i, e := range es[:3] {
			a.processed(e.id, "", []Effect{
				{Kind: EffectXAdd, Key: "old", MinID: "250", Fields: []string{"k", strconv.Itoa(i)}},
				{Kind: EffectHSet, Key: "h", Fields: []string{"f", strconv.Itoa(i)}},
			})
		}
		if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != "ppp" {
			t.Fatalf("commit = %q, %v", reply, err)
		}
		kept, _ := c.XRange(ctx, "old", "250", "+").Result()
		if got := xlen(t, c, "old"); got >= 303 || len(kept) != 51+3 {
			t.Errorf("XLEN old = %d, %d entries from 250 on, after MINID ~ 250; want fewer than 303, and 54", got, len(kept))
		}
	})
}

// The dead-letter stream's type is checked only by a commit that writes a
// dead letter: a commit of outputs alone goes through, one with a dead
// letter is refused before it writes anything.
func TestDeadLetterStreamOfAnotherType(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	es := pendingEntries(t, c, 2)
	c.HSet(ctx, "in:dlq", "not", "a stream")
	var a commitArgs
	a.reset("in", "in:dlq", "lease", "", "t", "", nil, 0, 0)
	a.processed(es[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}})
	if got := a.args()[6]; got != "---s" {
		t.Errorf("types without a dead letter = %q, want ---s", got)
	}
	if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != "p" {
		t.Fatalf("commit of an output = %q, %v; want p", reply, err)
	}
	a.reset("in", "in:dlq", "lease", "", "t", "", nil, 0, 0)
	a.deadLetter(es[1].id, "", []string{"data", "x", "eddy.reason", "test"})
	if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != "!hash in:dlq" {
		t.Fatalf("commit of a dead letter = %q, %v; want !hash in:dlq", reply, err)
	}
	if n := pendingCount(t, c, "in"); n != 1 {
		t.Errorf("%d pending, want the dead letter's entry still pending", n)
	}
}

// A dead letter whose dedupe id was seen before is a duplicate: acked, not
// written to the dead-letter stream (a duplicate handled because the
// look-up before handling is left to the commit can fail like any event).
// An id processed earlier in the same commit counts too. A dead letter's
// id is not marked, so a replay of it is processed.
func TestDeadLetterOfASeenIDIsADuplicate(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	es := pendingEntries(t, c, 4)
	c.SAdd(ctx, "m", "old")
	for _, fence := range []string{"", "f"} {
		c.Set(ctx, "lease", fence, time.Minute)
		c.XGroupSetID(ctx, "in", "t", "0")
		c.Del(ctx, "in:dlq", "out")
		if _, err := readNew(ctx, c, "in", "t", "w", 10, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		var a commitArgs
		a.reset("in", "in:dlq", "lease", fence, "t", "m", []string{"m"}, time.Now().Add(time.Hour).UnixMilli(), 0)
		a.deadLetter(es[0].id, "old", []string{"data", "x"})                                               // seen before
		a.processed(es[1].id, "new", []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}}) // marks "new"
		a.deadLetter(es[2].id, "new", []string{"data", "y"})                                               // seen in this commit
		a.deadLetter(es[3].id, "other", []string{"data", "z"})                                             // a real dead letter
		reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
		if err != nil || reply != "upud" {
			t.Fatalf("fence %q: commit = %q, %v; want upud", fence, reply, err)
		}
		if n := xlen(t, c, "in:dlq"); n != 1 {
			t.Errorf("fence %q: %d dead letters, want 1", fence, n)
		}
		if c.SIsMember(ctx, "m", "other").Val() {
			t.Errorf("fence %q: a dead letter's id was marked", fence)
		}
		c.SRem(ctx, "m", "new")
	}
}

// A cap below 0 means no cap, as 0 does: XADD is never sent MAXLEN ~ -1,
// which Redis refuses after the batch is acked.
func TestNegativeMaxLenIsNoCap(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	es := pendingEntries(t, c, 3)
	c.Set(ctx, "lease", "f", time.Minute)
	var a commitArgs
	a.reset("in", "in:dlq", "lease", "f", "t", "", nil, 0, -5)
	a.processed(es[0].id, "", []Effect{{Kind: EffectXAdd, Key: "out", MaxLen: -1, Fields: []string{"k", "v"}}})
	a.processed(es[1].id, "", []Effect{{Kind: EffectXAdd, Key: "out2", MaxLen: -1, Fields: []string{"k", "v"}}, {Kind: EffectHSet, Key: "h", Fields: []string{"f", "v"}}})
	a.deadLetter(es[2].id, "", []string{"data", "x"})
	if reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || reply != "ppd" {
		t.Fatalf("commit = %q, %v; want ppd", reply, err)
	}
	if xlen(t, c, "out") != 1 || xlen(t, c, "out2") != 1 || xlen(t, c, "in:dlq") != 1 {
		t.Errorf("outputs %d %d, dead letters %d; want 1 each", xlen(t, c, "out"), xlen(t, c, "out2"), xlen(t, c, "in:dlq"))
	}
}

// pendingEntries makes group "t" on stream "in", adds n events of key "a"
// and reads them as consumer "w": n entries pending, oldest first.
func pendingEntries(t *testing.T, c *redis.Client, n int) []entry {
	t.Helper()
	ctx := context.Background()
	if err := ensureGroup(ctx, c, "in", "t", StartOldest); err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: "a", Fields: []string{"data", event("a", i)}}
	}
	produce(t, c, 1, recs)
	es, err := readNew(ctx, c, "in", "t", "w", n, 10*time.Millisecond)
	if err != nil || len(es) != n {
		t.Fatalf("read %d entries, %v; want %d", len(es), err, n)
	}
	return es
}
