package processor

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// With a fence and no id found in a set, the commit script marks the ids
// straight from its arguments (no table per id): every processed entry's
// id is marked and no dead letter's; an id repeated in the batch is sent
// once, its later entries as duplicates, whichever way the script goes.
// Each case runs with and without a fence (an XACK per entry), and with a
// hit in the set, so that the slow way answers the same.
func TestCommitDedupeFastPath(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	out := func(v string) []Effect { return []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", v}}} }
	type step struct {
		dead bool
		did  string
	}
	tests := []struct {
		name    string
		steps   []step
		reply   string
		marked  []string
		outputs int64
	}{
		{"no duplicates", []step{{false, "a"}, {false, "b"}, {true, "c"}, {false, ""}}, "ppdp", []string{"a", "b"}, 3},
		{"repeated", []step{{false, "a"}, {false, "a"}, {false, "b"}, {false, "a"}}, "pupu", []string{"a", "b"}, 2},
		{"dead letter after", []step{{false, "a"}, {true, "a"}}, "pu", []string{"a"}, 1},
		{"dead letter before", []step{{true, "a"}, {false, "a"}, {true, "a"}}, "dpu", []string{"a"}, 1},
		{"only dead letters", []step{{true, "a"}, {true, "b"}}, "dd", nil, 0},
	}
	for _, tt := range tests {
		for _, fence := range []string{"", "f1"} {
			for _, hit := range []bool{false, true} {
				name := tt.name + "/fence=" + fence
				if hit {
					name += "/hit"
				}
				t.Run(name, func(t *testing.T) {
					c.FlushAll(ctx)
					lease := leaseKey("in", 0, 1, "t")
					c.Set(ctx, lease, fence, time.Minute)
					es := pendingEntries(t, c, len(tt.steps))
					if hit {
						c.SAdd(ctx, "m0", "old") // makes the script take the slow way
					}
					var a commitArgs
					a.reset("in", "in:dlq", lease, fence, "t", "m", []string{"m", "m0"}, time.Now().Add(time.Hour).UnixMilli(), 0)
					for i, s := range tt.steps {
						if s.dead {
							a.deadLetter(es[i].id, s.did, []string{"data", "x"})
						} else {
							a.processed(es[i].id, s.did, out(s.did))
						}
					}
					args := a.args()
					reply, err := commitScript.Run(ctx, c, a.keys, args...).Text()
					if err != nil || reply != tt.reply {
						t.Fatalf("commit = %q, %v; want %q", reply, err, tt.reply)
					}
					marked := c.SMembers(ctx, "m").Val()
					slices.Sort(marked)
					if !slices.Equal(marked, tt.marked) {
						t.Errorf("marked %q, want %q", marked, tt.marked)
					}
					if ttl := c.PTTL(ctx, "m").Val(); len(tt.marked) > 0 && ttl <= 0 {
						t.Errorf("the mark set's time to live is %v, want one", ttl)
					}
					if n := xlen(t, c, "out"); n != tt.outputs {
						t.Errorf("%d outputs, want %d", n, tt.outputs)
					}
					if n := xlen(t, c, "in:dlq"); n != int64(countOf(tt.reply, 'd')) {
						t.Errorf("%d dead letters, want %d", n, countOf(tt.reply, 'd'))
					}
					// Run again, as after a lost reply: nothing more is written.
					again, err := commitScript.Run(ctx, c, a.keys, args...).Text()
					if err != nil || len(again) != len(tt.reply) || countOf(again, 'p')+countOf(again, 'd') != 0 {
						t.Errorf("the same commit again = %q, %v; want nothing processed", again, err)
					}
					if n := xlen(t, c, "out"); n != tt.outputs {
						t.Errorf("%d outputs after the retry, want %d", n, tt.outputs)
					}
				})
			}
		}
	}
}

// A dry run with a fence writes nothing, marks included, and answers as
// the commit then does.
func TestCommitDedupeFastPathDryRun(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	lease := leaseKey("in", 0, 1, "t")
	c.Set(ctx, lease, "f1", time.Minute)
	es := pendingEntries(t, c, 3)
	var a commitArgs
	a.reset("in", "in:dlq", lease, "f1", "t", "m", []string{"m"}, time.Now().Add(time.Hour).UnixMilli(), 0)
	for i, did := range []string{"a", "a", "b"} {
		a.processed(es[i].id, did, []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", did}}})
	}
	a.dryRun(true)
	dry, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text()
	if err != nil || dry != "pup" {
		t.Fatalf("dry run = %q, %v; want pup", dry, err)
	}
	if n := c.Exists(ctx, "m", "out").Val(); n != 0 {
		t.Errorf("a dry run wrote %d keys, want none", n)
	}
	a.dryRun(false)
	if got, err := commitScript.Run(ctx, c, a.keys, a.args()...).Text(); err != nil || got != dry {
		t.Errorf("commit = %q, %v; want what the dry run said, %q", got, err, dry)
	}
}

// The ids sent with a fence hold each processed entry's id once.
func TestCommitArgsSendAnIDOnce(t *testing.T) {
	var a commitArgs
	a.reset("in", "dlq", "lease", "f", "g", "m", []string{"m"}, 5, 0)
	x := []Effect{{Kind: EffectXAdd, Key: "out", Fields: []string{"k", "v"}}}
	a.processed("1-1", "e1", x)
	a.processed("1-2", "e1", x)
	a.deadLetter("1-3", "e1", []string{"f", "v"})
	a.processed("1-4", "e2", []Effect{{Kind: EffectHSet, Key: "h", Fields: []string{"f", "v"}}})
	if want := []any{"e1", "e2"}; !slices.Equal(a.ids, want) {
		t.Errorf("ids = %v, want %v", a.ids, want)
	}
	a.reset("in", "dlq", "lease", "", "g", "m", []string{"m"}, 5, 0)
	a.processed("1-1", "e1", x)
	a.processed("1-2", "e1", x)
	if want := []any{"e1", "e1"}; !slices.Equal(a.ids, want) {
		t.Errorf("without a fence ids = %v, want %v (the script answers the second)", a.ids, want)
	}
}

func countOf(s string, b byte) int {
	n := 0
	for i := range len(s) {
		if s[i] == b {
			n++
		}
	}
	return n
}
