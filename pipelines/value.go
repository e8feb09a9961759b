package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// decodeObject decodes a JSON object. Numbers become int64 when they are
// integers that fit, float64 otherwise, so that ids and timestamps keep
// every digit and format without exponents.
func decodeObject(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a JSON object, got %s", jsonKind(v))
	}
	normalize(obj)
	return obj, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// normalize replaces the json.Numbers in v (a decoded object or array) in place.
func normalize(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if n, ok := e.(json.Number); ok {
				t[k] = number(n)
			} else {
				normalize(e)
			}
		}
	case []any:
		for i, e := range t {
			if n, ok := e.(json.Number); ok {
				t[i] = number(n)
			} else {
				normalize(e)
			}
		}
	}
}

// number turns a JSON number into int64 or float64 for expressions, but
// keeps the literal (a json.Number) where either would change its value:
// integers beyond int64 and numbers beyond float64's range. Ids like
// 18446744073709551615 stay exact, as keys, dedupe ids and in outputs.
func number(n json.Number) any {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i
	}
	if !strings.ContainsAny(string(n), ".eE") {
		return n // an integer too large for int64
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil { // out of range: ±Inf would lose it
		return n
	}
	return f
}

// scalarString formats a key or id: strings as they are, numbers without
// exponent (42, 1700000000000, 2.5), booleans as true/false. Empty strings,
// null, objects and arrays are not keys.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, t != ""
	case bool:
		return strconv.FormatBool(t), true
	}
	if s, ok := formatNumber(v); ok {
		return s, true
	}
	return "", false
}

func formatNumber(v any) (string, bool) {
	switch t := v.(type) {
	case int:
		return strconv.Itoa(t), true
	case int8:
		return strconv.FormatInt(int64(t), 10), true
	case int16:
		return strconv.FormatInt(int64(t), 10), true
	case int32:
		return strconv.FormatInt(int64(t), 10), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case uint:
		return strconv.FormatUint(uint64(t), 10), true
	case uint8:
		return strconv.FormatUint(uint64(t), 10), true
	case uint16:
		return strconv.FormatUint(uint64(t), 10), true
	case uint32:
		return strconv.FormatUint(uint64(t), 10), true
	case uint64:
		return strconv.FormatUint(t, 10), true
	case float32:
		return strconv.FormatFloat(float64(t), 'f', -1, 32), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case json.Number:
		return string(t), true
	}
	return "", false
}

// formatValue formats an expression result as a hash field value: scalars
// as scalarString does (empty strings stay empty), times as RFC 3339,
// durations as Go durations, anything else as JSON.
func formatValue(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case time.Time:
		return t.Format(time.RFC3339Nano)
	case time.Duration:
		return t.String()
	}
	if s, ok := scalarString(v); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
