package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// eddy validate, the built binary, rejects a fraction in an integer field
// with the file, line and path, and exits 1; an exact integer in float
// notation passes.
func TestValidateRejectsFractions(t *testing.T) {
	const head = "http: {addr: off}\npipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n"
	bad := writeFile(t, "fraction.yaml", head+"    batch_size: 1.5\n    lanes: 3.9\n    retry: {max_attempts: 2.5e0}\n")
	out, err := exec.Command(eddyBin, "validate", "-c", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("eddy validate -c %s = %v, want exit 1; output:\n%s", bad, err, out)
	}
	for _, want := range []string{
		bad + `:6: pipelines[0].batch_size: want an integer, got "1.5"`,
		bad + `:7: pipelines[0].lanes: want an integer, got "3.9"`,
		bad + `:8: pipelines[0].retry.max_attempts: want an integer, got "2.5e0"`,
		bad + ": 3 problem(s)",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("eddy validate output lacks %q:\n%s", want, out)
		}
	}

	good := writeFile(t, "exact.yaml", head+"    batch_size: 1e3\n    lanes: 32.0\n")
	if out, err := exec.Command(eddyBin, "validate", "-c", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("eddy validate -c %s = %v %q, want exit 0 and ok", good, err, out)
	}
}
