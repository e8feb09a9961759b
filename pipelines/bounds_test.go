package pipelines

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// A valid file cannot make a worker allocate without bound at start:
// partitions × max_inflight is checked, with the engine's defaults for what
// the file leaves out.
func TestMemoryBounds(t *testing.T) {
	const head = "pipelines:\n  - name: p\n    input: {stream: s, partitions: %d}\n    key: k\n"
	pipeline := func(partitions int, rest ...string) string {
		src := fmt.Sprintf(head, partitions)
		for _, r := range rest {
			src += "    " + r + "\n"
		}
		return src
	}
	tests := []struct {
		name, src, want string // want "" means valid
	}{
		{"defaults at the most partitions", pipeline(MaxPartitions), ""},
		{"most lanes at the most partitions", pipeline(1024, "lanes: 4096"), ""},
		{"most entries in flight", pipeline(1024, "max_inflight: 1024", "lanes: 16"), ""},
		{"most in flight on one partition", pipeline(1, "max_inflight: 1000000", "batch_size: 10000"), ""},
		{"shipped clickstream", pipeline(8, "batch_size: 256", "lanes: 32", "max_inflight: 2048"), ""},
		{
			"in flight by default batches", pipeline(1024, "batch_size: 1024"),
			"test.yaml:3: pipelines[0].input.partitions: input.partitions 1024 × max_inflight 4096 (4 × batch_size by default) = 4194304 entries in flight per worker, over 1048576: lower one of them",
		},
		{
			"in flight set", pipeline(8, "max_inflight: 1000000"),
			"test.yaml:5: pipelines[0].max_inflight: input.partitions 8 × max_inflight 1000000 = 8000000 entries in flight per worker, over 1048576: lower one of them",
		},
		{
			"in flight by batch size", pipeline(128, "lanes: 1024", "batch_size: 10000", "max_inflight: 10000"),
			"test.yaml:7: pipelines[0].max_inflight: input.partitions 128 × max_inflight 10000 = 1280000 entries in flight per worker, over 1048576: lower one of them",
		},
		{
			"in flight by batch size alone", pipeline(128, "batch_size: 2049"),
			"test.yaml:3: pipelines[0].input.partitions: input.partitions 128 × max_inflight 8196 (4 × batch_size by default) = 1049088 entries in flight per worker, over 1048576: lower one of them",
		},
		{"a factor out of range is reported alone", pipeline(1024, "lanes: 5000"), "test.yaml:5: pipelines[0].lanes: must be at most 4096"},
		{"max_inflight below batch_size is reported alone", pipeline(1024, "batch_size: 10000", "max_inflight: 5000"), "test.yaml:6: pipelines[0].max_inflight: 5000 is below batch_size 10000"},
		{"simulate keys", pipeline(1) + "simulate: [{pipeline: p, kind: iot, keys: 1000001}]\n", "test.yaml:5: simulate[0].keys: must be at most 1000000"},
		{"simulate keys at the bound", pipeline(1) + "simulate: [{pipeline: p, kind: iot, keys: 1e6}]\n", ""},
		{"retry attempts", pipeline(1, "retry: {max_attempts: 1001}"), "test.yaml:5: pipelines[0].retry.max_attempts: must be at most 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src, nil)
			switch {
			case tt.want == "" && got != nil:
				t.Errorf("Parse problems = %q, want none; source:\n%s", got, tt.src)
			case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
				t.Errorf("Parse problems = %q, want only %q; source:\n%s", got, tt.want, tt.src)
			}
		})
	}
}

// The bound matters and does not get in the way: the defaults stay within
// it at any number of partitions, and every field at its own largest value
// exceeds it.
func TestMemoryBoundsAgainstDefaults(t *testing.T) {
	if n := MaxPartitions * processor.DefaultInflightBatches * processor.DefaultBatchSize; n > MaxInflightEntries {
		t.Errorf("default max_inflight at %d partitions = %d entries, over MaxInflightEntries %d: the bound rejects a file that sets only partitions", MaxPartitions, n, MaxInflightEntries)
	}
	src := fmt.Sprintf("pipelines:\n  - name: p\n    input: {stream: s, partitions: %d}\n    key: k\n    lanes: %d\n    max_inflight: %d\n    batch_size: %d\n",
		MaxPartitions, MaxLanes, MaxInflight, MaxBatchSize)
	if got := problems(t, src, nil); len(got) != 1 || !strings.Contains(got[0], "entries in flight per worker") {
		t.Errorf("every field at its own bound: problems %q, want one about entries in flight", got)
	}
}
