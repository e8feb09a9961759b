package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/processor"
)

// Load reads, decodes and validates the config file at path, and builds
// its pipelines' steps from reg (nil means NewRegistry()). Anything wrong
// with the file's contents is returned at once as a *ConfigError; a file
// that cannot be read gives the os error.
func Load(path string, reg *Registry) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipelines: %w", err)
	}
	return Parse(path, data, reg)
}

// resolveFiles makes the relative paths of the files the config names
// (secrets, tokens, certificates) relative to dir, the config file's directory, as
// schemas[].file is (SchemaPath): a config means the same whatever
// directory eddy is started from.
func (f *File) resolveFiles(dir string) {
	var paths []*string
	if r := f.Redis; r != nil {
		paths = append(paths, &r.PasswordFile)
		if t := r.TLS; t != nil {
			paths = append(paths, &t.CAFile, &t.CertFile, &t.KeyFile)
		}
	}
	paths = append(paths, &f.Console.AdminTokenFile)
	if s := f.Sources; s != nil {
		if h := s.HTTP; h != nil {
			if t := h.TLS; t != nil {
				paths = append(paths, &t.CertFile, &t.KeyFile)
			}
			for name, tok := range h.Tokens {
				if tok.File != "" && !filepath.IsAbs(tok.File) {
					tok.File = filepath.Join(dir, tok.File)
					h.Tokens[name] = tok
				}
			}
		}
		for i := range s.MQTT {
			m := &s.MQTT[i]
			paths = append(paths, &m.PasswordFile)
			if t := m.TLS; t != nil {
				paths = append(paths, &t.CAFile, &t.CertFile, &t.KeyFile)
			}
		}
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Parse is Load for data already read; name is used in problems, and
// relative file paths are taken from its directory.
func Parse(name string, data []byte, reg *Registry) (*File, error) {
	if reg == nil {
		reg = NewRegistry()
	}
	c := newChecker(name)
	root := parseYAML(c, data)
	if root == nil {
		return nil, c.err()
	}
	f := &File{Name: name}
	c.lines[""] = root.Line
	c.decode(root, "", reflect.ValueOf(f).Elem())
	if root.Kind != yaml.MappingNode { // reported; nothing else can be checked
		return nil, c.err()
	}
	validate(c, f)
	for _, p := range f.Pipelines {
		reg.build(c, p)
	}
	validateCaps(c, f)
	f.resolveFiles(filepath.Dir(name))
	if err := c.err(); err != nil {
		return nil, err
	}
	setDefaults(c, f)
	for _, p := range f.Pipelines {
		p.dec = newDecoder(p)
		if p.Input.EventTime != "" {
			path, _ := ParsePath(p.Input.EventTime) // checked by validate
			if p.Input.Payload == "" {
				path = Path{text: p.Input.EventTime, parts: []string{p.Input.EventTime}}
			}
			p.eventTime = &path
		}
	}
	return f, nil
}

// parseYAML returns the root node of the file's only document, or nil after
// recording why there is none.
func parseYAML(c *checker, data []byte) *yaml.Node {
	d := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := d.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.addAt(1, "", "the file is empty; want a mapping with a pipelines list")
		} else {
			c.addSyntax(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := d.Decode(&next); {
	case err == nil:
		c.addAt(next.Line, "", "want one YAML document, found another here")
		return nil
	case !errors.Is(err, io.EOF):
		c.addSyntax(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		c.addAt(1, "", "the file is empty; want a mapping with a pipelines list")
		return nil
	}
	return doc.Content[0]
}

// yamlLineRE finds the line in yaml.v3's syntax errors, which carry it only
// in their text ("yaml: line 3: did not find expected key").
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner). For these yaml.v3 prints the 0-based line of the collection
// being parsed, so one is added to get the line where it starts. A parser
// or scanner error printed without a line is on the first line; an unknown
// anchor is reported without one.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
}

func (c *checker) addSyntax(err error) {
	msg := yamlMessage(err)
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
	}
	if parserProblems[msg] || (line == 0 && !strings.HasPrefix(msg, "unknown anchor")) {
		line++
	}
	c.addAt(line, "", "%s", msg)
}

// yamlMessage strips yaml.v3's "yaml: " prefix.
func yamlMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// Defaults of the simulate list, which this package owns (the engine's
// are processor's Default* constants).
const (
	// DefaultSimulateRate is simulate[].rate when left out, events/s.
	DefaultSimulateRate = 1000
	// DefaultSimulateKeys is simulate[].keys when left out; it is
	// simulate.DefaultKeys, which a test checks.
	DefaultSimulateKeys = 1000
)

// setDefaults fills in the defaults this package shows in File: its own,
// and those engine defaults that other fields are named after (partitions,
// group, start, dead-letter stream, dedupe bucket), taken from processor's
// Default* constants. The other engine defaults (batch size, retries, …)
// are left zero for processor.Options.
func setDefaults(c *checker, f *File) {
	switch {
	case !c.has("http.addr"):
		f.HTTP.Addr = DefaultHTTPAddr
	case f.HTTP.Addr == "off":
		f.HTTP.Addr = ""
	}
	setSourceDefaults(c, f)
	for i := range f.Simulate {
		s := &f.Simulate[i]
		if s.Rate == 0 {
			s.Rate = DefaultSimulateRate
		}
		if s.Keys == 0 {
			s.Keys = DefaultSimulateKeys
		}
	}
	for _, p := range f.Pipelines {
		if p.Input.Partitions == 0 {
			p.Input.Partitions = processor.DefaultPartitions
		}
		if p.Input.Group == "" {
			p.Input.Group = p.Name
		}
		if p.Input.Start == "" {
			p.Input.Start = processor.StartOldest
		}
		if p.DeadLetter.Stream == "" {
			p.DeadLetter.Stream = p.Input.Stream + processor.DefaultDeadLetterSuffix
		}
		if p.Dedupe != nil && p.Dedupe.Bucket == 0 {
			p.Dedupe.Bucket = p.Dedupe.Window / processor.DefaultDedupeBuckets
		}
	}
}
