package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// shippedTests are the test files of the shipped configs.
func shippedTests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../configs/*.test.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs/*.test.yaml (%v)", err)
	}
	return files
}

// With no PATH, eddy test runs ./configs/*.test.yaml: the shipped
// configs' tests pass (issue 11, done when 6).
func TestTestShippedConfigs(t *testing.T) {
	files := shippedTests(t)
	t.Chdir("../..")
	code, out, errb := eddy(t, "", "test")
	if code != 0 {
		t.Fatalf("eddy test = %d, want 0\n%s\n%s", code, out, errb)
	}
	for _, f := range files {
		if !strings.Contains(out, "configs/"+filepath.Base(f)+" (config configs/") {
			t.Errorf("eddy test did not run %s:\n%s", f, out)
		}
	}
	if !strings.Contains(out, " passed, 0 failed\n") || strings.Contains(out, "FAIL") {
		t.Errorf("eddy test output:\n%s", out)
	}
}

// change is one expected value of a test file, changed.
type change struct {
	desc     string // where, for messages
	leaf     string // the field's name, as the diff names it
	want     string // the changed value as the diff shows it
	original string
}

// changeOne changes the n-th expected scalar of the kind wanted (a string
// or a number) in an expect, expect_dead_letters, expect_state or
// expect_hash step of the file, and returns the file and what it changed.
func changeOne(t *testing.T, path string, number bool) (string, *change) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var found *change
	var visit func(n *yaml.Node, key, where string)
	visit = func(n *yaml.Node, key, where string) {
		if found != nil {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				visit(n.Content[i+1], n.Content[i].Value, where)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				visit(c, key, where)
			}
		case yaml.ScalarNode:
			tag := n.ShortTag()
			switch {
			case !number && tag == "!!str" && !strings.HasPrefix(n.Value, "@") && key != "":
				found = &change{desc: where, leaf: key, original: n.Value}
				n.Value += "-changed"
				found.want = strconv.Quote(n.Value)
			case number && (tag == "!!int" || tag == "!!float"):
				f, err := strconv.ParseFloat(n.Value, 64)
				if err != nil {
					return
				}
				found = &change{desc: where, leaf: key, original: n.Value}
				n.Value = strconv.FormatFloat(f+1, 'g', -1, 64)
				n.Tag = ""
				found.want = n.Value
			}
		}
	}
	tests := lookupKey(doc.Content[0], "tests")
	for ti, tn := range tests.Content {
		for si, sn := range lookupKey(tn, "steps").Content {
			k, v := sn.Content[0].Value, sn.Content[1]
			if !strings.HasPrefix(k, "expect") {
				continue
			}
			for _, part := range []string{"entries", "fields"} {
				if pn := lookupKey(v, part); pn != nil {
					visit(pn, "", fmt.Sprintf("tests[%d].steps[%d].%s.%s", ti, si, k, part))
				}
			}
			if found != nil {
				out, err := yaml.Marshal(&doc)
				if err != nil {
					t.Fatal(err)
				}
				return string(out), found
			}
		}
	}
	return "", nil
}

func lookupKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// One expected value changed in any shipped config's tests fails eddy
// test (exit 1) with a diff that names the field with want and got
// (issue 11, done when 6).
func TestTestShippedConfigsChanged(t *testing.T) {
	for _, path := range shippedTests(t) {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.TrimSuffix(abs, ".test.yaml") + ".yaml"
		for _, number := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/number=%v", filepath.Base(path), number), func(t *testing.T) {
				data, c := changeOne(t, path, number)
				if c == nil {
					if !number {
						t.Fatalf("%s has no expected string value to change", path)
					}
					t.Skipf("%s expects no number", path)
				}
				// The changed file lives elsewhere: its config key names the
				// shipped config by its absolute path.
				changed := filepath.Join(t.TempDir(), filepath.Base(path))
				data = "config: " + strconv.Quote(cfg) + "\n" + data
				if err := os.WriteFile(changed, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
				code, out, errb := eddy(t, "", "test", changed)
				if code != 1 {
					t.Fatalf("%s with %s %s changed from %q to %s: eddy test = %d, want 1\n%s\n%s", path, c.desc, c.leaf, c.original, c.want, code, out, errb)
				}
				diff := c.leaf + ": want " + c.want + ", got "
				for _, w := range []string{"FAIL ", diff, changed + ":", " 1 failed\n"} {
					if !strings.Contains(out, w) {
						t.Errorf("%s with %s %s changed: output lacks %q:\n%s", path, c.desc, c.leaf, w, out)
					}
				}
			})
		}
	}
}

// Exit status 2 and file:line problems for a broken test file (the other
// files still run); 2 for a PATH that is not there or a directory without
// test files; --run selects tests by name.
func TestTestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	shop, err := filepath.Abs("../../pipetest/testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.test.yaml")
	good := filepath.Join(dir, "good.test.yaml")
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("config: "+strconv.Quote(shop)+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(broken, "tests:\n  - name: t\n    steps:\n      - advance: 1 minute\n      - expect: {stream: \"orders:oot\", count: 0}\n")
	write(good, "tests:\n  - name: nothing sent, nothing out\n    steps:\n      - advance: 1m\n      - expect: {stream: \"orders:out\", count: 0}\n  - name: other\n    steps: [{advance: 1s}]\n")
	empty := t.TempDir()
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    []string
		stderr    []string
		notStdout []string
	}{
		{"broken file", []string{"test", dir}, 2,
			[]string{"ok   nothing sent, nothing out", "2 passed, 0 failed, 1 test file(s) not loaded"},
			[]string{broken + `:5: tests[0].steps[0].advance: "1 minute" is not a duration`,
				broken + `:6: tests[0].steps[1].expect.stream: no pipeline writes a stream "orders:oot"`,
				broken + ": 2 problem(s)"}, nil},
		{"run", []string{"test", "--run", "^nothing", good}, 0,
			[]string{"ok   nothing sent, nothing out", "1 passed, 0 failed"}, nil, []string{"other"}},
		{"logs", []string{"test", "--logs", "--log-format", "console", good}, 0, []string{"2 passed, 0 failed"}, []string{"\tINFO\t"}, nil},
		{"run matches none", []string{"test", "--run", "zzz", good}, 2, []string{"0 passed, 0 failed"}, []string{`--run "zzz" matches no test`}, nil},
		{"no such path", []string{"test", filepath.Join(dir, "nope.test.yaml")}, 2, nil, []string{"test path: stat "}, nil},
		{"no test files", []string{"test", empty}, 2, nil, []string{"no *.test.yaml files in this directory"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errb := eddy(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("eddy %v = %d, want %d\n%s\n%s", tc.args, code, tc.code, out, errb)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errb, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb)
				}
			}
			for _, w := range tc.notStdout {
				if strings.Contains(out, w) {
					t.Errorf("stdout has %q:\n%s", w, out)
				}
			}
		})
	}
}

// With no PATH and no ./configs, eddy test says what to give (exit 2).
func TestTestNoConfigsDir(t *testing.T) {
	t.Chdir(t.TempDir())
	code, _, errb := eddy(t, "", "test")
	if code != 2 || !strings.Contains(errb, "no PATH given and no configs directory here") {
		t.Errorf("eddy test = %d, %q; want 2 and what to give", code, errb)
	}
}
