package processor

import (
	"reflect"
	"testing"
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
			if got := argv[7]; got != tc.dedupeIDs {
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
		a.deadLetter("1-2", []string{"x", "y"})
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
	want := []any{"g", 1, int64(5), int64(0), "f", "c", "-s-S-s", 1, "e1",
		"1-1", "p", 1, 1, "x", 6, int64(10), 2, "a", "b",
		"1-2", "d", 2, "x", "y",
		"1-3", "a"}
	if !reflect.DeepEqual(v1, want) {
		t.Errorf("argv =\n%v\nwant\n%v", v1, want)
	}
}
