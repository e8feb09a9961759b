package suite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest/suite"
)

const testdata = "../testdata"

// remind is a custom step with a timer: a minute after each event of a
// key (the last one moves it), it writes the key, the event's id and the
// clock's time, unix ms, to its stream.
type remind struct{ stream string }

func (remind) Process(_ context.Context, ev *pipelines.Event) (bool, error) {
	m := ev.Message()
	m.SetTimer("remind", m.Now().Add(time.Minute), m.DedupeID)
	return true, nil
}

func (r remind) Fire(_ context.Context, ev *pipelines.Event) error {
	m := ev.Message()
	m.Emit(r.stream, 0, "key", m.Key, "id", m.Timer.Payload, "at", strconv.FormatInt(m.Now().UnixMilli(), 10))
	return nil
}

func registry(t testing.TB) *pipelines.Registry {
	t.Helper()
	reg := pipelines.NewRegistry()
	err := reg.Register("remind", func(cfg pipelines.StepConfig) (pipelines.Step, error) {
		var c struct {
			Stream string `yaml:"stream"`
		}
		if err := cfg.Decode(&c); err != nil {
			return nil, err
		}
		return remind{stream: c.Stream}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// run loads the test file at path with data (or its own contents when
// data is empty) and runs it.
func run(t *testing.T, path, data string) ([]suite.Result, string) {
	t.Helper()
	if data == "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data = string(b)
	}
	f, err := suite.Parse(path, []byte(data), registry(t))
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	var out bytes.Buffer
	rs := suite.Run(f, &out, suite.Options{SettleTimeout: 20 * time.Second})
	return rs, out.String()
}

// The test files under testdata pass, each test reported "ok".
func TestRunPasses(t *testing.T) {
	for _, name := range []string{"shop.test.yaml", "remind.test.yaml"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(testdata, name)
			rs, out := run(t, path, "")
			if len(rs) == 0 {
				t.Fatalf("no test ran:\n%s", out)
			}
			for _, r := range rs {
				if !r.Passed() {
					t.Errorf("%s failed:\n%s", r.Name, out)
				}
				if !strings.Contains(out, "ok   "+r.Name+"\n") {
					t.Errorf("output lacks %q:\n%s", "ok   "+r.Name, out)
				}
			}
		})
	}
}

// One expectation changed in a passing file fails its test, with a report
// that names the file, line and step, the entry, the field, want and got,
// and shows what was there.
func TestRunDiff(t *testing.T) {
	shop := filepath.Join(testdata, "shop.test.yaml")
	remind := filepath.Join(testdata, "remind.test.yaml")
	for _, tc := range []struct {
		name, file, old, new string
		want                 []string // substrings of the report
	}{
		{"a JSON member", shop, "cents: 1250", "cents: 1251",
			[]string{"FAIL orders are enriched", "shop.test.yaml:16: tests[0].steps[2].expect: stream orders:out:",
				"entry 0: data.cents: want 1251, got 1250", "entry 0 was (id ", `"cents": 1250,`, `"key": "ann"`}},
		{"a placeholder", shop, `{key: ann, data: {cents: 50, ts: "@1m"}}`, `{key: ann, data: {cents: 50, ts: "@2m"}}`,
			[]string{"entry 2: data.ts: want 1767225720000, got 1767225660000"}},
		{"a list", shop, `cents: 1250, ts: "@0s", items: [a, b]`, `cents: 1250, ts: "@0s", items: [a, c]`, []string{`entry 0: data.items[1]: want "c", got "b"`}},
		{"a missing entry", shop, `            - {key: ann, data: {cents: 50, ts: "@1m"}}`,
			"            - {key: ann, data: {cents: 50, ts: \"@1m\"}}\n            - {key: zed}",
			[]string{`entry 3 missing: want {"key":"zed"}`}},
		{"an extra entry", shop, `            - {key: ann, data: {cents: 50, ts: "@1m"}}`, "",
			[]string{"entry 2 extra (want 2 entries, got 3)", `"cents": 50`}},
		{"keyed state", shop, "fields: {n: 2}, exact: true", "fields: {n: 3}, exact: true",
			[]string{`expect_state: state totals of key "ann" in pipeline orders:`, `field n: want 3, got "2"`, "it was:"}},
		{"a hash", shop, "last_amount: 0.5}", "last_amount: 0.25}",
			[]string{"expect_hash: hash user:ann:", `field last_amount: want 0.25, got "0.5"`}},
		{"a field that must be absent", shop, "data: {id: o9, amount: null}", "data: {id: o9, ts: null}",
			[]string{"entry 1: data.ts: want null, got 1780315200000"}},
		{"a dead letter", shop, "{eddy.reason: not_json}", "{eddy.reason: schema}",
			[]string{`entry 0: eddy.reason: want "schema", got "not_json"`}},
		{"a count", shop, `{stream: "orders:out", count: 0}`, `{stream: "orders:out", count: 1}`,
			[]string{"want 1 entries, got 0"}},
		{"a timer's output", remind, `at: "@1m"}`, `at: "@59s"}`,
			[]string{"entry 0: at: want 1772352059000, got \"1772352060000\""}},
		{"a timer that has not fired", remind, "expect: {stream: reminded, count: 0}", "expect: {stream: reminded, count: 1}",
			[]string{"want 1 entries, got 0", "the 0 entries were:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("%s lacks %q", tc.file, tc.old)
			}
			data := strings.Replace(string(b), tc.old, tc.new, 1)
			rs, out := run(t, tc.file, data)
			failed := 0
			for _, r := range rs {
				if !r.Passed() {
					failed++
				}
			}
			if failed != 1 {
				t.Errorf("%d tests failed, want 1:\n%s", failed, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// Entries of different keys sent together come out in any order: ordered:
// false pairs them (a loose expectation does not take the entry a
// stricter one needs), and reports what matched nothing.
func TestRunUnordered(t *testing.T) {
	const file = `
config: shop.yaml
tests:
  - name: unordered
    steps:
      - send:
          pipeline: flat
          events: [{event: {device: a, n: 1}}, {event: {device: b, n: 2}}, {event: {device: c, n: 3}}]
      - expect:
          stream: "flat:out"
          ordered: false
          entries: [{}, {key: c}, {key: a, data: {n: "%s"}}]
`
	rs, out := run(t, filepath.Join(testdata, "x.test.yaml"), strings.Replace(file, "%s", "1", 1))
	if !rs[0].Passed() {
		t.Errorf("unordered match failed:\n%s", out)
	}
	rs, out = run(t, filepath.Join(testdata, "x.test.yaml"), strings.Replace(file, "%s", "9", 1))
	if rs[0].Passed() {
		t.Fatalf("n: 9 matched:\n%s", out)
	}
	for _, w := range []string{`expected entry 2 matches no entry (in any order): want {"key":"a","data":{"n":"9"}}`, "entry ", "extra: matches no expected entry", "the 3 entries were:"} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
}

// Broken test files are refused before anything runs, every problem as
// "file:line: path: message".
func TestParseProblems(t *testing.T) {
	const head = "config: shop.yaml\ntests:\n  - name: t\n    steps:\n"
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"unknown key", head + "      - send: {pipeline: orders, evnets: []}\n",
			[]string{`x.test.yaml:5: tests[0].steps[0].send.evnets: unknown key "evnets" (want one of: pipeline, events)`,
				"x.test.yaml:5: tests[0].steps[0].send: events is required"}},
		{"unknown step", head + "      - wait: 1s\n", []string{`x.test.yaml:5: tests[0].steps[0].wait: unknown step "wait"`}},
		{"unknown top-level key", "config: shop.yaml\ntest: []\n", []string{`x.test.yaml:2: test: unknown key "test"`, "x.test.yaml:1: tests is required"}},
		{"bad duration", head + "      - advance: 2 minutes\n", []string{`x.test.yaml:5: tests[0].steps[0].advance: "2 minutes" is not a duration`}},
		{"bad at", head + "      - send: {pipeline: orders, events: [{at: soon, event: {}}]}\n", []string{`x.test.yaml:5: tests[0].steps[0].send.events[0].at: "soon" is not a duration`}},
		{"missing pipeline", head + "      - send: {events: [{event: {}}]}\n", []string{"x.test.yaml:5: tests[0].steps[0].send: pipeline is required: the config has 2 pipelines (orders, flat)"}},
		{"unknown pipeline", head + "      - send: {pipeline: order, events: [{event: {}}]}\n", []string{`x.test.yaml:5: tests[0].steps[0].send.pipeline: no pipeline "order" in the config (have: orders, flat)`}},
		{"stream typo", head + "      - expect: {stream: \"orders:outt\", count: 0}\n", []string{`x.test.yaml:5: tests[0].steps[0].expect.stream: no pipeline writes a stream "orders:outt" (the config's: flat:dlq, flat:out, orders:dlq, orders:out)`}},
		{"state typo", head + "      - expect_state: {pipeline: orders, name: total, key: a, fields: {}}\n", []string{`x.test.yaml:5: tests[0].steps[0].expect_state.name: pipeline orders has no state "total" (its states: totals)`}},
		{"wrong type", head + "      - expect: {stream: \"orders:out\", count: many}\n", []string{`x.test.yaml:5: tests[0].steps[0].expect.count: want a whole number >= 0, got "many"`}},
		{"clock back", head + "      - advance: 1m\n      - advance_to: 30s\n", []string{"x.test.yaml:6: tests[0].steps[1].advance_to: 30s is before the clock, already at 1m0s from the start"}},
		{"event time back", head + "      - send: {pipeline: orders, events: [{at: 1m, event: {}}, {at: 5s, event: {}}]}\n", []string{"tests[0].steps[0].send.events[1].at: 5s is before the clock"}},
		{"raw event to a flat pipeline", head + "      - send: {pipeline: flat, events: [{event: \"x\"}]}\n", []string{"x.test.yaml:5: tests[0].steps[0].send.events[0].event: pipeline flat reads an entry's own fields, so an event must be a mapping"}},
		{"bad placeholder", head + "      - send: {pipeline: orders, events: [{event: {ts: \"@later\"}}]}\n", []string{`x.test.yaml:5: tests[0].steps[0].send.events[0].event.ts: "@later": a string starting with @ is a time placeholder`}},
		{"count against entries", head + "      - expect: {stream: \"orders:out\", count: 2, entries: [{}]}\n", []string{"tests[0].steps[0].expect.count: count 2 disagrees with the 1 entries"}},
		{"neither entries nor count", head + "      - expect: {stream: \"orders:out\"}\n", []string{"tests[0].steps[0].expect: want entries, count or both"}},
		{"duplicate test name", head + "      - advance: 1s\n  - name: t\n    steps: [{advance: 1s}]\n", []string{`x.test.yaml:6: tests[1].name: "t": another test has this name (line 3)`}},
		{"bad start", "config: shop.yaml\nstart: yesterday\ntests: [{name: t, steps: [{advance: 1s}]}]\n", []string{`x.test.yaml:2: start: "yesterday" is not an RFC 3339 time`}},
		{"no config", "config: nope.yaml\ntests: [{name: t, steps: [{advance: 1s}]}]\n", []string{"x.test.yaml:1: config: read the config:"}},
		{"yaml syntax", "tests: [\n", []string{"x.test.yaml:"}},
		{"no steps", "config: shop.yaml\ntests: [{name: t, steps: []}]\n", []string{"x.test.yaml:2: tests[0].steps: want at least one step"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := suite.Parse(filepath.Join(testdata, "x.test.yaml"), []byte(tc.data), registry(t))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var ce *pipelines.ConfigError
			if !errorsAs(err, &ce) {
				t.Fatalf("Parse error %T, want *pipelines.ConfigError: %v", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error lacks %q:\n%v", w, err)
				}
			}
			for _, p := range ce.Problems {
				if p.Line == 0 && tc.name != "yaml syntax" {
					t.Errorf("problem without a line: %v", p)
				}
			}
		})
	}
}

// A config that does not load is reported with its own problems, after
// one at the test file's config key.
func TestParseBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n    steps: [{filter: 'nope('}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := suite.Parse(filepath.Join(dir, "c.test.yaml"), []byte("tests: [{name: t, steps: [{advance: 1s}]}]\n"), nil)
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	for _, w := range []string{"c.test.yaml:1: config: " + filepath.Join(dir, "c.yaml") + " does not load", "c.yaml:5: pipelines[0].steps[0].filter"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// "@<duration>" in an event or an expectation is the unix ms of the test's
// start plus the duration; "@@" is a literal "@"; a raw string event is
// sent as it is.
func TestPlaceholders(t *testing.T) {
	const file = `
config: shop.yaml
start: 2026-02-03T04:05:06Z
tests:
  - name: placeholders
    steps:
      - send:
          pipeline: orders
          events:
            - {event: {id: o1, user: "@@ann", amount: 1, ts: "@1m30s", back: "@-5s"}}
      - expect:
          stream: "orders:out"
          entries: [{key: "@@ann", data: {user: "@@ann", ts: %s, back: %s}}]
  - name: raw
    start: 2026-02-03T04:05:06Z
    steps:
      - send: {pipeline: orders, events: [{event: "{\"id\": 1"}]}
      - expect_dead_letters: {pipeline: orders, entries: [{eddy.reason: not_json, data: "{\"id\": 1"}]}
`
	start := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	ts := strconv.FormatInt(start.Add(90*time.Second).UnixMilli(), 10)
	back := strconv.FormatInt(start.Add(-5*time.Second).UnixMilli(), 10)
	data := strings.Replace(strings.Replace(file, "%s", ts, 1), "%s", back, 1)
	rs, out := run(t, filepath.Join(testdata, "x.test.yaml"), data)
	for _, r := range rs {
		if !r.Passed() {
			t.Errorf("%s failed:\n%s", r.Name, out)
		}
	}
	data = strings.Replace(strings.Replace(file, "%s", `"@1m31s"`, 1), "%s", back, 1)
	if rs, out := run(t, filepath.Join(testdata, "x.test.yaml"), data); rs[0].Passed() {
		t.Errorf("@1m31s matched an event at @1m30s:\n%s", out)
	}
}

// --run's regular expression: only the tests it matches run.
func TestRunMatch(t *testing.T) {
	f, err := suite.Load(filepath.Join(testdata, "shop.test.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rs := suite.Run(f, &out, suite.Options{Match: regexp.MustCompile("dead")})
	if len(rs) != 1 || rs[0].Name != "bad events are dead-lettered" {
		t.Errorf("Run with Match dead ran %v, want only the dead-letter test:\n%s", rs, out.String())
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		p, f, b int
		want    string
	}{
		{3, 0, 0, "3 passed, 0 failed"},
		{1, 2, 1, "1 passed, 2 failed, 1 test file(s) not loaded"},
	} {
		if got := suite.Summary(tc.p, tc.f, tc.b); got != tc.want {
			t.Errorf("Summary(%d, %d, %d) = %q, want %q", tc.p, tc.f, tc.b, got, tc.want)
		}
	}
}

// A failed expectation does not stop its test: the next ones are checked
// and reported too.
func TestRunGoesOnAfterAFailure(t *testing.T) {
	path := filepath.Join(testdata, "shop.test.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Replace(strings.Replace(string(b), "cents: 1250", "cents: 1", 1), "fields: {n: 2}", "fields: {n: 5}", 1)
	_, out := run(t, path, data)
	for _, w := range []string{"data.cents: want 1, got 1250", `field n: want 5, got "2"`} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
}
