package processor

import (
	"fmt"
	"testing"
)

func TestAssignBalancedAndDeterministic(t *testing.T) {
	for _, tc := range []struct{ members, partitions int }{{1, 1}, {1, 8}, {3, 8}, {4, 64}, {5, 3}, {7, 100}} {
		var ms []string
		for i := 0; i < tc.members; i++ {
			ms = append(ms, fmt.Sprintf("w%d", i))
		}
		owners := assign(ms, tc.partitions)
		reversed := make([]string, len(ms))
		for i, m := range ms {
			reversed[len(ms)-1-i] = m
		}
		if fmt.Sprint(assign(reversed, tc.partitions)) != fmt.Sprint(owners) {
			t.Errorf("assign(%d members, %d) depends on the order of members", tc.members, tc.partitions)
		}
		load := map[string]int{}
		for _, o := range owners {
			if o == "" {
				t.Fatalf("assign(%d, %d): a partition has no owner", tc.members, tc.partitions)
			}
			load[o]++
		}
		lo, hi := tc.partitions, 0
		for _, m := range ms {
			lo, hi = min(lo, load[m]), max(hi, load[m])
		}
		if hi-lo > 1 {
			t.Errorf("assign(%d members, %d partitions): loads %v, want within one of each other", tc.members, tc.partitions, load)
		}
	}
}

// A member joining moves few partitions: not much more than its share.
func TestAssignIsSticky(t *testing.T) {
	before := assign([]string{"a", "b", "c", "d"}, 64)
	after := assign([]string{"a", "b", "c", "d", "e"}, 64)
	moved := 0
	for p := range before {
		if before[p] != after[p] {
			moved++
		}
	}
	// e's share is 12 or 13; rebalancing the capacities may move a few more.
	if moved > 20 {
		t.Errorf("a fifth member moved %d of 64 partitions, want about 13", moved)
	}
	if assign(nil, 3)[0] != "" {
		t.Error("assign with no members gave an owner")
	}
}
