package processor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Effects that would fail half-way through the commit (an increment of a
// field that holds no number, increments past 64 bits, PFADD to a string
// that is not a HyperLogLog) are found before anything is written: their
// entries are dead-lettered with reason output_failed and the others of the
// batch commit, each effect once.
func TestValueChecksBeforeAnyWrite(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	c.HSet(ctx, "h:text", "n", "abc")
	c.HSet(ctx, "h:big", "n", "9223372036854775800")
	c.Set(ctx, "plain", "not a hyperloglog", 0)
	var recs []Record
	for _, k := range []string{"ok1", "text", "big", "hll", "ok2"} {
		recs = append(recs, Record{Key: k, Fields: []string{"data", event(k, 0)}})
	}
	produce(t, c, 1, recs)
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		m.Emit("out", 0, "key", m.Key, "id", m.DedupeID, "seq", "0")
		switch m.Key {
		case "text":
			m.Record(Effect{Kind: EffectHIncrBy, Key: "h:text", Fields: []string{"n", "1"}})
		case "big":
			m.Record(Effect{Kind: EffectHIncrBy, Key: "h:big", Fields: []string{"n", "100"}})
		case "hll":
			m.Record(Effect{Kind: EffectPFAdd, Key: "plain", Fields: []string{"x"}})
		default:
			m.Record(Effect{Kind: EffectHIncrBy, Key: "h:ok", Fields: []string{"n", "1"}})
		}
		return nil
	})
	obs := &countingObserver{}
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Observer: obs,
		BatchSize: 10, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitFor(t, 10*time.Second, "all settled", func() bool { return acked(t, c, 1) == 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.HGet(ctx, "h:ok", "n").Val(); got != "2" {
		t.Errorf("h:ok n = %q, want 2", got)
	}
	if got := xlen(t, c, "out"); got != 2 {
		t.Errorf("%d outputs, want 2 (the failing entries write nothing)", got)
	}
	if c.HGet(ctx, "h:text", "n").Val() != "abc" || c.HGet(ctx, "h:big", "n").Val() != "9223372036854775800" {
		t.Error("a refused increment changed its field")
	}
	dls, _, _, err := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3: %+v", len(dls), dls)
	}
	for _, d := range dls {
		if d.Reason != ReasonOutputFailed || !strings.Contains(d.Error, "key ") {
			t.Errorf("dead letter of %s: reason %q, error %q", d.Key, d.Reason, d.Error)
		}
	}
}

// A commit script that fails half-way (here: an entry sets a field to text
// and increments it in the same commit, which the checks, reading what
// Redis holds before the commit, do not see) is not retried blindly, which
// would find its entries acked and lose the rest of their effects: every
// entry of the batch is dead-lettered (commit_failed) and the pipeline
// stops with the error.
func TestCommitFailingInItsScript(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	produce(t, c, 1, []Record{{Key: "a", Fields: []string{"data", event("a", 0)}}})
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		m.Record(Effect{Kind: EffectHSet, Key: "h", Fields: []string{"n", "text"}})
		m.Record(Effect{Kind: EffectHIncrBy, Key: "h", Fields: []string{"n", "1"}})
		return nil
	})
	p, err := New(c, Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Block: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = p.Run(rctx)
	if err == nil || !strings.Contains(err.Error(), ReasonCommitFailed) {
		t.Fatalf("Run = %v, want an error naming %s", err, ReasonCommitFailed)
	}
	dls, _, _, _ := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
	if len(dls) != 1 || dls[0].Reason != ReasonCommitFailed || dls[0].Key != "a" {
		t.Errorf("dead letters = %+v, want a's with reason %s", dls, ReasonCommitFailed)
	}
}

// A value check's HGET refused for another reason than a wrong type (an
// ACL user without +hget) fails the commit with Redis's own error, not as
// a key of the wrong type.
func TestValueCheckRefusedByACL(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nohget", "on", ">pw", "+@all", "-hget", "~*").Err(); err != nil {
		t.Fatal(err)
	}
	es := pendingEntries(t, admin, 1)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "nohget", Password: "pw"})
	defer c.Close()
	var a commitArgs
	a.reset("in", "in:dlq", "lease", "", "t", "", nil, 0, 0)
	a.processed(es[0].id, "", []Effect{{Kind: EffectHIncrBy, Key: "h", Fields: []string{"n", "1"}}})
	reply, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
	if err == nil || !strings.Contains(err.Error(), "can't run this command") {
		t.Errorf("commit as a user without +hget = %q, %v; want Redis's ACL error", reply, err)
	}
	if n := pendingCount(t, admin, "in"); n != 1 {
		t.Errorf("%d pending after a refused commit, want 1", n)
	}
}
