package deploy_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// root is the repository's root, from this package's directory.
const root = ".."

// Files under the repository's root that the tests of this package load.
const (
	composeFile      = "docker-compose.yml"
	dockerfile       = "Dockerfile"
	eddyConfig       = "deploy/eddy.yaml"
	mosquittoConf    = "deploy/mosquitto/mosquitto.conf"
	promConfig       = "deploy/prometheus/prometheus.yml"
	promRules        = "deploy/prometheus/rules.yml"
	promRulesTest    = "deploy/prometheus/rules_test.yml"
	dashboardFile    = "deploy/grafana/dashboards/eddy.json"
	datasourceFile   = "deploy/grafana/provisioning/datasources/prometheus.yml"
	dashProviderFile = "deploy/grafana/provisioning/dashboards/eddy.yml"
	runbook          = "docs/observability.md"
	demoConfig       = "configs/demo.yaml"
)

// nativelyLoaded are the files a test of this package loads as the service
// that compose mounts them into would (promtool or Prometheus, mosquitto,
// pipelines.Load, the dashboard checks standing in for Grafana): compose
// may mount nothing else.
var nativelyLoaded = map[string]string{
	eddyConfig:       "TestComposeEddyConfig (pipelines.Load)",
	mosquittoConf:    "TestMosquittoConf (a real mosquitto)",
	promConfig:       "TestPromtool, TestDashboardOnRealPrometheus",
	promRules:        "TestPromtool, TestDashboardOnRealPrometheus",
	dashboardFile:    "TestDashboardStructure, TestDashboardOnRealPrometheus",
	datasourceFile:   "TestProvisioning",
	dashProviderFile: "TestProvisioning",
}

// path is rel (slash-separated, from the root) from this package's directory.
func path(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

// read returns the file rel, from the root.
func read(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readYAML decodes the YAML file rel into out.
func readYAML(t testing.TB, rel string, out any) {
	t.Helper()
	if err := yaml.Unmarshal(read(t, rel), out); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// readJSON decodes the JSON file rel into out, strictly.
func readJSON(t testing.TB, rel string, out any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(read(t, rel))))
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// need returns the path of a command the test needs, failing with how to
// install it when it is missing.
func need(t testing.TB, name, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH, so this test cannot run; install it (apt-get install -y %s), as scripts/test.sh does in CI", name, pkg)
	}
	return bin
}

// runTimeout bounds one command of runIn: a build of eddy from a cold
// cache on a busy 2-core machine takes minutes.
const runTimeout = 10 * time.Minute

// runIn runs name with args in the root and returns its combined output,
// failing the test when it exits non-zero.
func runIn(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t.Context(), env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs name with args in the root and returns its combined output; an
// error quotes it.
func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// dockerBuildLine is the Dockerfile's `RUN CGO_ENABLED=0 go build … -o OUT
// ./cmd/eddy`: the command and its output path.
var dockerBuildLine = regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*-o (\S+) \./cmd/eddy)$`)

// binDir holds the eddy that buildStatic builds, once per test binary;
// TestMain removes it.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildStatic builds eddy exactly as the Dockerfile's build line does (run
// by sh in the root, VERSION set as the build argument would), only with
// the output path changed, and returns the binary's path. It builds once
// for the tests of this package.
func buildStatic(t testing.TB) string {
	t.Helper()
	m := dockerBuildLine.FindStringSubmatch(string(read(t, dockerfile)))
	if m == nil {
		t.Fatalf("%s: no line matching %s", dockerfile, dockerBuildLine)
	}
	line := m[1]
	if !strings.Contains(line, " -trimpath ") {
		t.Fatalf("%s: the build line %q does not build with -trimpath", dockerfile, line)
	}
	bin := filepath.Join(binDir, "eddy")
	buildOnce.Do(func() {
		_, buildErr = run(context.WithoutCancel(t.Context()), []string{"VERSION=deploy-test"}, "sh", "-c", strings.Replace(line, "-o "+m[2], "-o "+bin, 1))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// checkStatic fails unless bin is an ELF executable with no interpreter
// (PT_INTERP) and no shared libraries (DT_NEEDED).
func checkStatic(t testing.TB, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): it is dynamically linked", bin)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("%s: read DT_NEEDED: %v", bin, err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v, want none", bin, libs)
	}
}

// mustf fails the test with a formatted message when ok is false.
func mustf(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf("%s", fmt.Sprintf(format, args...))
	}
}
