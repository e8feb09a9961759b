package pipelines

import (
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/eddy-streams/eddy/schema"
)

// Schema is one entry of the "schemas" list: a JSON Schema file
// registered for an event type and version. Load reads and compiles the
// file; a missing file, invalid JSON or an invalid schema is a problem of
// the config at this entry's "file".
type Schema struct {
	// Type is the event type, ^[A-Za-z0-9][A-Za-z0-9_.-]*$. Required.
	Type string `yaml:"type"`
	// Version is the schema's version of the type, >= 1. Required; a
	// type and version appear once in the file.
	Version int `yaml:"version"`
	// File is the JSON Schema file, relative to the config file's
	// directory (or absolute), at most schema.MaxFileBytes. Required.
	File string `yaml:"file"`

	compiled *schema.Schema
}

var schemaTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Compiled returns the compiled schema; nil before Load or Parse.
func (s *Schema) Compiled() *schema.Schema { return s.compiled }

// SchemaRegistry returns the file's schemas by type and version.
func (f *File) SchemaRegistry() *schema.Registry {
	reg := schema.NewRegistry()
	for i := range f.Schemas {
		s := &f.Schemas[i]
		if s.compiled != nil {
			_ = reg.Add(s.Type, s.Version, s.compiled) // checked at load: no duplicates
		}
	}
	return reg
}

// SchemaPath resolves a schemas[].file against the directory of the config
// file name.
func SchemaPath(configFile, file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(filepath.Dir(configFile), file)
}

// validateSchemas records the problems of f.Schemas, compiles each file,
// and hands the registry of those that compiled to every step config, for
// the schema step (and custom steps) to look their schemas up.
func validateSchemas(c *checker, f *File) {
	reg := schema.NewRegistry()
	first := map[string]int{} // "type\x00version" → index
	for i := range f.Schemas {
		s := &f.Schemas[i]
		path := fmt.Sprintf("schemas[%d]", i)
		at := func(key string) string { return path + "." + key }
		ok := true
		switch {
		case s.Type == "":
			c.addf(at("type"), "required")
			ok = false
		case !schemaTypeRE.MatchString(s.Type):
			c.addf(at("type"), "%q must match %s", s.Type, schemaTypeRE)
			ok = false
		}
		switch {
		case !c.has(at("version")):
			c.addf(at("version"), "required")
			ok = false
		case s.Version < 1:
			c.addf(at("version"), "must be at least 1")
			ok = false
		}
		if ok {
			k := fmt.Sprintf("%s\x00%d", s.Type, s.Version)
			if j, dup := first[k]; dup {
				c.addf(at("version"), "duplicate schema %s version %d (first at line %d)", s.Type, s.Version, c.lineOf(fmt.Sprintf("schemas[%d]", j)))
				ok = false
			} else {
				first[k] = i
			}
		}
		if s.File == "" {
			c.addf(at("file"), "required")
			continue
		}
		compiled, err := schema.CompileFile(SchemaPath(f.Name, s.File))
		if err != nil {
			c.addf(at("file"), "%v", err)
			continue
		}
		s.compiled = compiled
		if ok {
			_ = reg.Add(s.Type, s.Version, compiled) // type, version and duplicates checked above
		}
	}
	checkSchemaSteps(c, f)
	for _, p := range f.Pipelines {
		if p == nil {
			continue
		}
		for j := range p.Steps {
			p.Steps[j].schemas = reg
		}
	}
}
