package pipelines

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// payloadsForLookups are payloads whose key and id lookups are pinned
// against the decoded object: dotted names, nesting, duplicates (the last
// counts), escapes in names and values, invalid UTF-8 and lone surrogates
// (U+FFFD, as encoding/json decodes them).
var payloadsForLookups = []string{
	`{"a":"x","b":{"c":1,"d":{"e":true}},"a.b":"dotted","n":18446744073709551616,"f":-0.5e2}`,
	`{"a":{"b":"inner"},"a.b":"top"}`,
	`{"a":{"b":"inner"}}`,
	`{"a":[1,2],"b":null,"c":{},"d":"","u":"\u00e9\n"}`,
	`{"a":1,"a":{"b":2}}`,
	`{"a":{"b":2},"a":3}`,
	`{"x":{"y":{"z":"deep"}}}`,
	"{\"a\":\"bad \xff\xfe utf-8\",\"b\xff\":\"name\",\"d\":\"\xc3\"}",
	`{"\u0061":"escaped name","b":"\ud800 lone","c":"\"q\" \\ \/ \b\f\n\r\t","d":"\ud83d\ude00"}`,
	`{"a" : { "b" : [ {"c":1} , 2 ] } , "f" : 7.0 , "n" : -0 , "x" : {"y":{"z":1e400}}}`,
	`{"b\ud800":"lone in a name","b\ufffd":"replacement","a":"é","é":"accented name"}`,
	`{"a":{"b":{"c":{"d":{"e":"five"}}}},"a":{"b":{"c":"three"}}}`,
	` {"a":true} `,
	`{}`,
}

var pathsForLookups = []string{"a", "a.b", "b", "b.c", "b.d.e", "n", "f", "c", "d", "u", "x.y.z", "x.y", "missing", "a.b.c", "a.b.c.d.e", "é", "b\ufffd"}

// The one-pass scan finds, for every path, what Path.Lookup finds in the
// decoded payload, and what lookupJSON (gjson) found before it.
func TestScanAgreesWithDecoded(t *testing.T) {
	for _, raw := range payloadsForLookups {
		decoded, err := decodeObject([]byte(raw))
		if err != nil {
			t.Fatalf("decodeObject(%s) = %v", raw, err)
		}
		obj, err := parseObject(raw)
		if err != nil {
			t.Fatalf("parseObject(%s) = %v", raw, err)
		}
		for _, ps := range pathsForLookups {
			p, _ := ParsePath(ps)
			checkScan(t, raw, p, decoded)
			// and a field path: one name with dots
			checkScan(t, raw, fieldPath(ps), decoded)
			if len(p.parts) > 0 {
				gv, _ := lookupJSON(obj, p)
				names := []string{p.parts[0]}
				if len(p.parts) > 1 {
					names = append(names, p.text)
				}
				var tm topMembers
				tm.reset(names)
				if err := tm.scanPayload(raw); err != nil {
					t.Fatal(err)
				}
				got := tm.lookup(p)
				if a, ok := scalarString(got); true {
					if b, ok2 := scalarString(gv); a != b || ok != ok2 || notScalar(got) != notScalar(gv) {
						t.Errorf("%s at %q: scan = %#v, lookupJSON = %#v", raw, ps, got, gv)
					}
				}
			}
		}
	}
}

func checkScan(t *testing.T, raw string, p Path, decoded map[string]any) {
	t.Helper()
	names := []string{p.parts[0]}
	if len(p.parts) > 1 {
		names = append(names, p.text)
	}
	var tm topMembers
	tm.reset(names)
	if err := tm.scanPayload(raw); err != nil {
		t.Fatalf("scanPayload(%s) = %v", raw, err)
	}
	got := tm.lookup(p)
	want, _ := p.Lookup(decoded)
	gs, gok := scalarString(got)
	ws, wok := scalarString(want)
	if gs != ws || gok != wok || notScalar(got) != notScalar(want) {
		t.Errorf("%q at %q: scan = %#v, Lookup on the decoded object = %#v", raw, p.parts, got, want)
	}
}

// validityCases are texts scanPayload must judge as encoding/json does.
var validityCases = []string{
	`{}`, `{"a":1}`, ` {"a":[1,2,{"b":null}]} `, `{"a":"\u00e9"}`, `{"a":-0.5e+10}`, `{"a":0}`,
	`[]`, `[1]`, `"s"`, `1`, `true`, `null`, ` 2 `,
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`, `{a:1}`, `{'a':1}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":-}`, `{"a":+1}`, `{"a":0x1}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":"x\q"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"tab\there\"}",
	"{\"a\":\"nl\nhere\"}", `{"a":"unterminated}`, `{"a":[1,2}`, `{"a":[1,,2]}`, `{"a":[,1]}`, `{"a":[1,]}`,
	`{} x`, `{}{}`, `{"a":1}}`, "{\"a\":1}\x00", "\xef\xbb\xbf{}", `{"a":NaN}`, `{"a":Infinity}`, `{"a":-Infinity}`,
	"{\"\xff\":\"\xfe\"}", "{\"a\":1}\n", `{"a":"\/"}`, `{"a":[[[[]]]]}`, `{"a":{"b":{"c":{}}}}`,
}

// scanPayload accepts a payload when encoding/json does and it is an
// object, with parseObject's error otherwise, word for word.
func TestScanValidity(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth-1)
	cases := append([]string{}, validityCases...)
	cases = append(cases, `{"a":`+deep+strings.Repeat("]", maxJSONDepth-1)+`}`, `{"a":[`+deep+strings.Repeat("]", maxJSONDepth)+`}`)
	for _, raw := range cases {
		var tm topMembers
		tm.reset([]string{"a"})
		err := tm.scanPayload(raw)
		_, perr := parseObject(raw)
		valid := json.Valid([]byte(raw))
		isObject := valid && strings.HasPrefix(strings.TrimLeft(raw, " \t\r\n"), "{")
		if (err == nil) != isObject {
			t.Errorf("scanPayload(%.60q) = %v; encoding/json: valid %v, an object %v", raw, err, valid, isObject)
		}
		if len(raw) < 1000 && (err == nil) != (perr == nil) || err != nil && perr != nil && err.Error() != perr.Error() {
			t.Errorf("scanPayload(%.60q) = %v, parseObject = %v; want the same", raw, err, perr)
		}
		if len(raw) < 1000 && gjson.Valid(raw) != valid {
			t.Logf("note: gjson.Valid(%q) = %v, encoding/json %v", raw, gjson.Valid(raw), valid)
		}
	}
}

// FuzzScanPayload: scanPayload accepts exactly the objects encoding/json
// accepts, and its lookups agree with the decoded object's.
func FuzzScanPayload(f *testing.F) {
	for _, s := range append(append([]string{}, payloadsForLookups...), validityCases...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var tm topMembers
		tm.reset([]string{"a", "a.b", "x", "x.y.z"})
		err := tm.scanPayload(raw)
		decoded, derr := decodeObject([]byte(raw))
		if (err == nil) != (derr == nil) {
			t.Fatalf("scanPayload(%q) = %v, decodeObject = %v", raw, err, derr)
		}
		if err != nil {
			return
		}
		for _, ps := range []string{"a", "a.b", "x", "x.y.z"} {
			p, _ := ParsePath(ps)
			got := tm.lookup(p)
			want, _ := p.Lookup(decoded)
			gs, gok := scalarString(got)
			ws, wok := scalarString(want)
			if gs != ws || gok != wok || notScalar(got) != notScalar(want) {
				t.Fatalf("%q at %q: scan = %#v, decoded = %#v", raw, ps, got, want)
			}
		}
	})
}

// BenchmarkScanPayload is the key and id of a 200-byte event taken out in
// one pass, against parseObject and two lookupJSON, as before, timed in
// the same run.
func BenchmarkScanPayload(b *testing.B) {
	raw := `{"event_id":"t3-42","user_id":"u1234","ts":1700000000000000000,"type":"page_view","page":"/p/4821","ref":"/search?q=p17","pad":"` +
		strings.Repeat("x", 62) + `"}`
	key, id := fieldPath("user_id"), fieldPath("event_id")
	b.Run("gjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			obj, err := parseObject(raw)
			if err != nil {
				b.Fatal(err)
			}
			lookupJSON(obj, key)
			lookupJSON(obj, id)
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		d := &decoder{names: []string{"user_id", "event_id"}}
		for b.Loop() {
			var t topMembers
			if err := d.scan(&t, raw); err != nil {
				b.Fatal(err)
			}
			t.lookup(key)
			t.lookup(id)
		}
	})
}
