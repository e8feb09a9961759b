package pipelines

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// File is the name given to Load or Parse.
	File string
	// Line is the 1-based line of the offending YAML node; for a missing key,
	// the line of the mapping that should hold it. 0 when unknown.
	Line int
	// Path names the node, e.g. "pipelines[0].retry.max_attempts"; empty
	// for a problem with the file as a whole (a YAML syntax error).
	Path string
	// Msg says what is wrong, in lower case, without a trailing period.
	Msg string
}

// String formats p as "FILE:LINE: PATH: MESSAGE", leaving out LINE and PATH
// when they are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError lists every problem found in a config file, ordered by line.
// Load and Parse return it for anything wrong with the file's contents;
// StepConfig.Decode returns it for a step's config.
type ConfigError struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// checker collects problems and remembers the line of every node it has
// seen by path, so that validation can name lines by path alone.
type checker struct {
	file  string
	lines map[string]int // path → line; "" is the document root
	probs []Problem
	seen  map[string]bool     // paths with a problem
	alias map[*yaml.Node]bool // anchored nodes being decoded, to stop cycles
}

func newChecker(file string) *checker {
	return &checker{file: file, lines: map[string]int{}}
}

// has reports whether the node at path was present in the file.
func (c *checker) has(path string) bool {
	_, ok := c.lines[path]
	return ok
}

// lineOf returns the line of path, or of its nearest present ancestor.
func (c *checker) lineOf(path string) int {
	for {
		if l, ok := c.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// parentPath drops the last ".name" or "[i]" of path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// addf records a problem at path, on the line of path (or its parent).
func (c *checker) addf(path, format string, args ...any) {
	c.addAt(c.lineOf(path), path, format, args...)
}

// addAt records a problem at path on the given line (see add).
func (c *checker) addAt(line int, path, format string, args ...any) {
	c.add(Problem{File: c.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// add records p unless its path, or an ancestor of it, already has a
// problem: a node that failed to decode is not also reported as, say, out
// of range, and the children of a node that was not even a mapping are not
// reported as missing.
func (c *checker) add(p Problem) {
	if p.Path != "" {
		for q := p.Path; q != ""; q = parentPath(q) {
			if c.seen[q] {
				return
			}
		}
		if c.seen == nil {
			c.seen = map[string]bool{}
		}
		c.seen[p.Path] = true
	}
	c.probs = append(c.probs, p)
}

// absorb records err, returned by a step factory for the step at path, as
// problems: joined errors are taken apart, a *ConfigError gives its own
// problems, and any other error becomes one problem at the step.
func (c *checker) absorb(path string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			c.absorb(path, e)
		}
		return
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			c.add(p)
		}
		return
	}
	c.addf(path, "%s", err.Error())
}

// err returns the collected problems as a *ConfigError, or nil.
func (c *checker) err() error {
	if len(c.probs) == 0 {
		return nil
	}
	probs := append([]Problem(nil), c.probs...)
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
	return &ConfigError{Problems: probs}
}
