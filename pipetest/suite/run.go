package suite

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipetest"
)

// Options configures Run. The zero value is usable.
type Options struct {
	// Logger logs the engine; nil means no logs.
	Logger *zap.Logger
	// SettleTimeout bounds, in wall time, each wait for the pipelines to
	// handle what was sent or made due. Default
	// pipetest.DefaultSettleTimeout.
	SettleTimeout time.Duration
	// Match, if set, runs only the tests whose names it matches.
	Match *regexp.Regexp
}

// Result is the outcome of one test.
type Result struct {
	// Name is the test's name.
	Name string
	// Failures are the lines of the report of what went wrong, none when
	// the test passed.
	Failures []string
}

// Passed reports whether the test passed.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// Run runs the tests of f, each on a fresh harness (its own embedded
// Redis, its clock at the test's start), and writes to w a line for each,
// "ok   <name>" or "FAIL <name>" followed by what failed, indented. Tests
// that Options.Match leaves out are neither run nor reported.
func Run(f *File, w io.Writer, opts Options) []Result {
	var out []Result
	for _, t := range f.Tests {
		if opts.Match != nil && !opts.Match.MatchString(t.Name) {
			continue
		}
		r := Result{Name: t.Name, Failures: runTest(f, t, opts)}
		if r.Passed() {
			fmt.Fprintf(w, "ok   %s\n", t.Name)
		} else {
			fmt.Fprintf(w, "FAIL %s\n", t.Name)
			for _, l := range r.Failures {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
		out = append(out, r)
	}
	return out
}

// runTest runs one test and returns the lines of its failures. A failed
// expectation does not stop it; an error of the harness does.
func runTest(f *File, t *Test, opts Options) (lines []string) {
	h, err := pipetest.Start(f.Config, pipetest.Options{Start: t.Start, Logger: opts.Logger, SettleTimeout: opts.SettleTimeout})
	if err != nil {
		return []string{fmt.Sprintf("%s:%d: start the pipelines: %v", f.Path, t.Line, err)}
	}
	defer func() {
		if err := h.Close(); err != nil {
			lines = append(lines, fmt.Sprintf("%s:%d: a pipeline stopped: %v", f.Path, t.Line, err))
		}
	}()
	r := &runner{f: f, t: t, h: h, seen: map[string]int{}}
	r.syncRedisTime()
	for _, s := range t.steps {
		failed, err := r.step(s)
		where := fmt.Sprintf("%s:%d: %s", f.Path, s.line, s.path)
		if err != nil {
			return append(lines, fmt.Sprintf("%s: %v", where, err))
		}
		if len(failed) > 0 {
			lines = append(lines, where+": "+failed[0])
			for _, l := range failed[1:] {
				lines = append(lines, "  "+l)
			}
		}
	}
	return lines
}

// runner runs the steps of one test on its harness.
type runner struct {
	f    *File
	t    *Test
	h    *pipetest.Harness
	seen map[string]int // stream → its length at its last expect
}

// to moves the clock to the test's start + off, if it is not there yet.
func (r *runner) to(off time.Duration) error {
	if d := r.t.Start.Add(off).Sub(r.h.Now()); d > 0 {
		err := r.h.Advance(d)
		r.syncRedisTime()
		return err
	}
	return nil
}

// syncRedisTime sets the embedded Redis's time to the test's clock, with
// TTLs running on it. Without it the Redis keeps the wall time, and an
// expiry the engine sets by its clock (a dedupe mark's PEXPIREAT) lies in
// the past when the test's start does: the key is gone at once and a
// duplicate is handled again. Idempotent, so harmless once pipetest does it
// itself; until then expiries fall at the end of an Advance rather than at
// each of its steps.
func (r *runner) syncRedisTime() {
	mr := r.h.Redis()
	mr.SetTime(r.h.Now())
	mr.ClockTTL(true)
}

// step runs s: the lines of a failed expectation (the first a heading), or
// an error that stops the test.
func (r *runner) step(s step) ([]string, error) {
	switch s.kind {
	case kSend:
		for _, ev := range s.events {
			if ev.hasAt {
				if err := r.to(ev.at); err != nil {
					return nil, err
				}
			}
			if err := r.h.Send(s.pipeline, ev.payload); err != nil {
				return nil, err
			}
		}
		return nil, r.h.Settle()
	case kAdvance, kAdvanceTo:
		return nil, r.to(s.to)
	}
	if err := r.h.Settle(); err != nil {
		return nil, err
	}
	switch s.kind {
	case kExpect, kExpectDead:
		return r.expect(s)
	case kExpectState:
		got, err := r.h.State(s.pipeline, s.name, s.key)
		if err != nil {
			return nil, err
		}
		return fieldsDiff(fmt.Sprintf("state %s of key %q in pipeline %s", s.name, s.key, s.pipeline), got, s), nil
	case kExpectHash:
		got, err := r.h.Client().HGetAll(context.Background(), s.key).Result()
		if err != nil {
			return nil, fmt.Errorf("read hash %s: %w", s.key, err)
		}
		return fieldsDiff(fmt.Sprintf("hash %s", s.key), got, s), nil
	}
	return nil, fmt.Errorf("step %s: not known to the runner", s.kind)
}

// expect compares a stream's entries (those new since its last expect,
// with new: true) with what s wants.
func (r *runner) expect(s step) ([]string, error) {
	all, err := r.h.Entries(s.stream)
	if err != nil {
		return nil, err
	}
	base := 0
	if s.onlyNew {
		base = min(r.seen[s.stream], len(all))
	}
	r.seen[s.stream] = len(all)
	diff := diffEntries(all[base:], base, s.want)
	if len(diff) == 0 {
		return nil, nil
	}
	head := fmt.Sprintf("stream %s", s.stream)
	if s.kind == kExpectDead {
		head = fmt.Sprintf("dead letters of pipeline %s (stream %s)", s.pipeline, s.stream)
	}
	if s.onlyNew {
		head += fmt.Sprintf(", the entries from %d on (new since its last expect)", base)
	}
	return append([]string{head + ":"}, diff...), nil
}

// fieldsDiff compares a hash with s.fields.
func fieldsDiff(what string, got map[string]string, s step) []string {
	mm := matchFields(got, s.fields, s.exact)
	if len(mm) == 0 {
		return nil
	}
	lines := []string{what + ":"}
	for _, m := range mm {
		lines = append(lines, "field "+m.String())
	}
	if len(got) == 0 {
		return append(lines, "it has no fields")
	}
	lines = append(lines, "it was:")
	return append(lines, block("  ", entryJSON(got, true))...)
}

// Summary is the closing line of a run: "N passed, M failed", and the
// files that could not be loaded when there are any.
func Summary(passed, failed, broken int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d passed, %d failed", passed, failed)
	if broken > 0 {
		fmt.Fprintf(&b, ", %d test file(s) not loaded", broken)
	}
	return b.String()
}
