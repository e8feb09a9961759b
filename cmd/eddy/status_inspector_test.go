package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// statusConfig has a partitioned pipeline with ordering key and a
// one-partition pipeline with ordering none.
const statusConfig = `http: {addr: off}
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 3}
    key: user
  - name: iot
    input: {stream: iot}
    key: device
    ordering: none
`

// statusOf runs `eddy status --json` and returns what it prints, decoded
// and as printed.
func statusOf(t *testing.T, args ...string) (statusJSON, string) {
	t.Helper()
	code, out, errOut := eddy(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("eddy %s --json = %d %q %q, want 0", strings.Join(args, " "), code, out, errOut)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("eddy status --json printed %q: %v", out, err)
	}
	return st, out
}

// On a Redis where nothing has run and nothing was produced, `eddy status`
// shows every pipeline with zeros and exits 0, in both outputs.
func TestStatusFreshServer(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeFile(t, "status.yaml", statusConfig)
	args := []string{"--redis", srv.URL(), "status", "-c", cfg}
	st, _ := statusOf(t, args...)
	if len(st.Pipelines) != 2 || st.Pipelines[0].Name != "clicks" || st.Pipelines[1].Name != "iot" {
		t.Fatalf("status --json pipelines = %+v, want clicks and iot", st.Pipelines)
	}
	for _, p := range st.Pipelines {
		if p.Unrouted != 0 || len(p.Workers) != 0 {
			t.Errorf("pipeline %s: unrouted %d, workers %v, want none", p.Name, p.Unrouted, p.Workers)
		}
		for _, s := range p.Partitions {
			if s != (partitionStatus{Partition: s.Partition, Stream: s.Stream}) {
				t.Errorf("pipeline %s: partition %+v, want zeros", p.Name, s)
			}
		}
	}
	if n := len(st.Pipelines[0].Partitions); n != 3 {
		t.Errorf("clicks has %d partitions, want 3", n)
	}

	code, out, errOut := eddy(t, "", args...)
	if code != 0 || !strings.Contains(out, "pipeline clicks") || !strings.Contains(out, "pipeline iot") ||
		strings.Count(out, "0 (no group yet)") != 4 || strings.Contains(out, "warning") {
		t.Errorf("eddy status = %d %q %q, want both pipelines, 4 partitions with no group yet and no warning", code, out, errOut)
	}
}

// A stream with entries and no group yet reports its length as lag; a
// group's lag is what it has not read; entries on the bare stream name of
// a partitioned pipeline are counted and warned about.
func TestStatusBacklogAndUnrouted(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	add := func(stream string, n int) {
		t.Helper()
		for range n {
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"user", "u"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("{clicks:1}", 4)
	add("{clicks:2}", 3)
	add("clicks", 2)
	if err := c.XGroupCreate(ctx, "{clicks:2}", "clicks", "0").Err(); err != nil {
		t.Fatal(err)
	}
	err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "clicks", Consumer: "w1", Streams: []string{"{clicks:2}", ">"}, Count: 1}).Err()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "status.yaml", statusConfig)
	args := []string{"--redis", srv.URL(), "status", "-c", cfg, "--pipeline", "clicks"}

	st, raw := statusOf(t, args...)
	if len(st.Pipelines) != 1 || len(st.Pipelines[0].Partitions) != 3 {
		t.Fatalf("status --json = %+v, want clicks with 3 partitions", st)
	}
	p := st.Pipelines[0]
	if p.Unrouted != 2 {
		t.Errorf("unrouted = %d, want 2", p.Unrouted)
	}
	want := []partitionStatus{
		{Partition: 0, Stream: "{clicks:0}"},
		{Partition: 1, Stream: "{clicks:1}", Length: 4, Lag: 4},
		{Partition: 2, Stream: "{clicks:2}", Length: 3, GroupExists: true, Lag: 2, Pending: 1},
	}
	for i, s := range p.Partitions {
		s.OldestPendingMs = 0 // a wall-clock age
		if s != want[i] {
			t.Errorf("partition %d = %+v, want %+v", i, s, want[i])
		}
	}
	if !strings.Contains(raw, `"group_exists":true`) || !strings.Contains(raw, `"unrouted":2`) {
		t.Errorf("status --json = %s, want group_exists and unrouted fields", raw)
	}

	code, out, errOut := eddy(t, "", args...)
	if code != 0 || !strings.Contains(out, "4 (no group yet)") || strings.Count(out, "no group yet") != 2 ||
		!strings.Contains(out, "warning: 2 entries on the bare stream clicks are never read") ||
		!strings.Contains(out, "processor.PartitionOf(key, 3)") {
		t.Errorf("eddy status = %d %q %q, want lag 4 with no group yet on partition 1 and a warning about 2 unrouted entries", code, out, errOut)
	}
}
