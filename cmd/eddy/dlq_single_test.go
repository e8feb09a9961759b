package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// With one pipeline in the file, produce, dlq list and dlq replay need no
// --pipeline: they act on that one.
func TestOnePipelineNeedsNoFlag(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "one.yaml", `http: {addr: off}
pipelines:
  - name: pay
    input: {stream: pay, payload: data}
    key: account
    steps:
      - validate: 'amount >= 0'
      - output: {stream: "pay:out"}
`)
	if code, out, errOut := eddy(t, `{"account":"a","amount":-1}`+"\n", "--redis", srv.URL(), "produce", "-c", cfg); code != 0 {
		t.Fatalf("produce = %d %s %s", code, out, errOut)
	}
	p := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg)
	waitFor(t, 20*time.Second, "the dead letter", func() bool { return c.XLen(ctx, "pay:dlq").Val() == 1 })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("run exit = %d; log:\n%s", code, p.stderr.String())
	}
	code, out, errOut := eddy(t, "", "--redis", srv.URL(), "dlq", "list", "-c", cfg)
	if code != 0 || !strings.Contains(out, "pay:dlq: 1 dead letter") {
		t.Errorf("dlq list = %d %q %q, want the one dead letter", code, out, errOut)
	}
	code, out, errOut = eddy(t, "", "--redis", srv.URL(), "dlq", "replay", "-c", cfg, "--all")
	if code != 0 || !strings.Contains(out, "replayed 1 dead letter") {
		t.Errorf("dlq replay --all = %d %q %q, want one replayed", code, out, errOut)
	}
}
