package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

const (
	schemaV1 = `{"type": "object", "required": ["device_id", "value"], "additionalProperties": false,
  "properties": {"device_id": {"type": "string"}, "value": {"type": "number"}, "schema_version": {"type": "integer"}}}`
	// a new optional property in a closed model: backward, not forward
	schemaV2 = `{"type": "object", "required": ["device_id", "value"], "additionalProperties": false,
  "properties": {"device_id": {"type": "string"}, "value": {"type": "number"}, "schema_version": {"type": "integer"},
    "firmware": {"type": "string"}}}`
	// a property made required: forward, not backward
	schemaRequired = `{"type": "object", "required": ["device_id", "value", "schema_version"], "additionalProperties": false,
  "properties": {"device_id": {"type": "string"}, "value": {"type": "number"}, "schema_version": {"type": "integer"}}}`
	schemaOneOf = `{"type": "object", "required": ["device_id", "value"], "additionalProperties": false,
  "properties": {"device_id": {"type": "string"}, "value": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    "schema_version": {"type": "integer"}}}`
)

// schemaDir writes a config registering reading v1 (and extra YAML after
// its pipelines) and the new schemas, and returns the directory.
func schemaDir(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"eddy.yaml": `schemas:
  - {type: reading, version: 1, file: schemas/reading.v1.json}
pipelines:
  - name: iot
    input: {stream: readings, partitions: 2, payload: data}
    key: device_id
    steps:
      - schema: {type: reading}
` + extra,
		"schemas/reading.v1.json": schemaV1,
		"v2.json":                 schemaV2,
		"required.json":           schemaRequired,
		"oneof.json":              schemaOneOf,
		"broken.json":             `{"type": `,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSchemaCheck(t *testing.T) {
	dir := schemaDir(t, "")
	cfg := filepath.Join(dir, "eddy.yaml")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
	}{
		{"optional property added, closed: backward", []string{filepath.Join(dir, "v2.json")}, 0, []string{
			"reading: version 1 (" + filepath.Join(dir, "schemas/reading.v1.json") + ") -> " + filepath.Join(dir, "v2.json"),
			"backward: compatible (",
			"forward: incompatible\n  - breaks at /properties/firmware: additionalProperties: \"firmware\" is not allowed by the old schema",
			"compatibility: backward\n", "mode backward: ok\n",
		}},
		{"the same in mode forward", []string{"--mode", "forward", filepath.Join(dir, "v2.json")}, 1, []string{
			"compatibility: backward\n", "mode forward: not forward compatible\n",
		}},
		{"the same in mode full", []string{"--mode", "full", "--against", "1", filepath.Join(dir, "v2.json")}, 1, []string{
			"mode full: not full compatible\n",
		}},
		{"required added: forward", []string{filepath.Join(dir, "required.json")}, 1, []string{
			"backward: incompatible\n  - breaks at /required: required: the new schema requires \"schema_version\"; old events without it fail",
			"forward: compatible (version 1 reads every event", "compatibility: forward\n", "mode backward: not backward compatible\n",
		}},
		{"unchanged: full", []string{"--mode", "full", filepath.Join(dir, "schemas/reading.v1.json")}, 0, []string{
			"compatibility: full\n", "mode full: ok\n",
		}},
		{"oneOf: unknown, never compatible", []string{filepath.Join(dir, "oneof.json")}, 1, []string{
			"backward: unknown\n  - unknown at /properties/value/oneOf: oneOf:",
			"mode backward: backward compatibility not proven (unknown)\n",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"schema", "check", "-c", cfg, "--type", "reading"}, tt.args...)
			code, stdout, stderr := eddy(t, "", args...)
			if code != tt.code {
				t.Errorf("eddy %s = exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, tt.code, stdout, stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestSchemaCheckUsage(t *testing.T) {
	dir := schemaDir(t, "  - name: other\n    input: {stream: o, payload: data}\n    key: k\n  - name: fields\n    input: {stream: f}\n    key: k\n")
	cfg := filepath.Join(dir, "eddy.yaml")
	v2 := filepath.Join(dir, "v2.json")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-c", cfg, "--type", "reading"}, 2, "want one argument, the new schema file"},
		{[]string{"-c", cfg, "--type", "reading", v2, v2}, 2, "got 2"},
		{[]string{"-c", cfg, v2}, 2, "--type is required"},
		{[]string{"--type", "reading", v2}, 2, "-c FILE is required"},
		{[]string{"-c", cfg, "--type", "click", v2}, 2, `--type "click": ` + cfg + ` registers no schema of that type (types: reading)`},
		{[]string{"-c", cfg, "--type", "reading", "--against", "3", v2}, 2, "--against 3: " + cfg + " registers no reading version 3 (versions: 1)"},
		{[]string{"-c", cfg, "--type", "reading", "--mode", "sideways", v2}, 2, `mode "sideways": want backward, forward or full`},
		{[]string{"-c", cfg, "--type", "reading", "--replay", "-1", v2}, 2, "--replay -1: want 0 to 1000000"},
		{[]string{"-c", cfg, "--type", "reading", "--pipeline", "iot", v2}, 2, "--pipeline goes with --replay N"},
		{[]string{"-c", cfg, "--type", "reading", "--replay", "5", "--pipeline", "nosuch", v2}, 2, `--pipeline "nosuch": no such pipeline`},
		{[]string{"-c", cfg, "--type", "reading", "--replay", "5", "--pipeline", "fields", v2}, 2, `--replay: pipeline "fields" has no input.payload`},
		// Without --pipeline: the only pipeline with a schema step for the
		// type; the file has no Redis, and --replay needs one.
		{[]string{"-c", cfg, "--type", "reading", "--replay", "5", v2}, 2, "works on a Redis"},
		{[]string{"-c", cfg, "--type", "reading", "--replay", "5", "--pipeline", "other", v2}, 2, "works on a Redis"},
		{[]string{"-c", cfg, "--type", "reading", filepath.Join(dir, "missing.json")}, 1, "cannot read " + filepath.Join(dir, "missing.json")},
		{[]string{"-c", cfg, "--type", "reading", filepath.Join(dir, "broken.json")}, 1, "broken.json: not valid JSON: line 1, column 10: unexpected end of input"},
		{[]string{"-c", filepath.Join(dir, "v2.json"), "--type", "reading", v2}, 1, "problem(s)"},
	}
	for _, tt := range tests {
		args := append([]string{"schema", "check"}, tt.args...)
		code, stdout, stderr := eddy(t, "", args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("eddy %s = exit %d, stderr %q; want exit %d, stderr with %q", strings.Join(args, " "), code, stderr, tt.code, tt.stderr)
		}
		if code == 2 && stdout != "" {
			t.Errorf("eddy %s: a usage error printed %q on stdout", strings.Join(args, " "), stdout)
		}
	}
}

func TestSchemaCheckReplay(t *testing.T) {
	srv := redistest.Start(t)
	dir := schemaDir(t, "")
	cfg := filepath.Join(dir, "eddy.yaml")
	newFile := filepath.Join(dir, "required.json") // wants a schema_version

	// From an empty Redis: nothing to check, and nothing fails.
	code, stdout, stderr := eddy(t, "", "--redis", srv.URL(), "schema", "check", "-c", cfg, "--type", "reading", "--mode", "forward", "--replay", "10", newFile)
	if code != 0 || !strings.Contains(stdout, "replay: pipeline iot, stream readings (2 partitions): 0 events checked\n") {
		t.Fatalf("replay of an empty Redis = exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	ctx := context.Background()
	rdb := srv.Client(t)
	p0, p1 := processor.PartitionStream("readings", 0, 2), processor.PartitionStream("readings", 1, 2)
	for _, e := range []struct {
		stream, id string
		values     []string
	}{
		{p0, "1000-1", []string{"data", `{"device_id":"d1","value":1}`}}, // the oldest: outside --replay 5
		{p1, "2000-1", []string{"data", `{"device_id":"d2","value":2,"schema_version":1}`}},
		{p0, "3000-1", []string{"data", `{"device_id":"d1","value":3,"schema_version":1}`}},
		{p1, "4000-1", []string{"data", `{"device_id":"d2","value":"four","schema_version":1}`}},
		{p0, "5000-1", []string{"other", `x`}},
		{p1, "6000-1", []string{"data", `{"device_id":"d2","value":6,"schema_version":1`}},
		{p0, "6000-2", []string{"data", `{"device_id":"d1","value":6,"schema_version":1}`}},
	} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.stream, ID: e.id, Values: e.values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr = eddy(t, "", "--redis", srv.URL(), "schema", "check", "-c", cfg, "--type", "reading", "--mode", "forward", "--replay", "5", newFile)
	want := []string{
		"mode forward: ok\n",
		"replay: pipeline iot, stream readings (2 partitions): 5 events checked, 2 pass, 3 fail\n",
		"  {readings:1} 6000-1: at \"\": json: not JSON: line 1, column 47: unexpected end of input\n",
		"  {readings:0} 5000-1: no payload field \"data\"\n",
		"  {readings:1} 4000-1: at \"/value\": type: got string, want number\n",
	}
	if code != 1 {
		t.Errorf("replay with failures = exit %d, want 1", code)
	}
	for _, w := range want {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout does not contain %q:\n%s\nstderr:\n%s", w, stdout, stderr)
		}
	}
	// Newest first across partitions: 6000-2 (passes) before 6000-1.
	if i, j := strings.Index(stdout, "6000-1"), strings.Index(stdout, "4000-1"); i < 0 || j < i {
		t.Errorf("failures not newest first:\n%s", stdout)
	}
	// All of them: the oldest lacks the schema_version the new schema requires.
	_, stdout, _ = eddy(t, "", "--redis", srv.URL(), "schema", "check", "-c", cfg, "--type", "reading", "--mode", "forward", "--replay", "100", newFile)
	if !strings.Contains(stdout, "7 events checked, 3 pass, 4 fail") || !strings.Contains(stdout, "{readings:0} 1000-1: at \"/schema_version\": required: missing property 'schema_version'") {
		t.Errorf("replay of every entry:\n%s", stdout)
	}
}

// docs/schemas.md shows what eddy schema check prints for the reading
// schemas of configs/iot.yaml.
func TestSchemaCheckDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/schemas.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## eddy schema check")
	_, cmdBlock, _ := strings.Cut(section, "```sh\n")
	cmdLine, _, _ := strings.Cut(cmdBlock, "\n")
	_, want, _ := strings.Cut(section, "```text\n")
	want, _, _ = strings.Cut(want, "```")
	args := strings.Fields(strings.ReplaceAll(cmdLine, "configs/", "../../configs/"))
	if len(args) < 2 || args[0] != "eddy" {
		t.Fatalf("docs/schemas.md: no eddy command in %q", cmdLine)
	}
	code, got, stderr := eddy(t, "", args[1:]...)
	got = strings.ReplaceAll(got, "../../", "")
	if code != 0 || got != want {
		t.Errorf("%s = exit %d\n%s\nstderr: %s\ndocs/schemas.md shows:\n%s", cmdLine, code, got, stderr, want)
	}
}

// --replay connects as a monitor: a Redis user without what the monitor
// rules of docs/redis-acl.md give (XREVRANGE among them) is told what is
// missing before anything is read, and no password is printed.
func TestSchemaCheckReplayNoPermission(t *testing.T) {
	srv := redistest.Start(t)
	if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "reader", "on", ">secret-pw", "~*", "&*", "+@all", "-xrevrange").Err(); err != nil {
		t.Fatal(err)
	}
	dir := schemaDir(t, "")
	url := strings.Replace(srv.URL(), "redis://", "redis://reader:secret-pw@", 1)
	code, stdout, stderr := eddy(t, "", "--redis", url, "schema", "check", "-c", filepath.Join(dir, "eddy.yaml"), "--type", "reading", "--replay", "3", filepath.Join(dir, "v2.json"))
	if code != 1 || stdout != "" || !strings.Contains(stderr, `redis user "reader" may not run XREVRANGE`) || !strings.Contains(stderr, "a monitor of pipeline iot needs these ACL rules") ||
		strings.Contains(stderr+stdout, "secret-pw") {
		t.Errorf("replay without XREVRANGE = exit %d, stdout %q, stderr %q; want 1, nothing read, what is missing, no password", code, stdout, stderr)
	}
}
