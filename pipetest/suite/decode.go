package suite

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/pipelines"
)

// decoder reads a test file's YAML nodes strictly, collecting every
// problem with its line and path.
type decoder struct {
	file  string
	probs []pipelines.Problem
}

// add records a problem at node n (line 0 when n is nil).
func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.probs = append(d.probs, pipelines.Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err is the problems as a *pipelines.ConfigError ordered by line, or nil.
func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	sort.SliceStable(d.probs, func(i, j int) bool { return d.probs[i].Line < d.probs[j].Line })
	return &pipelines.ConfigError{Problems: d.probs}
}

// yamlLineRE finds the line in yaml.v3's syntax errors, which carry it
// only in their text ("yaml: line 3: did not find expected key").
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// syntax records a YAML syntax error, with its line when yaml.v3 gives one.
func (d *decoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
	}
	d.add(&yaml.Node{Line: line}, "", "%s", msg)
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName says what n is, for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "a node of another kind"
}

// field is one key of a mapping: its key node and its value.
type field struct {
	key, val *yaml.Node
}

// mapping reads a mapping whose keys must be among allowed, and returns its
// values by key; nil (after a problem) when n is not a mapping. Unknown and
// repeated keys are problems.
func (d *decoder) mapping(n *yaml.Node, path string, allowed ...string) map[string]field {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "want a mapping, got %s", kindName(n))
		return nil
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		name := k.Value
		switch {
		case !contains(allowed, name):
			d.add(k, joinPath(path, name), "unknown key %q (want one of: %s)", name, strings.Join(allowed, ", "))
		case out[name].key != nil:
			d.add(k, joinPath(path, name), "repeated key %q (first on line %d)", name, out[name].key.Line)
		default:
			out[name] = field{key: k, val: v}
		}
	}
	return out
}

// required reports a missing key of the mapping at n.
func (d *decoder) required(m map[string]field, n *yaml.Node, path, key, why string) bool {
	if _, ok := m[key]; ok {
		return true
	}
	d.add(resolve(n), path, "%s is required: %s", key, why)
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// str reads a string scalar.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) || n.ShortTag() != "!!str" && n.ShortTag() != "!!int" && n.ShortTag() != "!!float" && n.ShortTag() != "!!bool" {
		d.add(n, path, "want a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// nonEmpty reads a string that must not be empty.
func (d *decoder) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if ok && strings.TrimSpace(s) == "" {
		d.add(n, path, "must not be empty")
		return "", false
	}
	return s, ok
}

// duration reads a Go duration ("90s", "1m30s", "0s").
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.add(n, path, "want a duration such as 30s or 1m30s, got %s", kindName(n))
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if n.Value == "0" {
			return 0, true
		}
		d.add(n, path, "%q is not a duration: want a number with a unit, such as 30s, 1m30s or 500ms", n.Value)
		return 0, false
	}
	return v, true
}

// boolean reads true or false.
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.add(n, path, "want true or false, got %s", kindName(n))
		return false, false
	}
	v, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		d.add(n, path, "want true or false, got %q", n.Value)
		return false, false
	}
	return v, true
}

// count reads an integer >= 0.
func (d *decoder) count(n *yaml.Node, path string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil || v < 0 {
		d.add(n, path, "want a whole number >= 0, got %s", kindName(n))
		return 0, false
	}
	return v, true
}

// timestamp reads an RFC 3339 time.
func (d *decoder) timestamp(n *yaml.Node, path string) (time.Time, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.add(n, path, "want an RFC 3339 time such as 2026-01-01T00:00:00Z, got %s", kindName(n))
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, n.Value)
	if err != nil {
		d.add(n, path, "%q is not an RFC 3339 time such as 2026-01-01T00:00:00Z", n.Value)
		return time.Time{}, false
	}
	return t, true
}

// list reads a sequence.
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "want a list, got %s", kindName(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out, true
}

// oneKey reads a one-key mapping {<kind>: <value>}.
func (d *decoder) oneKey(n *yaml.Node, path string, kinds []string) (string, *yaml.Node, bool) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		what := kindName(n)
		if n.Kind == yaml.MappingNode {
			what = fmt.Sprintf("a mapping with %d keys", len(n.Content)/2)
		}
		d.add(n, path, "want a one-key mapping {<step>: ...} with a step among %s, got %s", strings.Join(kinds, ", "), what)
		return "", nil, false
	}
	k := n.Content[0]
	if !contains(kinds, k.Value) {
		d.add(k, joinPath(path, k.Value), "unknown step %q (want one of: %s)", k.Value, strings.Join(kinds, ", "))
		return "", nil, false
	}
	return k.Value, resolve(n.Content[1]), true
}
