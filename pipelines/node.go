package pipelines

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file is the strict YAML decoder. yaml.v3's own strict mode
// (Decoder.KnownFields) stops at the first problem and does not name paths,
// so the file is parsed into a yaml.Node and walked here: every problem is
// recorded with its path and line, and the line of every node is kept for
// validation. It runs at load time only.

// nodeDecoder is implemented by types that decode themselves from a node
// (steps, expressions, paths).
type nodeDecoder interface {
	decodeNode(c *checker, n *yaml.Node, path string)
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	nodeDecoderType = reflect.TypeFor[nodeDecoder]()
)

// decode decodes n into v, which must be settable, recording problems and
// lines under path.
func (c *checker) decode(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || c.alias[n.Alias] {
			c.addAt(n.Line, path, "alias *%s refers to itself", n.Value)
			return
		}
		n = n.Alias
	}
	if n.Anchor != "" { // an alias inside this node back to it would never end
		if c.alias == nil {
			c.alias = map[*yaml.Node]bool{}
		}
		c.alias[n] = true
		defer delete(c.alias, n)
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(c, n, path)
		return
	}
	if v.Type() == durationType {
		c.decodeDuration(n, path, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		c.decode(n, path, v.Elem())
	case reflect.Struct:
		c.decodeStruct(n, path, v)
	case reflect.Slice:
		c.decodeSlice(n, path, v)
	case reflect.Map:
		c.decodeMap(n, path, v)
	case reflect.String:
		if c.wantScalar(n, path, "a string") {
			if !isNull(n) {
				v.SetString(n.Value)
			}
		}
	case reflect.Bool:
		c.decodeScalar(n, path, v, "true or false")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.decodeScalar(n, path, v, "an integer")
	case reflect.Float32, reflect.Float64:
		c.decodeScalar(n, path, v, "a number")
	case reflect.Interface:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			c.addAt(n.Line, path, "%s", yamlMessage(err))
		}
	default:
		c.addAt(n.Line, path, "cannot decode into %s", v.Type())
	}
}

// wantScalar reports whether n is a scalar, recording a problem if not.
func (c *checker) wantScalar(n *yaml.Node, path, want string) bool {
	if n.Kind == yaml.ScalarNode {
		return true
	}
	c.addAt(n.Line, path, "want %s, got %s", want, kindName(n))
	return false
}

// decodeScalar lets yaml.v3 resolve a scalar (so 0x10, 1e3, true parse as
// YAML says) and reports a failure in our own words.
func (c *checker) decodeScalar(n *yaml.Node, path string, v reflect.Value, want string) {
	if !c.wantScalar(n, path, want) {
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		c.addAt(n.Line, path, "want %s, got %q", want, n.Value)
		return
	}
	v.Set(p.Elem())
}

func (c *checker) decodeDuration(n *yaml.Node, path string, v reflect.Value) {
	if !c.wantScalar(n, path, "a duration") || isNull(n) {
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		c.addAt(n.Line, path, "invalid duration %q: want a Go duration such as 500ms, 10s or 24h", n.Value)
		return
	}
	v.SetInt(int64(d))
}

func (c *checker) decodeSlice(n *yaml.Node, path string, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		c.addAt(n.Line, path, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		c.lines[p] = item.Line
		c.decode(item, p, s.Index(i))
	}
	v.Set(s)
}

// pairs walks the key/value pairs of a mapping node, recording each key's
// line and reporting non-string, merge and duplicate keys. It returns false
// if n is not a mapping.
func (c *checker) pairs(n *yaml.Node, path string, f func(key string, k, val *yaml.Node, p string)) bool {
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		c.addAt(n.Line, path, "want a mapping, got %s", kindName(n))
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.addAt(k.Line, path, "keys must be strings, got %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			c.addAt(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		p := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			c.addAt(k.Line, p, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		c.lines[p] = k.Line
		f(k.Value, k, val, p)
	}
	return true
}

func (c *checker) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	fields := structFields(v.Type())
	c.pairs(n, path, func(key string, k, val *yaml.Node, p string) {
		i, ok := fields[key]
		if !ok {
			c.addAt(k.Line, p, "unknown key (want one of: %s)", strings.Join(sortedKeys(fields), ", "))
			return
		}
		c.decode(val, p, v.Field(i))
	})
}

func (c *checker) decodeMap(n *yaml.Node, path string, v reflect.Value) {
	if v.Type().Key().Kind() != reflect.String {
		c.addAt(n.Line, path, "cannot decode into %s", v.Type())
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	c.pairs(n, path, func(key string, _, val *yaml.Node, p string) {
		e := reflect.New(v.Type().Elem()).Elem()
		c.decode(val, p, e)
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e)
	})
}

// structFields maps YAML keys to field indexes: the `yaml:"name"` tag, or
// the lower-cased field name as yaml.v3 does. `yaml:"-"` and unexported
// fields are skipped.
func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// joinPath appends key to path; an empty key leaves path as it is.
func joinPath(path, key string) string {
	switch {
	case key == "":
		return path
	case path == "":
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// kindName names a node's kind for messages: "a mapping", "a list", ….
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
	case yaml.AliasNode:
		return "an alias"
	}
	return "an empty document"
}
