package pipelines

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// parse parses src with the built-in steps, failing the test on any problem.
func parse(t testing.TB, src string) *File {
	t.Helper()
	return parseWith(t, src, nil)
}

// parseWith parses src with the steps of reg, failing the test on any problem.
func parseWith(t testing.TB, src string, reg *Registry) *File {
	t.Helper()
	f, err := Parse("test.yaml", []byte(src), reg)
	if err != nil {
		t.Fatalf("Parse:\n%v\nsource:\n%s", err, src)
	}
	return f
}

// problems returns the problem lines of Parse(src), or nil if it succeeds.
func problems(t testing.TB, src string, reg *Registry) []string {
	t.Helper()
	_, err := Parse("test.yaml", []byte(src), reg)
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error is %T, want *ConfigError: %v", err, err)
	}
	return strings.Split(ce.Error(), "\n")
}

// jsonPipeline returns a pipeline reading JSON payloads from field "data",
// keyed by user.id, with dedupe on event_id when dedupe is set, and the
// given steps (YAML list items, indented by six spaces).
func jsonPipeline(t testing.TB, dedupe bool, steps string) *Pipeline {
	t.Helper()
	src := "pipelines:\n  - name: p\n    input: {stream: s, payload: data}\n    key: user.id\n"
	if dedupe {
		src += "    dedupe: {id: event_id, window: 1h}\n"
	}
	if steps != "" {
		src += "    steps:\n" + steps
	}
	return parse(t, src).Pipelines[0]
}

// handle decodes an entry with the JSON payload data and runs it through
// the pipeline's handler.
func handle(t testing.TB, p *Pipeline, data string) (*processor.Message, error) {
	t.Helper()
	m := &processor.Message{ID: "1700000000000-0", Stream: "s", Fields: []string{"data", data}}
	if err := p.Decoder().Decode(m); err != nil {
		t.Fatalf("Decode(%s) = %v, want nil", data, err)
	}
	return m, p.Handler().Handle(context.Background(), m)
}

// outcome names what an error leads to: "" (processed), the permanent
// reason, or "retry".
func outcome(err error) string {
	var pe *processor.PermanentError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return pe.Reason
	}
	return "retry"
}

// shippedConfigs lists the config files under configs/, without their
// eddy test files (*.test.yaml).
func shippedConfigs(t testing.TB) []string {
	t.Helper()
	all, err := filepath.Glob("../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".test.yaml") {
			files = append(files, f)
		}
	}
	return files
}

// withoutAnalytics cuts p's steps before its first analytics step, which
// needs the engine's keyed state (a bare Message has none): for tests that
// run a shipped config's handler on single messages. The analytics steps
// are tested through pipetest, and the shipped configs' by eddy test.
func withoutAnalytics(p *Pipeline) {
	for i, s := range p.steps {
		if _, ok := s.step.(analyticStep); ok {
			p.steps = p.steps[:i]
			return
		}
	}
}
