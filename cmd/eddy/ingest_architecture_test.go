package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's Architecture section holds: each arrow of its import
// direction ("a, b → c → d") is a direct import of the module's packages
// (a and b import c, c imports d), and the engine (processor, dedupe)
// depends on no YAML, Prometheus or CLI package.
func TestReadmeImportDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, para, ok := strings.Cut(string(b), "\nImports go one way: ")
	if !ok {
		t.Fatal(`README.md: no "Imports go one way: " paragraph`)
	}
	para, _, _ = strings.Cut(para, "\n\n")
	chains := regexp.MustCompile("`([^`]+→[^`]+)`").FindAllStringSubmatch(para, -1)
	if len(chains) == 0 {
		t.Fatalf("README.md: no `a → b` chains in %q", para)
	}
	const module = "github.com/eddy-streams/eddy/"
	imports := func(pkg string) []string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "go", "list", "-f", `{{join .Imports "\n"}}`, module+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, c := range chains {
		groups := strings.Split(c[1], " → ")
		for i := 0; i+1 < len(groups); i++ {
			for _, from := range strings.Split(groups[i], ", ") {
				deps := imports(from)
				for _, to := range strings.Split(groups[i+1], ", ") {
					if !slices.Contains(deps, module+to) {
						t.Errorf("README: %s → %s, but %s does not import %s", from, to, from, to)
					}
				}
			}
		}
	}
	for _, engine := range []string{"processor", "dedupe"} {
		out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", module+engine).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", engine, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "yaml") || strings.Contains(dep, "prometheus") || strings.Contains(dep, "cobra") {
				t.Errorf("the engine's %s depends on %s: the README says it knows nothing of YAML, Prometheus or the CLI", engine, dep)
			}
		}
	}
}
