package pipelines

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

func TestLoadConfigs(t *testing.T) {
	files := shippedConfigs(t)
	if len(files) < 3 {
		t.Fatalf("found %d files in configs/, want at least 3", len(files))
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			f, err := Load(name, NewRegistry())
			if err != nil {
				t.Fatalf("Load(%s):\n%v", name, err)
			}
			for _, p := range f.Pipelines {
				o := p.Options()
				if o.Decoder == nil || o.Handler == nil || o.Pipeline != p.Name || o.Stream == "" {
					t.Errorf("pipeline %s: Options() = %+v, want name, stream, decoder and handler set", p.Name, o)
				}
			}
		})
	}
}

func TestDemoConfig(t *testing.T) {
	f, err := Load("../configs/demo.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Redis != nil {
		t.Errorf("demo.yaml: Redis = %+v, want nil (embedded)", f.Redis)
	}
	if f.HTTP.Addr != DefaultHTTPAddr {
		t.Errorf("demo.yaml: HTTP.Addr = %q, want %q", f.HTTP.Addr, DefaultHTTPAddr)
	}
	want := map[string]string{"clickstream": SimulateClickstream, "iot": SimulateIoT}
	if len(f.Simulate) != len(want) {
		t.Fatalf("demo.yaml: %d simulate entries, want %d", len(f.Simulate), len(want))
	}
	for _, s := range f.Simulate {
		if want[s.Pipeline] != s.Kind || f.Pipeline(s.Pipeline) == nil {
			t.Errorf("demo.yaml: simulate %+v, want kind %q for an existing pipeline", s, want[s.Pipeline])
		}
	}
	for _, name := range []string{"clickstream.yaml", "iot.yaml"} {
		f, err := Load("../configs/"+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.Redis == nil || f.Redis.URL == "" {
			t.Errorf("%s: Redis = %+v, want a url", name, f.Redis)
		}
	}
}

func TestLoadBroken(t *testing.T) {
	tests := []struct {
		file string
		want []string // prefixes of the problems, one each, in order
	}{
		{"syntax.yaml", []string{"syntax.yaml:3: did not find expected ',' or '}'"}},
		{"unknown_key.yaml", []string{"unknown_key.yaml:4: pipelines[0].input.strem: unknown key"}},
		{"bad_duration.yaml", []string{`bad_duration.yaml:6: pipelines[0].block: invalid duration "1 sec"`}},
		{"wrong_type.yaml", []string{`wrong_type.yaml:5: pipelines[0].input.partitions: want an integer, got "abc"`}},
		{"missing_key.yaml", []string{"missing_key.yaml:4: pipelines[0].key: required"}},
		{"duplicate_name.yaml", []string{`duplicate_name.yaml:5: pipelines[1].name: duplicate pipeline name "clicks" (first at line 2)`}},
		{"duplicate_key.yaml", []string{"duplicate_key.yaml:5: pipelines[0].key: duplicate key (first at line 4)"}},
		{"bad_expr.yaml", []string{`bad_expr.yaml:6: pipelines[0].steps[0].validate: expression "ts > )"`}},
		{"not_bool.yaml", []string{"not_bool.yaml:7: pipelines[0].steps[1].filter: expression \"lower(page)\": expected bool"}},
		{"unknown_step.yaml", []string{`unknown_step.yaml:7: pipelines[0].steps[1]: unknown step type "enrich"`}},
		{"step_shape.yaml", []string{"step_shape.yaml:6: pipelines[0].steps[0]: want a one-key mapping"}},
		{"state_hash.yaml", []string{"state_hash.yaml:7: pipelines[0].steps[0].state.hash: must not contain braces (Redis Cluster hash tags)"}},
		{"bucket_window.yaml", []string{"bucket_window.yaml:8: pipelines[0].dedupe.bucket: 2h0m0s must not exceed window 1h0m0s"}},
		{"max_backoff.yaml", []string{"max_backoff.yaml:8: pipelines[0].retry.max_backoff: 1s is below backoff 5s"}},
		{"braces.yaml", []string{"braces.yaml:4: pipelines[0].input.stream: must not contain '{' or '}'"}},
		{"simulate_unknown.yaml", []string{`simulate_unknown.yaml:2: simulate[0].pipeline: no pipeline named "clickz"`}},
		{"partitions_zero.yaml", []string{"partitions_zero.yaml:5: pipelines[0].input.partitions: must be between 1 and 1024"}},
		{"bad_name.yaml", []string{`bad_name.yaml:2: pipelines[0].name: "Click Stream" must match`}},
		{"redis_both.yaml", []string{"redis_both.yaml:3: redis.addrs: set url or addrs, not both"}},
		{"no_pipelines.yaml", []string{"no_pipelines.yaml:1: pipelines: at least one pipeline is required"}},
		{"two_documents.yaml", []string{"two_documents.yaml:5: want one YAML document"}},
		{"many.yaml", []string{
			"many.yaml:2: redis.url: required",
			"many.yaml:4: http.addr: want host:port",
			"many.yaml:7: simulate[0].kind: want \"clickstream\" or \"iot\", got \"weather\"",
			"many.yaml:8: simulate[0].rate: must be a number greater than 0",
			"many.yaml:9: simulate[0].duplicates: must be between 0 and 1",
			"many.yaml:14: pipelines[0].input.partitions: must be between 1 and 1024",
			"many.yaml:15: pipelines[0].input.start: want \"oldest\" or \"newest\", got \"latest\"",
			"many.yaml:17: pipelines[0].key: path \"user..id\" has an empty segment",
			"many.yaml:18: pipelines[0].lanes: must be at least 1",
			"many.yaml:20: pipelines[0].retry.max_attempts: must be at least 1",
			"many.yaml:21: pipelines[0].retry.backoff: must be greater than 0",
			"many.yaml:23: pipelines[0].steps[0].map.n: expression \"count +\"",
			"many.yaml:23: pipelines[0].steps[0].map._key: _key and _id are reserved",
			"many.yaml:24: pipelines[0].steps[1].output.stream: required",
			"many.yaml:24: pipelines[0].steps[1].output.max_len: must be at least 0",
			"many.yaml:25: pipelines[0].steps[2].fault.transient: must be between 0 and 1",
			"many.yaml:26: pipelines[1].name: required",
			"many.yaml:30: pipelines[1].dedupe.window: required",
		}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			name := filepath.Join("testdata", "broken", tt.file)
			_, err := Load(name, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Load(%s) = %v, want a *ConfigError", name, err)
			}
			got := strings.Split(ce.Error(), "\n")
			if len(got) != len(tt.want) || len(ce.Problems) != len(tt.want) {
				t.Fatalf("Load(%s): %d problems, want %d:\n%s", name, len(got), len(tt.want), ce)
			}
			for i, w := range tt.want {
				if w = filepath.Join("testdata", "broken", w); !strings.HasPrefix(got[i], w) {
					t.Errorf("Load(%s) problem %d = %q, want prefix %q", name, i, got[i], w)
				}
			}
		})
	}
	files, _ := filepath.Glob("testdata/broken/*.yaml")
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s has no entry in the table", f)
		}
	}
}

func TestParseSyntax(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"a: b\n c: d: e\n", "test.yaml:2: mapping values are not allowed in this context"},
		{"pipelines:\n  - name: x\n   bad: 1\n", "test.yaml:2: did not find expected '-' indicator"},
		{"a: 1\n- b\n", "test.yaml:2: did not find expected key"},
		{"pipelines:\n  - key: [a, b\n", "test.yaml:2: did not find expected ',' or ']'"},
		{"\ta: 1\n", "test.yaml:1: found character that cannot start any token"},
		{"", "test.yaml:1: the file is empty; want a mapping with a pipelines list"},
		{"- a\n", "test.yaml:1: want a mapping, got a list"},
		{"~\n", "test.yaml:1: the file is empty; want a mapping with a pipelines list"},
		{"pipelines: 3\n", `test.yaml:1: pipelines: want a list, got "3"`},
		{"pipelines: [{<<: {name: x}}]\n", "test.yaml:1: pipelines[0]: merge keys (<<) are not supported"},
	}
	for _, tt := range tests {
		got := problems(t, tt.src, nil)
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("Parse(%q) problems = %q, want only %q", tt.src, got, tt.want)
		}
	}
}

func TestParseProblems(t *testing.T) {
	const head = "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n"
	tests := []struct {
		name, src, want string
	}{
		{"redis url", "redis: {url: 'http://x:1'}\n" + head, "test.yaml:1: redis.url: want redis://"},
		{"redis addr", "redis: {addrs: ['x:0', 'y:1']}\n" + head, `test.yaml:1: redis.addrs[0]: want host:port, got "x:0"`},
		{"dead letter loop", head + "    dead_letter: {stream: s}\n", "test.yaml:5: pipelines[0].dead_letter.stream: must differ from input.stream"},
		{"same group", head + "  - name: q\n    input: {stream: s, group: p}\n    key: k\n", `test.yaml:6: pipelines[1].input.group: pipelines[0] already reads stream "s" with group "p"`},
		{"partitions disagree", head + "  - name: q\n    input: {stream: s, partitions: 2}\n    key: k\n", "test.yaml:6: pipelines[1].input.partitions: pipelines[0] reads stream \"s\" with 1 partitions"},
		{"inflight", head + "    batch_size: 100\n    max_inflight: 10\n", "test.yaml:6: pipelines[0].max_inflight: 10 is below batch_size 100"},
		{"event bytes", head + "    max_event_bytes: -2\n", "test.yaml:5: pipelines[0].max_event_bytes: must be at least 1, or -1"},
		{"dedupe id", head + "    dedupe: {window: 1h}\n", "test.yaml:5: pipelines[0].dedupe.id: required"},
		{"null step config", head + "    steps:\n      - require:\n", "test.yaml:6: pipelines[0].steps[0].require: want a list of at least one path"},
		{"fault sum", head + "    steps:\n      - fault: {transient: 0.6, permanent: 0.6}\n", "test.yaml:6: pipelines[0].steps[0].fault: transient + permanent must be at most 1"},
		{"state fields", head + "    steps:\n      - state: {hash: h}\n", "test.yaml:6: pipelines[0].steps[0].state.fields: required"},
		{"expr type", head + "    steps:\n      - map: {a: [1]}\n", "test.yaml:6: pipelines[0].steps[0].map.a: want an expression, got a list"},
		{"string type", "http: {addr: [1]}\n" + head, "test.yaml:1: http.addr: want a string, got a list"},
		{"children of a bad node", "pipelines: [[1]]\n", "test.yaml:1: pipelines[0]: want a mapping, got a list"},
		{"huge max_inflight", head + "    max_inflight: 4611686018427387904\n", "test.yaml:5: pipelines[0].max_inflight: must be at most 1000000"},
		{"inflight under the default batch", head + "    max_inflight: 10\n", "test.yaml:5: pipelines[0].max_inflight: 10 is below batch_size 256"},
		{"too many lanes", head + "    lanes: 100000\n", "test.yaml:5: pipelines[0].lanes: must be at most 4096"},
		{"tiny dedupe bucket", head + "    dedupe: {id: i, window: 1h, bucket: 1ms}\n", "test.yaml:5: pipelines[0].dedupe.bucket: 1ms splits window 1h0m0s into 3600000 sets, over 1024"},
		{"simulate rate inf", head + "simulate: [{pipeline: p, kind: iot, rate: .inf}]\n", "test.yaml:5: simulate[0].rate: must be a number greater than 0"},
		{"simulate nan", head + "simulate: [{pipeline: p, kind: iot, bad: .nan}]\n", "test.yaml:5: simulate[0].bad: must be between 0 and 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src, nil)
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("Parse problems = %q, want one starting %q", got, tt.want)
			}
		})
	}
}

func TestRedisURLProblemHidesPassword(t *testing.T) {
	got := problems(t, "redis: {url: 'redis://u:s3cret@host:port/0'}\npipelines: [{name: p, input: {stream: s}, key: k}]\n", nil)
	if len(got) != 1 || strings.Contains(got[0], "s3cret") {
		t.Errorf("Parse problems = %q, want one, without the password", got)
	}
}

func TestDefaults(t *testing.T) {
	f := parse(t, `
simulate:
  - {pipeline: p, kind: iot}
pipelines:
  - name: p
    input: {stream: s, payload: data}
    key: k
    dedupe: {id: id, window: 8h}
`)
	p := f.Pipelines[0]
	if f.HTTP.Addr != DefaultHTTPAddr {
		t.Errorf("HTTP.Addr = %q, want %q", f.HTTP.Addr, DefaultHTTPAddr)
	}
	if s := f.Simulate[0]; s.Rate != 1000 || s.Keys != 1000 {
		t.Errorf("Simulate[0] = %+v, want rate and keys 1000", s)
	}
	wantIn := Input{Stream: "s", Partitions: 1, Group: "p", Start: processor.StartOldest, Payload: "data"}
	if p.Input != wantIn {
		t.Errorf("Input = %+v, want %+v", p.Input, wantIn)
	}
	if p.DeadLetter.Stream != "s:dlq" {
		t.Errorf("DeadLetter.Stream = %q, want %q", p.DeadLetter.Stream, "s:dlq")
	}
	if p.Dedupe.Bucket != 4*time.Hour { // window 8h / DefaultDedupeBuckets
		t.Errorf("Dedupe.Bucket = %v, want 4h", p.Dedupe.Bucket)
	}
	for _, addr := range []string{`""`, "off"} {
		f := parse(t, "http: {addr: "+addr+"}\npipelines: [{name: p, input: {stream: s}, key: k}]\n")
		if f.HTTP.Addr != "" {
			t.Errorf("http.addr %s: HTTP.Addr = %q, want \"\" (disabled)", addr, f.HTTP.Addr)
		}
	}
}

func TestOptions(t *testing.T) {
	f, err := Load("../configs/clickstream.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := f.Pipelines[0].Options()
	if got.Decoder == nil || got.Handler == nil {
		t.Fatalf("Options(): Decoder %v, Handler %v, want both set", got.Decoder, got.Handler)
	}
	got.Decoder, got.Handler = nil, nil
	want := processor.Options{
		Pipeline: "clickstream", Stream: "clicks", Partitions: 8, Group: "clickstream", Start: processor.StartOldest,
		BatchSize: 256, Block: time.Second, Lanes: 32, MaxInflight: 2048, MaxEventBytes: 65536,
		MaxAttempts: 5, Backoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second, ReclaimAfter: 30 * time.Second,
		DeadLetterStream: "clicks:dlq", DeadLetterMaxLen: 1000000,
		InputRetention: processor.Retention{MaxAge: 168 * time.Hour, MaxLen: 10000000},
		Retain:         []processor.Retained{{Stream: "clicks:enriched", Retention: processor.Retention{MaxAge: 168 * time.Hour, MaxLen: 10000000}}},
		DedupeWindow:   24 * time.Hour, DedupeBucket: time.Hour, DedupeAtCommit: true,
		ShutdownTimeout: 15 * time.Second,
		StateNames:      []string{"sessions", "checkout"}, WrongPartition: processor.WrongPartitionDeadLetter,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Options() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-file.yaml", nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestOrderingAndGroupTiming(t *testing.T) {
	const head = "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n"
	p := parse(t, head+"    ordering: none\n    group: {heartbeat: 250ms, session_timeout: 2s}\n").Pipelines[0]
	o := p.Options()
	if o.Ordering != "none" || o.Heartbeat != 250*time.Millisecond || o.SessionTimeout != 2*time.Second {
		t.Errorf("Options() ordering %q heartbeat %v session_timeout %v, want none 250ms 2s", o.Ordering, o.Heartbeat, o.SessionTimeout)
	}
	for _, tt := range []struct{ src, want string }{
		{head + "    ordering: sorted\n", `test.yaml:5: pipelines[0].ordering: want "key" or "none", got "sorted"`},
		{head + "    group: {heartbeat: 6s}\n", "test.yaml:5: pipelines[0].group.session_timeout: 10s must be at least twice the heartbeat 6s"},
	} {
		if got := problems(t, tt.src, nil); len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
			t.Errorf("Parse problems = %q, want one starting %q", got, tt.want)
		}
	}
}
