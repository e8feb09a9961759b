package pipelines

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// docTable returns the rows of the markdown tables in the section of
// docs/configuration.md that starts with the heading, as their first
// column (backticks removed) → their second.
func docTable(t testing.TB, heading string) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/configuration.md has no heading %q", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // not a row, or the header or its rule
		}
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
	}
	if len(rows) == 0 {
		t.Fatalf("docs/configuration.md: no table rows under %q", heading)
	}
	return rows
}

func code(v any) string {
	if d, ok := v.(time.Duration); ok {
		return "`" + d.String() + "`"
	}
	return fmt.Sprintf("`%v`", v)
}

// The defaults in docs/configuration.md are the ones the code uses:
// processor's Default* constants and this package's own. A row whose
// default is a value must be listed here, so a new one cannot go unchecked.
func TestDocumentedDefaults(t *testing.T) {
	want := map[string]string{
		"http.addr":                    code(DefaultHTTPAddr),
		"simulate[].rate":              code(DefaultSimulateRate),
		"simulate[].keys":              code(DefaultSimulateKeys),
		"simulate[].duplicates":        code(0),
		"simulate[].bad":               code(0),
		"simulate[].via":               code(`""`),
		"pipelines[].input.max_future": code(DefaultMaxFuture),
		"pipelines[].input.retention.abandoned_after":       code(processor.DefaultAbandonedAfter),
		"pipelines[].dead_letter.retention.abandoned_after": code(processor.DefaultAbandonedAfter),
		"console":                             "on, read-only",
		"console.off":                         code(false),
		"tracing":                             "none: no spans",
		"tracing.otlp_endpoint":               "`OTEL_EXPORTER_OTLP_ENDPOINT`",
		"tracing.sample_ratio":                code(1),
		"pipelines[].input.partitions":        code(processor.DefaultPartitions),
		"pipelines[].input.start":             code(processor.StartOldest),
		"pipelines[].input.payload":           code(`""`),
		"pipelines[].dedupe.bucket":           fmt.Sprintf("window / %d", processor.DefaultDedupeBuckets),
		"pipelines[].batch_size":              code(processor.DefaultBatchSize),
		"pipelines[].block":                   code(processor.DefaultBlock),
		"pipelines[].lanes":                   code(processor.DefaultLanes),
		"pipelines[].max_inflight":            fmt.Sprintf("%d × batch_size", processor.DefaultInflightBatches),
		"pipelines[].max_event_bytes":         code(processor.DefaultMaxEventBytes),
		"pipelines[].shutdown_timeout":        code(processor.DefaultShutdownTimeout),
		"pipelines[].ordering":                code(processor.OrderingKey),
		"pipelines[].group.heartbeat":         code(processor.DefaultHeartbeat),
		"pipelines[].group.session_timeout":   code(processor.DefaultSessionTimeout),
		"pipelines[].retry.max_attempts":      code(processor.DefaultMaxAttempts),
		"pipelines[].retry.backoff":           code(processor.DefaultBackoff),
		"pipelines[].retry.max_backoff":       code(processor.DefaultMaxBackoff),
		"pipelines[].retry.reclaim_after":     code(processor.DefaultReclaimAfter),
		"pipelines[].dead_letter.stream":      code("<input.stream>" + processor.DefaultDeadLetterSuffix),
		"pipelines[].dead_letter.max_len":     code(0),
		"pipelines[].input.event_time":        code(`""`),
		"pipelines[].step_timeout":            code(processor.DefaultStepTimeout),
		"pipelines[].state_cache_size":        code(processor.DefaultStateCacheSize),
		"pipelines[].wrong_partition":         code(processor.WrongPartitionProcess),
		"pipelines[].timers.tick":             code(processor.DefaultTimerTick),
		"pipelines[].timers.allowed_lateness": code(time.Duration(0)),
		"pipelines[].timers.idle_watermark":   code(processor.DefaultIdleWatermark),
	}
	// Defaults that are not values: nothing to compare.
	notValues := map[string]bool{
		"": true, "required": true, "required in `redis`": true, "required in `dedupe`": true,
		"none": true, "none: embedded": true, "—": true, "off": true, "the pipeline name": true,
	}
	rows := docTable(t, "## Top level")
	for k, v := range docTable(t, "## A pipeline") {
		rows[k] = v
	}
	for path, w := range want {
		got, ok := rows[path]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md has no row for `%s`", path)
		case got != w:
			t.Errorf("docs/configuration.md: `%s` default %s, want %s (the code's)", path, got, w)
		}
	}
	for path, got := range rows {
		if _, ok := want[path]; !ok && !notValues[got] {
			t.Errorf("docs/configuration.md: `%s` default %s is not checked: add it to TestDocumentedDefaults", path, got)
		}
	}
	if DefaultSimulateKeys != simulate.DefaultKeys {
		t.Errorf("DefaultSimulateKeys = %d, want simulate.DefaultKeys %d", DefaultSimulateKeys, simulate.DefaultKeys)
	}
}

// The limits in docs/configuration.md are the ones validation checks.
func TestDocumentedLimits(t *testing.T) {
	want := map[string]int{
		"input.partitions":                MaxPartitions,
		"batch_size":                      MaxBatchSize,
		"lanes":                           MaxLanes,
		"max_inflight":                    MaxInflight,
		"input.partitions × max_inflight": MaxInflightEntries,
		"retry.max_attempts":              MaxRetryAttempts,
		"dedupe.window / dedupe.bucket":   MaxDedupeBuckets,
		"simulate[].keys":                 MaxSimulateKeys,
	}
	rows := docTable(t, "## Limits")
	for what, w := range want {
		if got := rows[what]; got != code(w) {
			t.Errorf("docs/configuration.md, Limits: `%s` = %q, want %s", what, got, code(w))
		}
	}
	for what := range rows {
		if _, ok := want[what]; !ok {
			t.Errorf("docs/configuration.md, Limits: `%s` is not checked: add it to TestDocumentedLimits", what)
		}
	}
}
