package pipelines

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
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
		c.decodeInt(n, path, v)
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

// decodeScalar lets yaml.v3 resolve a scalar (so 0x10, .inf, true parse as
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

// decodeInt decodes an integer field. yaml.v3 alone would truncate a float
// into an int (batch_size: 1.5 became 1), so a scalar that YAML resolves to
// a float is taken apart here: it is accepted only when its decimal text is
// exactly an integer (1e3, 2.5e2, 1.0), and a fraction (1.5, 1e-3), .inf or
// .nan is a problem. Integers proper (1000, 1_000, 0x3e8, 0o17, 0b101) are
// left to yaml.v3. A value that does not fit v's type is a problem too.
func (c *checker) decodeInt(n *yaml.Node, path string, v reflect.Value) {
	if !c.wantScalar(n, path, "an integer") || isNull(n) {
		return
	}
	switch n.ShortTag() {
	case "!!float":
		digits, ok := exactInteger(n.Value)
		if !ok {
			c.addAt(n.Line, path, "want an integer, got %q", n.Value)
			return
		}
		if !setIntText(v, digits) {
			c.addAt(n.Line, path, "want an integer from %s to %s, got %q", minOf(v.Type()), maxOf(v.Type()), n.Value)
		}
	case "!!int":
		p := reflect.New(v.Type())
		if err := n.Decode(p.Interface()); err != nil { // YAML's integer, too large for v
			c.addAt(n.Line, path, "want an integer from %s to %s, got %q", minOf(v.Type()), maxOf(v.Type()), n.Value)
			return
		}
		v.Set(p.Elem())
	default: // a string, a bool, a timestamp, …
		c.addAt(n.Line, path, "want an integer, got %q", n.Value)
	}
}

// exactInteger returns the base-10 digits (with a leading '-' when
// negative) of the integer that the YAML float lit denotes exactly, or
// false if lit is not an exact integer: a fraction, .inf, .nan or not a
// decimal float at all. It works on the text, so 1.0000000000000000001
// is a fraction although float64 rounds it to 1, and an exponent of any
// size costs nothing: an integer of more than 40 digits, beyond every Go
// integer type, comes back as a 41-digit stand-in.
func exactInteger(lit string) (string, bool) {
	s := strings.ReplaceAll(lit, "_", "") // as yaml.v3 reads numbers
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return "", false
		}
		// Clamped so that the arithmetic below cannot overflow: beyond
		// ±2^20 a non-zero value is a fraction, or out of every integer
		// type's range, either way.
		mant, exp = s[:i], min(max(e, -1<<20), 1<<20)
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if (intPart == "" && frac == "") || !allDigits(intPart) || !allDigits(frac) {
		return "", false
	}
	digits := strings.TrimLeft(intPart+frac, "0") // leading zeros change nothing
	if digits == "" {
		return "0", true
	}
	// The value is digits × 10^shift.
	switch shift := exp - len(frac); {
	case shift < 0:
		cut := len(digits) + shift
		if cut <= 0 || strings.TrimRight(digits[cut:], "0") != "" {
			return "", false // a non-zero digit behind the point
		}
		digits = digits[:cut]
	case len(digits)+shift > 40: // beyond any Go integer: a short stand-in
		digits = "1" + strings.Repeat("0", 40)
	default:
		digits += strings.Repeat("0", shift)
	}
	if neg {
		digits = "-" + digits
	}
	return digits, true
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// setIntText parses the base-10 integer digits into v, an integer of any
// size, reporting false if it does not fit.
func setIntText(v reflect.Value, digits string) bool {
	t := v.Type()
	if v.CanInt() {
		i, err := strconv.ParseInt(digits, 10, t.Bits())
		if err != nil {
			return false
		}
		v.SetInt(i)
		return true
	}
	u, err := strconv.ParseUint(digits, 10, t.Bits())
	if err != nil {
		return false
	}
	v.SetUint(u)
	return true
}

// minOf and maxOf give the range of the integer type t, for messages.
func minOf(t reflect.Type) string {
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		return "0"
	}
	return strconv.FormatInt(-1<<(t.Bits()-1), 10)
}

func maxOf(t reflect.Type) string {
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		return strconv.FormatUint(1<<t.Bits()-1, 10)
	}
	return strconv.FormatInt(1<<(t.Bits()-1)-1, 10)
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
