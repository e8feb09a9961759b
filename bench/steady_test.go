package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/dedupe"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// premark makes every set Eddy's commit looks ids up in, of every
// partition, holding the total between them, each with the engine's
// expiry; the baseline's one set gets the same total and no expiry.
func TestPremark(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	b := &bencher{o: Options{Consumers: 2}, rdb: rdb}
	n := runNames(newPrefix(), 1)
	const total = 1001

	if err := b.premark(ctx, &sideRun{side: SideEddy, names: n, group: eddyGroup}, total); err != nil {
		t.Fatal(err)
	}
	w := dedupe.Window{Window: dedupeWindow, Bucket: dedupeWindow / processor.DefaultDedupeBuckets} // as the engine's default
	now := time.Now()
	var sum int64
	for p := range 2 {
		keys := w.Check(processor.DedupePrefix(n.input(), p, 2, eddyGroup), now)
		if len(keys) != processor.DefaultDedupeBuckets+1 {
			t.Fatalf("partition %d: the commit looks in %d sets, want %d", p, len(keys), processor.DefaultDedupeBuckets+1)
		}
		for _, k := range keys {
			c := rdb.SCard(ctx, k).Val()
			ttl := rdb.PTTL(ctx, k).Val()
			if c == 0 || ttl <= 0 || ttl > dedupeWindow+dedupeWindow/processor.DefaultDedupeBuckets {
				t.Errorf("set %s: %d ids, time to live %v; want some ids and at most the window and a bucket", k, c, ttl)
			}
			sum += c
		}
	}
	if sum != total {
		t.Errorf("Eddy's sets hold %d ids together, want %d", sum, total)
	}

	if err := b.premark(ctx, &sideRun{side: SideBaseline, names: n, group: baselineGroup}, total); err != nil {
		t.Fatal(err)
	}
	if c, ttl := rdb.SCard(ctx, n.seen()).Val(), rdb.PTTL(ctx, n.seen()).Val(); c != total || ttl != -1 {
		t.Errorf("the baseline's set: %d ids, time to live %v; want %d and none", c, ttl, total)
	}
}

// verifyCounts adds the counters of every key of every partition up.
func TestVerifyCounts(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	b := &bencher{o: Options{Consumers: 3}, rdb: rdb}
	n := runNames(newPrefix(), 1)
	r := &sideRun{side: SideEddyIncr, names: n, group: eddyGroup}
	for p := range 3 {
		for _, user := range []string{"u1", "u2"} {
			rdb.HSet(ctx, processor.StateKey(n.input(), p, 3, eddyGroup, stateName, user), stateField, p+1)
		}
	}
	rdb.HSet(ctx, processor.StateKey(n.input(), 0, 3, eddyGroup, "other", "u1"), stateField, 100)
	if err := b.verifyCounts(ctx, r, 12); err != nil {
		t.Errorf("verifyCounts(12) = %v, want nil", err)
	}
	if err := b.verifyCounts(ctx, r, 13); err == nil || !strings.Contains(err.Error(), "add up to 12, want 13") {
		t.Errorf("verifyCounts(13) = %v, want an error saying they add up to 12", err)
	}
}

// The stateful sides' pipelines have the state step before the output.
func TestEddyConfigState(t *testing.T) {
	n := runNames("p:", 1)
	for _, side := range []Side{SideEddy, SideEddyIncr, SideEddyRMW} {
		cfg := eddyConfig(n, Standard(), side)
		state := strings.Index(cfg, "- state:")
		out := strings.Index(cfg, "- output:")
		switch {
		case side == SideEddy && state >= 0:
			t.Errorf("%s config has a state step:\n%s", side, cfg)
		case side != SideEddy && (state < 0 || state > out):
			t.Errorf("%s config lacks a state step before the output:\n%s", side, cfg)
		}
	}
}
