package pipelines

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Path is a dotted path into a payload object, such as "user.id": each
// segment names a field of the object the previous one led to. Paths are
// split once, at load time.
type Path struct {
	text  string
	parts []string
}

// ParsePath parses a dotted path. Segments must not be empty.
func ParsePath(s string) (Path, error) {
	if s == "" {
		return Path{}, fmt.Errorf("empty path")
	}
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return Path{}, fmt.Errorf("path %q has an empty segment", s)
		}
	}
	return Path{text: s, parts: parts}, nil
}

// fieldPath is a Path of one segment that may contain dots: a field name
// of an entry whose fields are the payload.
func fieldPath(name string) Path { return Path{text: name, parts: []string{name}} }

// String returns the path as written.
func (p Path) String() string { return p.text }

// Lookup returns the value at p in m and whether it is present. A field
// whose name is the whole dotted text ("user.id" as one name, as entry
// fields may be named) is found before a nested path.
func (p Path) Lookup(m map[string]any) (any, bool) {
	if len(p.parts) == 0 {
		return nil, false
	}
	if len(p.parts) > 1 {
		if v, ok := m[p.text]; ok {
			return v, true
		}
	}
	var v any = m
	for _, part := range p.parts {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return v, true
}

// decodeNode parses a path from a string scalar.
func (p *Path) decodeNode(c *checker, n *yaml.Node, path string) {
	if !c.wantScalar(n, path, "a dotted path") {
		return
	}
	q, err := ParsePath(n.Value)
	if err != nil {
		c.addAt(n.Line, path, "%v", err)
		return
	}
	*p = q
}
