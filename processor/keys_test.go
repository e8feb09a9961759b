package processor

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// The README's routing table is what producers in other languages
// implement against; this test keeps it true.
func TestREADMEPartitionVectors(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]*)` \\| (\\d+) \\| (\\d+) \\| (\\d+) \\| (\\d+) \\|$")
	rows := row.FindAllStringSubmatch(string(readme), -1)
	if len(rows) < 5 {
		t.Fatalf("README has %d routing vectors, want at least 5", len(rows))
	}
	for _, r := range rows {
		key := r[1]
		hash, _ := strconv.ParseUint(r[2], 10, 32)
		if got := fnv32a(key); uint64(got) != hash {
			t.Errorf("fnv32a(%q) = %d, README says %d", key, got, hash)
		}
		for i, n := range []int{4, 16, 1000} {
			want, _ := strconv.Atoi(r[3+i])
			if got := PartitionOf(key, n); got != want {
				t.Errorf("PartitionOf(%q, %d) = %d, README says %d", key, n, got, want)
			}
		}
	}
}

func TestKeyNames(t *testing.T) {
	tests := []struct {
		stream     string
		p, n       int
		wantStream string
		wantDedupe string
		wantState  string
	}{
		{"clicks", 0, 1, "clicks", "{clicks}:eddy:dedupe:g", "{clicks}:eddy:state:g:counts:u1"},
		{"clicks", 3, 4, "{clicks:3}", "{clicks:3}:eddy:dedupe:g", "{clicks:3}:eddy:state:g:counts:u1"},
	}
	for _, tt := range tests {
		if got := PartitionStream(tt.stream, tt.p, tt.n); got != tt.wantStream {
			t.Errorf("PartitionStream(%q, %d, %d) = %q, want %q", tt.stream, tt.p, tt.n, got, tt.wantStream)
		}
		if got := DedupePrefix(tt.stream, tt.p, tt.n, "g"); got != tt.wantDedupe {
			t.Errorf("DedupePrefix(%q, %d, %d) = %q, want %q", tt.stream, tt.p, tt.n, got, tt.wantDedupe)
		}
		if got := StateKey(tt.stream, tt.p, tt.n, "g", "counts", "u1"); got != tt.wantState {
			t.Errorf("StateKey(%q, %d, %d) = %q, want %q", tt.stream, tt.p, tt.n, got, tt.wantState)
		}
		if keySlot(StateKey(tt.stream, tt.p, tt.n, "g", "counts", "u1")) != keySlot(tt.wantStream) {
			t.Errorf("StateKey(%q, %d, %d) is in another slot than its partition", tt.stream, tt.p, tt.n)
		}
	}
}

// Lanes must all get work even when lanes and partitions share factors.
func TestLaneSpread(t *testing.T) {
	const partitions, lanes = 4, 32
	used := map[int]bool{}
	for i := 0; i < 20000; i++ {
		key := "k" + strconv.Itoa(i)
		if PartitionOf(key, partitions) == 1 {
			used[laneOf(key, lanes)] = true
		}
	}
	if len(used) != lanes {
		t.Errorf("keys of one partition use %d of %d lanes, want all", len(used), lanes)
	}
}
