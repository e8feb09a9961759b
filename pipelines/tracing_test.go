package pipelines

import (
	"strings"
	"testing"
)

// The tracing section: absent is nil (off unless the environment says
// otherwise), set values are kept, bad ones are problems naming the path
// and line.
func TestTracingSection(t *testing.T) {
	const head = "pipelines:\n  - name: p\n    input: {stream: s}\n    key: k\n"
	if f := parse(t, head); f.Tracing != nil {
		t.Errorf("no tracing section: Tracing = %+v, want nil", f.Tracing)
	}
	f := parse(t, head+"tracing: {otlp_endpoint: 'http://collector:4318', sample_ratio: 0.25}\n")
	if f.Tracing == nil || f.Tracing.OTLPEndpoint != "http://collector:4318" || f.Tracing.SampleRatio == nil || *f.Tracing.SampleRatio != 0.25 {
		t.Errorf("Tracing = %+v, want the endpoint and ratio 0.25", f.Tracing)
	}
	if f := parse(t, head+"tracing: {sample_ratio: 0}\n"); f.Tracing.SampleRatio == nil || *f.Tracing.SampleRatio != 0 {
		t.Errorf("sample_ratio: 0 = %v, want 0 kept (not the default)", f.Tracing.SampleRatio)
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"ratio over 1", "tracing: {sample_ratio: 1.5}\n", "test.yaml:5: tracing.sample_ratio: must be between 0 and 1"},
		{"ratio nan", "tracing: {sample_ratio: .nan}\n", "test.yaml:5: tracing.sample_ratio: must be between 0 and 1"},
		{"not a URL", "tracing: {otlp_endpoint: 'collector:4318'}\n", `test.yaml:5: tracing.otlp_endpoint: want an http:// or https:// URL, got "collector:4318"`},
		{"no host", "tracing: {otlp_endpoint: 'http://'}\n", `test.yaml:5: tracing.otlp_endpoint: want an http:// or https:// URL`},
		{"unknown key", "tracing: {endpoint: x}\n", "test.yaml:5: tracing.endpoint: unknown"},
	} {
		got := problems(t, head+tc.src, nil)
		if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("%s: Parse problems = %q, want one starting %q", tc.name, got, tc.want)
		}
	}
}
