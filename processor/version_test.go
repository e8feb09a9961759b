package processor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// The switch happens only once the new version's group holds all the old
// one can: read at least as far, and nothing pending up to where the old
// one has read.
func TestSwitchVersion(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	o := Options{Pipeline: "acc", Stream: "ledger", Partitions: 2}
	for p := range 2 {
		addN(t, c, PartitionStream("ledger", p, 2), 1000, 10)
	}
	read := func(stream, group string, n int64) []string { return readGroup(t, c, stream, group, "w", n) }
	s0, s1 := PartitionStream("ledger", 0, 2), PartitionStream("ledger", 1, 2)
	switchTo := func() error { return SwitchVersion(ctx, c, o, 1, 2) }
	behind := func(where string) {
		t.Helper()
		err := switchTo()
		if !errors.Is(err, ErrVersionBehind) || !strings.Contains(err.Error(), where) {
			t.Fatalf("SwitchVersion = %v, want behind at %s", err, where)
		}
		if v, _ := ReadVersion(ctx, c, "acc"); v != 1 {
			t.Fatalf("version %d after a refused switch", v)
		}
	}

	// Version 1 has read 6 entries of each partition.
	for _, s := range []string{s0, s1} {
		c.XGroupCreate(ctx, s, "acc", "0")
		c.XAck(ctx, s, "acc", read(s, "acc", 6)...)
	}
	behind("no group acc:v2 yet")
	for _, s := range []string{s0, s1} {
		c.XGroupCreate(ctx, s, "acc:v2", "0")
	}
	// Partition 0: read 4, behind the old version's 6.
	c.XAck(ctx, s0, "acc:v2", read(s0, "acc:v2", 4)...)
	behind("read to 1003-0, the old version to 1005-0")
	// Read 3 more (to 1006-0) but leave 1005-0 pending: the old one has it.
	ids := read(s0, "acc:v2", 3)
	c.XAck(ctx, s0, "acc:v2", ids[0], ids[2])
	behind("1005-0 is pending")
	c.XAck(ctx, s0, "acc:v2", ids[1])
	// Partition 1: read all 10, with 1008-0 pending: past what the old
	// version read, so it holds nothing the new one lacks.
	ids = read(s1, "acc:v2", 10)
	c.XAck(ctx, s1, "acc:v2", append(ids[:8:8], ids[9])...)
	if err := switchTo(); err != nil {
		t.Fatalf("SwitchVersion = %v, want the switch", err)
	}
	if v, err := ReadVersion(ctx, c, "acc"); v != 2 || err != nil {
		t.Fatalf("ReadVersion = %d, %v, want 2", v, err)
	}
	// A second switch from 1 finds the version moved on.
	if err := switchTo(); err == nil || !strings.Contains(err.Error(), "the version is now 2, not 1") {
		t.Fatalf("switch again = %v, want the version moved", err)
	}
	c.Set(ctx, VersionKey("acc"), "two", 0)
	if _, err := ReadVersion(ctx, c, "acc"); err == nil || !strings.Contains(err.Error(), `holds "two"`) {
		t.Fatalf("ReadVersion of a bad value = %v", err)
	}
}

// A partition with no entries yet needs no group: nothing to hold.
func TestSwitchVersionEmptyPartition(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	o := Options{Pipeline: "acc", Stream: "ledger", Partitions: 2}
	s0 := PartitionStream("ledger", 0, 2)
	addN(t, c, s0, 1000, 3)
	c.XGroupCreate(ctx, s0, "acc:v2", "0")
	c.XAck(ctx, s0, "acc:v2", readGroup(t, c, s0, "acc:v2", "w", 3)...)
	if err := SwitchVersion(ctx, c, o, 1, 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Get(ctx, VersionKey("acc")).Result(); n != "2" {
		t.Fatalf("version key %q, want 2", n)
	}
}
