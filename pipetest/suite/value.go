package suite

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// placeholderPrefix starts a time placeholder: "@90s" stands for the unix
// milliseconds of the test's start + 90s; "@@" stands for a literal "@".
const placeholderPrefix = "@"

// placeholder reads s as a time placeholder: the offset it names and
// whether it is one. A string "@@…" is the literal "@…" and no
// placeholder; any other "@…" must be a duration (ok false with a message
// when it is not).
func placeholder(s string) (off time.Duration, literal string, isPH bool, msg string) {
	if !strings.HasPrefix(s, placeholderPrefix) {
		return 0, s, false, ""
	}
	if strings.HasPrefix(s, "@@") {
		return 0, s[1:], false, ""
	}
	d, err := time.ParseDuration(s[1:])
	if err != nil {
		return 0, s, false, "a string starting with @ is a time placeholder, @<duration> (@0s, @1m30s, @-5s): the unix ms of the test's start + the duration; write @@ for a literal @"
	}
	return d, "", true, ""
}

// valueKind is the kind of an expected value.
type valueKind int

const (
	vString valueKind = iota
	vNumber
	vBool
	vNull
	vObject
	vArray
)

// value is an expected value from the test file, its placeholders
// resolved.
type value struct {
	kind valueKind
	s    string   // vString; vNumber's text
	num  *big.Rat // vNumber
	b    bool     // vBool
	keys []string // vObject, in file order
	obj  map[string]*value
	arr  []*value
}

// readValue reads an expected value; placeholders become numbers.
func (d *decoder) readValue(n *yaml.Node, path string, start time.Time) *value {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		v := &value{kind: vObject, obj: map[string]*value{}}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if _, dup := v.obj[k.Value]; dup {
				d.add(k, joinPath(path, k.Value), "repeated key %q", k.Value)
				continue
			}
			v.keys = append(v.keys, k.Value)
			v.obj[k.Value] = d.readValue(n.Content[i+1], joinPath(path, k.Value), start)
		}
		return v
	case yaml.SequenceNode:
		v := &value{kind: vArray}
		for i, c := range n.Content {
			v.arr = append(v.arr, d.readValue(c, index(path, i), start))
		}
		return v
	case yaml.ScalarNode:
		return d.readScalar(n, path, start)
	}
	d.add(n, path, "want a value, got %s", kindName(n))
	return &value{kind: vNull}
}

func (d *decoder) readScalar(n *yaml.Node, path string, start time.Time) *value {
	switch n.ShortTag() {
	case "!!null":
		return &value{kind: vNull}
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			d.add(n, path, "%q: %v", n.Value, err)
		}
		return &value{kind: vBool, b: b}
	case "!!int", "!!float":
		var f any
		if err := n.Decode(&f); err != nil {
			d.add(n, path, "%q: %v", n.Value, err)
			return &value{kind: vNull}
		}
		r, text, ok := number(f)
		if !ok {
			d.add(n, path, "%q: not a finite number", n.Value)
			return &value{kind: vNull}
		}
		return &value{kind: vNumber, s: text, num: r}
	}
	off, lit, isPH, msg := placeholder(n.Value)
	switch {
	case msg != "":
		d.add(n, path, "%q: %s", n.Value, msg)
		return &value{kind: vString, s: n.Value}
	case isPH:
		ms := start.Add(off).UnixMilli()
		return &value{kind: vNumber, s: strconv.FormatInt(ms, 10), num: new(big.Rat).SetInt64(ms)}
	}
	return &value{kind: vString, s: lit}
}

// number is a decoded YAML number as an exact rational and its text.
func number(f any) (*big.Rat, string, bool) {
	switch x := f.(type) {
	case int:
		return new(big.Rat).SetInt64(int64(x)), strconv.Itoa(x), true
	case int64:
		return new(big.Rat).SetInt64(x), strconv.FormatInt(x, 10), true
	case uint64:
		return new(big.Rat).SetUint64(x), strconv.FormatUint(x, 10), true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, "", false
		}
		r, _ := new(big.Rat).SetString(strconv.FormatFloat(x, 'g', -1, 64))
		return r, strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return nil, "", false
}

// json renders v as JSON, keys in file order.
func (v *value) json() []byte {
	var b bytes.Buffer
	v.write(&b)
	return b.Bytes()
}

func (v *value) write(b *bytes.Buffer) {
	switch v.kind {
	case vString:
		s, _ := json.Marshal(v.s)
		b.Write(s)
	case vNumber:
		b.WriteString(v.s)
	case vBool:
		b.WriteString(strconv.FormatBool(v.b))
	case vNull:
		b.WriteString("null")
	case vObject:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			s, _ := json.Marshal(k)
			b.Write(s)
			b.WriteByte(':')
			v.obj[k].write(b)
		}
		b.WriteByte('}')
	case vArray:
		b.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			e.write(b)
		}
		b.WriteByte(']')
	}
}

// String is v as compact JSON, for messages.
func (v *value) String() string { return string(v.json()) }
