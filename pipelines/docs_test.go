package pipelines

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// yamlPaths lists the YAML path of every field of t: "pipelines[].retry.max_attempts".
func yamlPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[File]().PkgPath() {
		return []string{prefix}
	}
	var out []string
	if prefix != "" {
		out = append(out, prefix)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		p := tag
		if prefix != "" {
			p = prefix + "." + tag
		}
		if f.Type == reflect.TypeFor[[]StepConfig]() {
			out = append(out, p)
			continue
		}
		out = append(out, yamlPaths(f.Type, p)...)
	}
	return out
}

// The configuration reference cannot go stale: every field of the schema
// and every built-in step must be in docs/configuration.md.
func TestConfigurationReferenceIsComplete(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	paths := yamlPaths(reflect.TypeFor[File](), "")
	if len(paths) < 30 {
		t.Fatalf("found %d config paths, want the whole schema", len(paths))
	}
	for _, p := range paths {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", p)
		}
	}
	for _, name := range NewRegistry().Names() {
		if !strings.Contains(string(doc), "### "+name) {
			t.Errorf("docs/configuration.md has no section for step %q", name)
		}
	}
}
