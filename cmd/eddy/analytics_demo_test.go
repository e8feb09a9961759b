package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// summaryLine is the part of the reporter's summary line these tests read.
type summaryLine struct {
	Msg       string `json:"msg"`
	Processed int64  `json:"processed"`
	Windows   *int64 `json:"windows"`
	Sessions  *int64 `json:"sessions"`
	Funnels   *int64 `json:"funnels"`
	Alerts    *int64 `json:"alerts"`
	Open      *int64 `json:"open"`
}

// summaries returns the summary lines of a JSON log.
func summaries(log string) []summaryLine {
	var out []summaryLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var s summaryLine
		if json.Unmarshal(sc.Bytes(), &s) == nil && (s.Msg == "summary" || s.Msg == "final_summary") {
			out = append(out, s)
		}
	}
	return out
}

// The embedded demo (configs/demo.yaml with its simulators) runs the
// analytics steps, and its summary line shows window results, sessions,
// funnel results and alerts within a minute or so of starting: the
// simulators' defaults make users pause, journeys end, devices go quiet
// and temperatures rise at the demo's sizes.
func TestDemoAnalyticsSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for up to 90s")
	}
	addr := freeAddr(t)
	cfg, _ := demoConfig(t, true, "\nhttp:\n  addr: "+addr+"\n")
	p := startEddy(t, "run", "-c", cfg)
	var last summaryLine
	waitFor(t, 90*time.Second, "a summary line with windows, sessions, funnels and alerts above 0", func() bool {
		ss := summaries(p.stderr.String())
		if len(ss) == 0 {
			return false
		}
		last = ss[len(ss)-1]
		if last.Windows == nil || last.Sessions == nil || last.Funnels == nil || last.Alerts == nil || last.Open == nil {
			t.Fatalf("summary line without windows, sessions, funnels, alerts or open: %+v", last)
		}
		return *last.Windows > 0 && *last.Sessions > 0 && *last.Funnels > 0 && *last.Alerts > 0
	})
	if *last.Open <= 0 {
		t.Errorf("summary open = %d with the demo running, want > 0 (windows and sessions are open)", *last.Open)
	}
	t.Logf("summary: processed %d, windows %d, sessions %d, funnels %d, alerts %d, open %d",
		last.Processed, *last.Windows, *last.Sessions, *last.Funnels, *last.Alerts, *last.Open)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.stderr.String())
	}
}

// The tally counts the analytics results by kind from the commits' step
// counts, and only those.
func TestTallyCountsResults(t *testing.T) {
	var tl tally
	tl.Committed(processor.Commit{Processed: 3, Counts: map[string]int{
		pipelines.CountName("page_views_10s", "emitted", "window"): 2,
		pipelines.CountName("page_views_10s", "emitted", "update"): 5, // not a closed window
		pipelines.CountName("page_views_10s", "late", ""):          7,
		pipelines.CountName("sessions", "emitted", "session"):      1,
		pipelines.CountName("checkout", "emitted", "funnel"):       4,
		pipelines.CountName("too_hot", "emitted", "alert"):         1,
		pipelines.CountName("too_hot", "emitted", "resolve"):       1, // not raised
		pipelines.CountName("silent", "emitted", "alert"):          2,
		"custom":      9,
		"a/b/window":  100, // "<step>/<what>/<kind>" with another what
		"late/window": 100,
	}})
	tl.Committed(processor.Commit{Counts: map[string]int{pipelines.CountName("sessions", "emitted", "session"): 2}})
	got := []int64{tl.windows.Load(), tl.sessions.Load(), tl.funnels.Load(), tl.alerts.Load(), tl.processed.Load()}
	want := []int64{2, 3, 4, 3, 3}
	for i, name := range []string{"windows", "sessions", "funnels", "alerts", "processed"} {
		if got[i] != want[i] {
			t.Errorf("tally %s = %d, want %d", name, got[i], want[i])
		}
	}
	if n := openGauges(map[string]int64{"sessions/open": 3, "too_hot/open": 1, "other": 5}); n != 4 {
		t.Errorf("openGauges = %d, want 4", n)
	}
}
