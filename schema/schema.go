package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema is one compiled JSON Schema. It is safe for concurrent use.
type Schema struct {
	name string // the file it came from, for messages
	s    *jsonschema.Schema
}

// Name returns the file (or name) the schema was compiled from.
func (s *Schema) Name() string { return s.name }

// memURL is where Compile puts a schema given as bytes. Nothing is ever
// loaded from it: a $ref to another document fails to compile.
const memURL = "mem://eddy/schema.json"

// Compile compiles the JSON Schema in data; name is used in messages. A
// "$ref" may point inside the document only: one to another document is
// an error (CompileFile resolves those against the file's directory).
func Compile(name string, data []byte) (*Schema, error) {
	doc, err := decodeSchemaDoc(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := newCompiler()
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(memURL, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s, err := c.Compile(memURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", name, compileMessage(err))
	}
	return &Schema{name: name, s: s}, nil
}

// MaxFileBytes bounds the size of a schema file that CompileFile reads.
const MaxFileBytes = 1 << 20

// CompileFile reads and compiles the JSON Schema file at path, at most
// MaxFileBytes. A "$ref" to another file is resolved against path's
// directory and read from disk.
func CompileFile(path string) (*Schema, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := decodeSchemaDoc(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	loc := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	c := newCompiler()
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, compileMessage(err))
	}
	return &Schema{name: path, s: s}, nil
}

// readFile reads a schema file, refusing directories and files over
// MaxFileBytes, with errors that name the file once.
func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer func() { _ = fh.Close() }() // read only: nothing to lose
	if st, err := fh.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, want a JSON Schema file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s is over %d bytes", path, MaxFileBytes)
	}
	return data, nil
}

func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// "format" is checked, not only an annotation: a schema that says
	// "date-time" means it.
	c.AssertFormat()
	return c
}

// refuseLoader loads nothing: a schema compiled from bytes has no
// directory to resolve other documents against.
type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("$ref to another document (%s) is not supported here; register the schema as a file", u)
}

// decodeSchemaDoc decodes a schema document, saying where invalid JSON is.
func decodeSchemaDoc(data []byte) (any, error) {
	doc, err := DecodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	return doc, nil
}

// compileMessage turns a compile error into one line: the metaschema's
// complaints with their pointers into the schema, or the error's text.
func compileMessage(err error) string {
	var se *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &se) && errors.As(se.Err, &ve) {
		fs := failures(ve)
		parts := make([]string, 0, len(fs))
		for _, f := range fs {
			parts = append(parts, fmt.Sprintf("at %q: %s", f.Pointer, f.Message))
		}
		return "not a valid JSON Schema: " + strings.Join(parts, "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// DecodeJSON decodes one JSON value the way Validate wants it: numbers as
// json.Number, so that no digit is lost and 2.0 is an integer as JSON
// Schema says. A syntax error names its line and column; anything after
// the value is an error.
func DecodeJSON(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty input, want a JSON value")
		}
		return nil, withPosition(data, err)
	}
	end := d.InputOffset()
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		for end < int64(len(data)) && strings.IndexByte(" \t\r\n", data[end]) >= 0 {
			end++
		}
		return nil, fmt.Errorf("%s: unexpected data after the JSON value", position(data, end))
	}
	return v, nil
}

// withPosition adds "line L, column C" to a JSON syntax or type error.
func withPosition(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the byte that was wrong.
		return fmt.Errorf("%s: %w", position(data, se.Offset-1), err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: unexpected end of input", position(data, int64(len(data))))
	}
	return err
}

// position names the line and column (1-based, in bytes) of offset.
func position(data []byte, offset int64) string {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// Validate checks v, a value as DecodeJSON returns it, against the schema.
// It returns nil or a *ValidationError.
func (s *Schema) Validate(v any) error { return validate(s.s, v) }

// validate checks v against a compiled schema or subschema.
func validate(s *jsonschema.Schema, v any) error {
	if f, bad := hugeNumber(v, nil); bad {
		return newValidationError([]Failure{f})
	}
	err := s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return newValidationError([]Failure{{Rule: "schema", Message: err.Error()}})
	}
	return newValidationError(failures(ve))
}

// ValidateJSON decodes data and validates it. Data that is not one JSON
// value gives a *ValidationError with the rule RuleJSON.
func (s *Schema) ValidateJSON(data []byte) error {
	v, err := DecodeJSON(data)
	if err != nil {
		return NotJSON(err)
	}
	return s.Validate(v)
}

// MaxExponent bounds the decimal exponent of a number that Validate
// accepts. The validator compares numbers as exact fractions: 1e1000000
// costs it tens of milliseconds each, so that a small event full of them
// would hold a worker for minutes. float64 ends near 1e308; 400 leaves
// room for every number a program writes.
const MaxExponent = 400

// hugeNumber finds the first json.Number in v whose exponent is beyond
// ±MaxExponent, and returns it as a Failure.
func hugeNumber(v any, loc []string) (Failure, bool) {
	switch t := v.(type) {
	case json.Number:
		if exponentTooLarge(string(t)) {
			return Failure{Pointer: pointer(loc), Rule: RuleJSON, Message: fmt.Sprintf("number %.40s has an exponent beyond ±%d, which validation does not accept", t, MaxExponent)}, true
		}
	case map[string]any:
		for k, e := range t {
			if f, bad := hugeNumber(e, append(loc, k)); bad {
				return f, true
			}
		}
	case []any:
		for i, e := range t {
			if f, bad := hugeNumber(e, append(loc, strconv.Itoa(i))); bad {
				return f, true
			}
		}
	}
	return Failure{}, false
}

// exponentTooLarge reports whether the number literal n has an exponent
// part beyond ±MaxExponent.
func exponentTooLarge(n string) bool {
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return false
	}
	e := strings.TrimLeft(n[i+1:], "+-")
	e = strings.TrimLeft(e, "0")
	if len(e) > 4 {
		return true
	}
	x, err := strconv.Atoi(e)
	return err != nil && e != "" || x > MaxExponent
}
