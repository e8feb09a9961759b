package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// The README's keyed-state example, run as a user would: a counter kept as
// the key's own state and read back by a later step, exact across a
// restart of the worker; duplicates never count; a read model is written
// under $key.
func TestKeyedStateAsTheReadmeSays(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "state.yaml", `http: {addr: off}
pipelines:
  - name: clickstream
    input: {stream: clicks, partitions: 2, payload: data}
    key: user_id
    dedupe: {id: event_id, window: 1h}
    steps:
      - state: {hash: 'user:$key', fields: {last_page: page}}
      - state: {name: counts, incr: {views: 1}}
      - filter: 'state.counts.views % 100 == 0'
      - output: {stream: "clicks:milestones"}
`)
	var in strings.Builder
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&in, `{"event_id":"e%d","user_id":"u1","page":"/p%d"}`+"\n", i, i)
		if i%10 == 0 { // a resent event: dedupe drops it
			fmt.Fprintf(&in, `{"event_id":"e%d","user_id":"u1","page":"/p%d"}`+"\n", i, i)
		}
	}
	produce := func(s string) {
		t.Helper()
		if code, out, errOut := eddy(t, s, "--redis", srv.URL(), "produce", "-c", cfg); code != 0 {
			t.Fatalf("produce = %d %s %s", code, out, errOut)
		}
	}
	lines := strings.SplitAfter(in.String(), "\n")
	half := len(lines) / 2
	produce(strings.Join(lines[:half], ""))
	stateKey := processor.StateKey("clicks", processor.PartitionOf("u1", 2), 2, "clickstream", "counts", "u1")
	run := func(until func() bool) {
		t.Helper()
		p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--consumer", "w1")
		waitFor(t, 30*time.Second, "the run to settle", until)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("run exit = %d; log:\n%s", code, p.stderr.String())
		}
	}
	firstHalf := map[string]bool{}
	for _, l := range lines[:half] {
		firstHalf[strings.SplitN(l, `"`, 5)[3]] = true // the event_id
	}
	run(func() bool { return c.HGet(ctx, stateKey, "views").Val() == fmt.Sprint(len(firstHalf)) })
	produce(strings.Join(lines[half:], ""))
	run(func() bool { return c.HGet(ctx, stateKey, "views").Val() == "250" })
	ms := c.XRange(ctx, "clicks:milestones", "-", "+").Val()
	if len(ms) != 2 {
		t.Fatalf("milestones = %d, want 2 (views 100 and 200): %v", len(ms), ms)
	}
	if got := c.HGet(ctx, "user:u1", "last_page").Val(); got != "/p249" {
		t.Errorf("read model user:u1 last_page = %q, want /p249", got)
	}
}
