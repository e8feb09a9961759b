package suite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/eddy-streams/eddy/pipetest"
)

// mismatch is one expected value that was not found.
type mismatch struct {
	path, want, got string
}

func (m mismatch) String() string {
	return fmt.Sprintf("%s: want %s, got %s", m.path, m.want, m.got)
}

// matchFields compares flat fields (a stream entry's, a hash's) with an
// expected mapping: each expected field must match; other fields are not
// looked at unless exact, when any other field is a mismatch too.
func matchFields(got map[string]string, want *value, exact bool) []mismatch {
	var out []mismatch
	for _, k := range want.keys {
		g, ok := got[k]
		out = append(out, matchFlat(k, g, ok, want.obj[k])...)
	}
	if exact {
		var extra []string
		for k := range got {
			if _, ok := want.obj[k]; !ok {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		for _, k := range extra {
			out = append(out, mismatch{path: k, want: "no such field", got: quote(got[k])})
		}
	}
	return out
}

// matchFlat compares one flat field, a string, with an expected value: a
// string equal to it, a number equal in value, true or false, null for a
// field that is absent, or a mapping or list matched against the field's
// JSON.
func matchFlat(path, got string, present bool, want *value) []mismatch {
	if !present {
		if want.kind == vNull {
			return nil
		}
		return []mismatch{{path: path, want: want.String(), got: "no such field"}}
	}
	bad := []mismatch{{path: path, want: want.String(), got: quote(got)}}
	switch want.kind {
	case vNull:
		return []mismatch{{path: path, want: "no such field", got: quote(got)}}
	case vString:
		if got == want.s {
			return nil
		}
	case vNumber:
		if r, ok := new(big.Rat).SetString(strings.TrimSpace(got)); ok && r.Cmp(want.num) == 0 {
			return nil
		}
	case vBool:
		if got == fmt.Sprint(want.b) {
			return nil
		}
	case vObject, vArray:
		var v any
		d := json.NewDecoder(strings.NewReader(got))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			bad[0].got += " (not JSON)"
			return bad
		}
		return matchJSON(path, v, true, want)
	}
	return bad
}

// matchJSON compares a decoded JSON value (numbers as json.Number) with an
// expected value: types must agree, numbers by value, mappings as subsets,
// lists element by element with the same length; a null expectation
// matches a JSON null or a missing member.
func matchJSON(path string, got any, present bool, want *value) []mismatch {
	if !present {
		if want.kind == vNull {
			return nil
		}
		return []mismatch{{path: path, want: want.String(), got: "no such member"}}
	}
	bad := []mismatch{{path: path, want: want.String(), got: compact(got)}}
	switch want.kind {
	case vNull:
		if got == nil {
			return nil
		}
	case vString:
		if s, ok := got.(string); ok && s == want.s {
			return nil
		}
	case vNumber:
		if n, ok := got.(json.Number); ok {
			if r, ok := new(big.Rat).SetString(string(n)); ok && r.Cmp(want.num) == 0 {
				return nil
			}
		}
	case vBool:
		if b, ok := got.(bool); ok && b == want.b {
			return nil
		}
	case vObject:
		obj, ok := got.(map[string]any)
		if !ok {
			return bad
		}
		var out []mismatch
		for _, k := range want.keys {
			g, ok := obj[k]
			out = append(out, matchJSON(path+"."+k, g, ok, want.obj[k])...)
		}
		return out
	case vArray:
		arr, ok := got.([]any)
		if !ok {
			return bad
		}
		if len(arr) != len(want.arr) {
			bad[0].got += fmt.Sprintf(" (%d elements, want %d)", len(arr), len(want.arr))
			return bad
		}
		var out []mismatch
		for i, w := range want.arr {
			out = append(out, matchJSON(fmt.Sprintf("%s[%d]", path, i), arr[i], true, w)...)
		}
		return out
	}
	return bad
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// entryJSON shows an entry's fields as a JSON object, a field that holds a
// JSON object or list shown as that JSON; pretty when indent.
func entryJSON(fields map[string]string, indent bool) string {
	obj := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		t := strings.TrimSpace(v)
		if (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && json.Valid([]byte(t)) {
			obj[k] = json.RawMessage(t)
			continue
		}
		obj[k] = json.RawMessage(quote(v))
	}
	b, _ := json.Marshal(obj) // sorted keys
	if !indent {
		return string(b)
	}
	var out bytes.Buffer
	_ = json.Indent(&out, b, "", "  ")
	return out.String()
}

// block indents every line of s by prefix.
func block(prefix, s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return lines
}

// entriesWant is what an expect step wants of a stream's entries.
type entriesWant struct {
	entries   []*value // expected entries, mappings of fields
	count     int      // entries expected when hasCount
	hasCount  bool
	contains  bool // the entries may be among others; else exactly these
	unordered bool // in any order; else in the order given
}

// diffEntries compares got (the entries from index base of the stream)
// with w and returns the lines of a readable diff, none when they match.
func diffEntries(got []pipetest.Entry, base int, w entriesWant) []string {
	var lines []string
	if w.hasCount && len(got) != w.count {
		lines = append(lines, fmt.Sprintf("want %d entries, got %d", w.count, len(got)))
	}
	if w.unordered && w.entries != nil {
		return append(lines, diffUnordered(got, base, w.entries, w.contains)...)
	}
	if w.contains {
		return append(lines, diffContains(got, base, w.entries)...)
	}
	if w.entries == nil {
		if len(lines) > 0 {
			lines = append(lines, listEntries(got, base)...)
		}
		return lines
	}
	for i := 0; i < len(got) && i < len(w.entries); i++ {
		mm := matchFields(got[i].Fields, w.entries[i], false)
		if len(mm) == 0 {
			continue
		}
		for _, m := range mm {
			lines = append(lines, fmt.Sprintf("entry %d: %s", base+i, m))
		}
		lines = append(lines, fmt.Sprintf("entry %d was (id %s):", base+i, got[i].ID))
		lines = append(lines, block("  ", entryJSON(got[i].Fields, true))...)
	}
	for i := len(got); i < len(w.entries); i++ {
		lines = append(lines, fmt.Sprintf("entry %d missing: want %s", base+i, w.entries[i]))
	}
	for i := len(w.entries); i < len(got); i++ {
		lines = append(lines, fmt.Sprintf("entry %d extra (want %d entries, got %d) (id %s):", base+i, len(w.entries), len(got), got[i].ID))
		lines = append(lines, block("  ", entryJSON(got[i].Fields, true))...)
	}
	return lines
}

// diffContains checks that each expected entry matches a got entry, in
// order, others allowed in between.
func diffContains(got []pipetest.Entry, base int, want []*value) []string {
	var lines []string
	j := 0
	for k, w := range want {
		found := -1
		for i := j; i < len(got); i++ {
			if len(matchFields(got[i].Fields, w, false)) == 0 {
				found = i
				break
			}
		}
		if found < 0 {
			lines = append(lines, fmt.Sprintf("expected entry %d not found (in order, from entry %d on): want %s", k, base+j, w))
			continue
		}
		j = found + 1
	}
	if len(lines) > 0 {
		lines = append(lines, listEntries(got, base)...)
	}
	return lines
}

// diffUnordered pairs each expected entry with a distinct got entry it
// matches, in any order (a maximum matching, so that a loose expectation
// does not take the entry a stricter one needs); unless contains, every
// got entry must be paired too.
func diffUnordered(got []pipetest.Entry, base int, want []*value, contains bool) []string {
	ok := make([][]bool, len(want))
	for k, w := range want {
		ok[k] = make([]bool, len(got))
		for i := range got {
			ok[k][i] = len(matchFields(got[i].Fields, w, false)) == 0
		}
	}
	owner := make([]int, len(got)) // got index → want index, or -1
	for i := range owner {
		owner[i] = -1
	}
	var augment func(k int, tried []bool) bool
	augment = func(k int, tried []bool) bool {
		for i := range got {
			if !ok[k][i] || tried[i] {
				continue
			}
			tried[i] = true
			if owner[i] < 0 || augment(owner[i], tried) {
				owner[i] = k
				return true
			}
		}
		return false
	}
	paired := make([]bool, len(want))
	for k := range want {
		paired[k] = augment(k, make([]bool, len(got)))
	}
	var lines []string
	for k, w := range want {
		if !paired[k] {
			lines = append(lines, fmt.Sprintf("expected entry %d matches no entry (in any order): want %s", k, w))
		}
	}
	if !contains {
		for i, o := range owner {
			if o < 0 {
				lines = append(lines, fmt.Sprintf("entry %d extra: matches no expected entry: %s", base+i, entryJSON(got[i].Fields, false)))
			}
		}
	}
	if len(lines) > 0 {
		lines = append(lines, listEntries(got, base)...)
	}
	return lines
}

// listEntries shows entries one a line.
func listEntries(got []pipetest.Entry, base int) []string {
	lines := []string{fmt.Sprintf("the %d entries were:", len(got))}
	for i, e := range got {
		lines = append(lines, fmt.Sprintf("  %d: %s", base+i, entryJSON(e.Fields, false)))
	}
	return lines
}
