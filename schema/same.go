package schema

import (
	"math/big"
	"reflect"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// annotations are the fields of a compiled schema that do not change what
// it accepts (or, for DraftVersion and Location, are compared through the
// keywords they lead to).
var annotations = map[string]bool{
	"DraftVersion": true, "Location": true, "ID": true, "Anchor": true,
	"RecursiveAnchor": true, "DynamicAnchor": true, "Title": true,
	"Description": true, "Default": true, "Comment": true, "ReadOnly": true,
	"WriteOnly": true, "Examples": true, "Deprecated": true,
}

var (
	schemaPtrType = reflect.TypeFor[*jsonschema.Schema]()
	ratPtrType    = reflect.TypeFor[*big.Rat]()
	regexpType    = reflect.TypeFor[jsonschema.Regexp]()
	formatPtrType = reflect.TypeFor[*jsonschema.Format]()
	decoderType   = reflect.TypeFor[*jsonschema.Decoder]()
	mediaType     = reflect.TypeFor[*jsonschema.MediaType]()
)

// sameSchema reports whether a and b accept the same instances because
// they say the same thing: every keyword equal, subschemas compared the
// same way. Pairs met again on the way (recursive $ref) are taken as
// equal, which is right for a structural comparison: two graphs that
// agree wherever the walk goes describe the same instances. False means
// only "not the same text", not "different meaning". Extensions and
// dynamic references make it false.
func sameSchema(a, b *jsonschema.Schema) bool {
	e := equaler{assumed: map[[2]*jsonschema.Schema]bool{}}
	return e.schemas(a, b)
}

type equaler struct {
	assumed map[[2]*jsonschema.Schema]bool
}

func (e *equaler) schemas(a, b *jsonschema.Schema) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	if a.DynamicRef != nil || b.DynamicRef != nil || a.RecursiveRef != nil || b.RecursiveRef != nil ||
		len(a.Extensions) > 0 || len(b.Extensions) > 0 {
		return false // resolved by the dynamic scope, or not ours to read
	}
	key := [2]*jsonschema.Schema{a, b}
	if e.assumed[key] {
		return true
	}
	e.assumed[key] = true
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || annotations[f.Name] {
			continue
		}
		if !e.values(va.Field(i), vb.Field(i)) {
			return false
		}
	}
	return true
}

func (e *equaler) values(x, y reflect.Value) bool {
	if x.Type() != y.Type() {
		return false
	}
	switch x.Type() {
	case schemaPtrType:
		return e.schemas(x.Interface().(*jsonschema.Schema), y.Interface().(*jsonschema.Schema))
	case ratPtrType:
		rx, ry := x.Interface().(*big.Rat), y.Interface().(*big.Rat)
		return (rx == nil) == (ry == nil) && (rx == nil || rx.Cmp(ry) == 0)
	case regexpType:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() == y.IsNil()
		}
		return x.Interface().(jsonschema.Regexp).String() == y.Interface().(jsonschema.Regexp).String()
	case formatPtrType:
		fx, fy := x.Interface().(*jsonschema.Format), y.Interface().(*jsonschema.Format)
		return (fx == nil) == (fy == nil) && (fx == nil || fx.Name == fy.Name)
	case decoderType:
		dx, dy := x.Interface().(*jsonschema.Decoder), y.Interface().(*jsonschema.Decoder)
		return (dx == nil) == (dy == nil) && (dx == nil || dx.Name == dy.Name)
	case mediaType:
		mx, my := x.Interface().(*jsonschema.MediaType), y.Interface().(*jsonschema.MediaType)
		return (mx == nil) == (my == nil) && (mx == nil || mx.Name == my.Name)
	}
	switch x.Kind() {
	case reflect.Pointer, reflect.Interface:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() == y.IsNil()
		}
		return e.values(x.Elem(), y.Elem())
	case reflect.Slice:
		if x.Len() != y.Len() {
			return false
		}
		for i := range x.Len() {
			if !e.values(x.Index(i), y.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		return e.maps(x, y)
	case reflect.Struct:
		t := x.Type()
		for i := range t.NumField() {
			if t.Field(i).IsExported() && !e.values(x.Field(i), y.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return x.Bool() == y.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return x.Int() == y.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return x.Uint() == y.Uint()
	case reflect.Float32, reflect.Float64:
		return x.Float() == y.Float()
	case reflect.String: // json.Number too: by its text, which may only say "not the same"
		return x.String() == y.String()
	}
	return false // funcs, channels: nothing to compare them by
}

// maps compares maps by key; keys that are regular expressions by their text.
func (e *equaler) maps(x, y reflect.Value) bool {
	if x.Len() != y.Len() {
		return false
	}
	if x.Type().Key() == regexpType {
		byText := map[string]reflect.Value{}
		for _, k := range y.MapKeys() {
			byText[k.Interface().(jsonschema.Regexp).String()] = y.MapIndex(k)
		}
		for _, k := range x.MapKeys() {
			v, ok := byText[k.Interface().(jsonschema.Regexp).String()]
			if !ok || !e.values(x.MapIndex(k), v) {
				return false
			}
		}
		return true
	}
	for _, k := range x.MapKeys() {
		v := y.MapIndex(k)
		if !v.IsValid() || !e.values(x.MapIndex(k), v) {
			return false
		}
	}
	return true
}
