package pipelines

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRegister(t *testing.T) {
	step := func(StepConfig) (Step, error) {
		return StepFunc(func(context.Context, *Event) (bool, error) { return true, nil }), nil
	}
	tests := []struct {
		name    string
		f       StepFactory
		wantErr string
	}{
		{"enrich", step, ""},
		{"geo_ip2", step, ""},
		{"map", step, "already registered"},
		{"Enrich", step, "want a name matching"},
		{"2fa", step, "want a name matching"},
		{"", step, "want a name matching"},
		{"nil_factory", nil, "nil factory"},
	}
	r := NewRegistry()
	for _, tt := range tests {
		err := r.Register(tt.name, tt.f)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Register(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}
	if err := r.Register("map", step); !errors.Is(err, ErrDuplicateStep) {
		t.Errorf("Register(map) = %v, want ErrDuplicateStep", err)
	}
	if got := strings.Join(r.Names(), ","); got != "absence,enrich,fault,filter,funnel,geo_ip2,map,output,require,saga,schema,session,state,threshold,validate,window" {
		t.Errorf("Names() = %s", got)
	}
}

// A custom step's config is decoded as strictly as the rest of the file,
// and its problems carry path and line.
func TestCustomStepConfig(t *testing.T) {
	type tagConfig struct {
		Name  string        `yaml:"name"`
		Every time.Duration `yaml:"every"`
		When  *Cond         `yaml:"when"`
		Paths []Path        `yaml:"paths"`
		Extra map[string]int
	}
	r := NewRegistry()
	var got tagConfig
	err := r.Register("tag", func(cfg StepConfig) (Step, error) {
		got = tagConfig{}
		if err := cfg.Decode(&got); err != nil {
			return nil, err
		}
		if got.Name == "" {
			return nil, cfg.Errorf("name", "required")
		}
		return StepFunc(func(context.Context, *Event) (bool, error) { return true, nil }), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	head := "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n    steps:\n      - tag:\n"
	parseWith(t, head+"          name: x\n          every: 5s\n          when: 'a > 1'\n          paths: [a.b]\n          extra: {x: 1}\n", r)
	if got.Name != "x" || got.Every != 5*time.Second || got.When.String() != "a > 1" || got.Paths[0].String() != "a.b" || got.Extra["x"] != 1 {
		t.Errorf("decoded config = %+v, want name x, every 5s, when a > 1, paths [a.b], extra {x: 1}", got)
	}
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"problems", "          nam: x\n          every: soon\n          when: 'a >'\n          paths: [a..b]\n          extra: {x: y}\n", []string{
			"test.yaml:7: pipelines[0].steps[0].tag.nam: unknown key (want one of: every, extra, name, paths, when)",
			`test.yaml:8: pipelines[0].steps[0].tag.every: invalid duration "soon"`,
			`test.yaml:9: pipelines[0].steps[0].tag.when: expression "a >"`,
			`test.yaml:10: pipelines[0].steps[0].tag.paths[0]: path "a..b" has an empty segment`,
			`test.yaml:11: pipelines[0].steps[0].tag.extra.x: want an integer, got "y"`,
		}},
		{"factory check", "          every: 1s\n", []string{"test.yaml:6: pipelines[0].steps[0].tag.name: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, head+tt.body, r)
			if len(got) != len(tt.want) {
				t.Fatalf("Parse problems = %q, want %d", got, len(tt.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestStepConfigDecodeNeedsPointer(t *testing.T) {
	var sc StepConfig
	if err := sc.Decode(struct{}{}); err == nil {
		t.Error("Decode(non-pointer) = nil, want an error")
	}
}

// The package documentation lists every built-in step.
func TestDocListsBuiltinSteps(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range NewRegistry().Names() {
		if !strings.Contains(string(doc), "//   - "+name+": ") {
			t.Errorf("doc.go does not document the built-in step %q", name)
		}
	}
}

type tree struct {
	Kids []tree `yaml:"kids"`
}

// A config that refers to itself through an alias is a problem, not a
// stack overflow.
func TestAliasCycle(t *testing.T) {
	r := NewRegistry()
	err := r.Register("tree", func(cfg StepConfig) (Step, error) {
		var tr tree
		if err := cfg.Decode(&tr); err != nil {
			return nil, err
		}
		return StepFunc(func(context.Context, *Event) (bool, error) { return true, nil }), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	src := "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n    steps:\n      - tree: &t {kids: [{kids: [*t]}]}\n"
	want := "test.yaml:6: pipelines[0].steps[0].tree.kids[0].kids[0]: alias *t refers to itself"
	if got := problems(t, src, r); len(got) != 1 || got[0] != want {
		t.Errorf("Parse problems = %q, want only %q", got, want)
	}
}
