package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// eddy run trims its input under retention, and when another pipeline's
// group (its worker down) holds the cap back it says so in the log and on
// /metrics, and trims nothing that group has not read; once the group is
// gone, the stream comes down to the cap.
func TestRunRetentionHeldBackOnMetrics(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	for i := range 300 {
		c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []string{"data", fmt.Sprintf(`{"k":"k%d","n":%d}`, i%7, i)}})
	}
	// Pipeline b's worker ran once, created its group, and is down.
	if err := c.XGroupCreate(ctx, "s", "b", "0").Err(); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	cfg := writeFile(t, "r.yaml", fmt.Sprintf(`redis: {url: "redis://%s/0"}
http: {addr: %s}
pipelines:
  - name: a
    input: {stream: s, payload: data, retention: {max_len: 50}}
    key: k
  - name: b
    input: {stream: s, payload: data}
    key: k
`, srv.Addr(), httpAddr))
	p := startEddy(t, "run", "-c", cfg, "--pipeline", "a", "--consumer", "w1")
	var page string
	waitFor(t, 40*time.Second, "eddy_retention_held_back_entries for group b", func() bool {
		page = scrape(httpAddr)
		return metricValue(page, `eddy_retention_held_back_entries`) >= 250
	})
	for _, want := range []string{
		`eddy_retention_held_back_entries{group="b",stream="s"} 250`,
		`eddy_retention_abandoned{group="b",stream="s"} 1`,
		`eddy_retention_length{stream="s"} 300`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(page, "eddy_retention"))
		}
	}
	held := p.logLines("retention_held_back")
	if len(held) == 0 || held[0]["held_by"] != "b" || held[0]["stream"] != "s" || held[0]["abandoned"] != true {
		t.Errorf("retention_held_back log = %v, want held_by b on s, abandoned", held)
	}
	if n := c.XLen(ctx, "s").Val(); n != 300 {
		t.Errorf("XLEN s = %d while group b has read nothing, want 300", n)
	}
	// b's group is destroyed: the next round trims to the cap.
	c.XGroupDestroy(ctx, "s", "b")
	waitFor(t, 40*time.Second, "the stream trimmed to 50", func() bool { return c.XLen(ctx, "s").Val() == 50 })
	waitFor(t, 20*time.Second, "the held-back series back at 0", func() bool {
		page = scrape(httpAddr)
		return strings.Contains(page, `eddy_retention_held_back_entries{group="b",stream="s"} 0`) && metricValue(page, "eddy_retention_trimmed_total") == 250
	})
	if len(p.logLines("retention_released")) == 0 {
		t.Errorf("no retention_released log line")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
