package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// A rebuild from an input that lost entries (retention trimmed it) would
// switch readers to a read model without them: it is refused, unless
// --allow-partial-history. A rebuild retires the old version's group,
// which would otherwise hold the input's retention back for good.
func TestRebuildRefusesLostHistoryAndRetiresOldGroup(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "accounts.yaml", fmt.Sprintf(rebuildConfig, srv.URL()))
	for i := range 400 {
		s := processor.PartitionStream("ledger", i%4, 4)
		c.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"data", fmt.Sprintf(`{"id":"e%d","account":"a%d","amount":1}`, i, i)}})
	}
	// Version 1's group has read partition 0, and retention trimmed it.
	s0 := processor.PartitionStream("ledger", 0, 4)
	c.XGroupCreate(ctx, s0, "accounts", "$")
	c.XTrimMaxLen(ctx, s0, 10)

	code, out, errOut := eddy(t, "", "rebuild", "-c", cfg, "--pipeline", "accounts", "--progress", "off")
	if code != 2 || !strings.Contains(errOut, "{ledger:0} has lost 90 of the 100 entries ever added to it") || !strings.Contains(errOut, "--allow-partial-history") {
		t.Fatalf("eddy rebuild of a trimmed input = %d\n%s%s\nwant exit 2 naming what was lost and --allow-partial-history", code, out, errOut)
	}
	if v, _ := processor.ReadVersion(ctx, c, "accounts"); v != 1 || c.Exists(ctx, processor.RebuildKey("accounts")).Val() != 0 {
		t.Fatalf("a refused rebuild left version %d and a rebuild record", v)
	}

	code, out, errOut = eddy(t, "", "rebuild", "-c", cfg, "--pipeline", "accounts", "--progress", "off", "--allow-partial-history")
	if code != 0 || !strings.Contains(out, "switched accounts to version 2") || !strings.Contains(out, "destroyed version 1's consumer group accounts") {
		t.Fatalf("eddy rebuild --allow-partial-history = %d\n%s%s", code, out, errOut)
	}
	groups, err := c.XInfoGroups(ctx, s0).Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "accounts:v2" {
		t.Errorf("groups of %s after the rebuild = %+v %v, want accounts:v2 alone", s0, groups, err)
	}
	if n := c.HLen(ctx, "v2:account:a1").Val(); n == 0 {
		t.Errorf("version 2 holds nothing for a1 (partition 1 kept its history)")
	}
}
