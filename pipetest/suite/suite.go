// Package suite reads pipeline test files, YAML beside a config that
// lists tests of events to send, moves of the clock and the stream entries,
// dead letters, keyed state and hashes to expect, and runs them on
// pipetest's harness (an embedded Redis and a manual clock), each test on a
// fresh one. `eddy test` is built on it; docs/testing.md documents the
// format.
//
// It owns the test-file format, its strict decoding and the runner's
// report. It reads the config only through pipelines.Load (and its YAML
// for the names a test may use); it ignores the config's sources,
// simulate, redis and http sections, starts no server and listens on no
// port.
package suite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// Suffix ends the name of a test file: iot.test.yaml tests iot.yaml.
const Suffix = ".test.yaml"

// File is a loaded test file.
type File struct {
	// Path is the test file's path, as given to Load or Parse.
	Path string
	// ConfigPath is the config's path: the file's config key, relative to
	// the test file's directory unless absolute, or by default the test
	// file's name without ".test".
	ConfigPath string
	// Config is the loaded config.
	Config *pipelines.File
	// Tests are the file's tests, in file order.
	Tests []*Test
}

// Test is one test of a file.
type Test struct {
	// Name is the test's name, unique in its file.
	Name string
	// Line is the line of the test in its file.
	Line int
	// Start is the clock's time when the test starts.
	Start time.Time
	steps []step
}

// The step kinds of a test.
const (
	kSend         = "send"
	kAdvance      = "advance"
	kAdvanceTo    = "advance_to"
	kExpect       = "expect"
	kExpectDead   = "expect_dead_letters"
	kExpectState  = "expect_state"
	kExpectHash   = "expect_hash"
	matchExact    = "exact"
	matchContains = "contains"
)

var stepKinds = []string{kSend, kAdvance, kAdvanceTo, kExpect, kExpectDead, kExpectState, kExpectHash}

// step is one step of a test; which fields are set depends on kind.
type step struct {
	kind string
	line int
	path string
	// send
	pipeline string
	events   []event
	// advance, advance_to: the clock's offset from the test's start after
	// the step
	to time.Duration
	// expect, expect_dead_letters
	stream  string
	want    entriesWant
	onlyNew bool
	// expect_state, expect_hash
	name, key string
	fields    *value
	exact     bool
}

// event is one event of a send step.
type event struct {
	at      time.Duration // offset from the test's start the clock moves to first
	hasAt   bool
	payload string // JSON, or a raw string as written
}

// Load reads the test file at path and the config it names, building the
// config's steps from reg (nil means pipelines.NewRegistry()). Problems
// in the test file or its config come back as one *pipelines.ConfigError,
// each "file:line: path: message".
func Load(path string, reg *pipelines.Registry) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	return Parse(path, data, reg)
}

// Parse is Load for data already read; path names the file in problems
// and locates the config.
func Parse(path string, data []byte, reg *pipelines.Registry) (*File, error) {
	if reg == nil {
		reg = pipelines.NewRegistry()
	}
	d := &decoder{file: path}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.syntax(err)
		return nil, d.err()
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		d.add(&yaml.Node{Line: 1}, "", "the file is empty; want a mapping with a tests list")
		return nil, d.err()
	}
	root := resolve(doc.Content[0])
	top := d.mapping(root, "", "config", "start", "tests")
	if top == nil {
		return nil, d.err()
	}
	f := &File{Path: path}
	cfgName := strings.TrimSuffix(filepath.Base(path), Suffix) + ".yaml"
	if !strings.HasSuffix(filepath.Base(path), Suffix) {
		cfgName = ""
	}
	if c, ok := top["config"]; ok {
		cfgName, _ = d.nonEmpty(c.val, "config")
	} else if cfgName == "" {
		d.add(root, "", "config is required: the file's name does not end in %s, so the config cannot be found by it", Suffix)
	}
	var ci *configInfo
	if cfgName != "" {
		f.ConfigPath = cfgName
		if !filepath.IsAbs(cfgName) {
			f.ConfigPath = filepath.Join(filepath.Dir(path), cfgName)
		}
		ci = f.loadConfig(d, top, root, reg)
	}
	start := pipetest.DefaultStart
	if s, ok := top["start"]; ok {
		start, _ = d.timestamp(s.val, "start")
	}
	if d.required(top, root, "", "tests", "the list of tests") {
		f.Tests = d.tests(top["tests"].val, start, ci)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// loadConfig loads the config; its problems are added to the test file's,
// after one at the config key.
func (f *File) loadConfig(d *decoder, top map[string]field, root *yaml.Node, reg *pipelines.Registry) *configInfo {
	at := root
	if c, ok := top["config"]; ok {
		at = c.val
	}
	data, err := os.ReadFile(f.ConfigPath)
	if err != nil {
		d.add(at, "config", "read the config: %v", err)
		return nil
	}
	cfg, err := pipelines.Parse(f.ConfigPath, data, reg)
	if err != nil {
		d.add(at, "config", "%s does not load (its problems follow)", f.ConfigPath)
		var ce *pipelines.ConfigError
		if errors.As(err, &ce) {
			d.probs = append(d.probs, ce.Problems...)
		} else {
			d.add(at, "config", "%v", err)
		}
		return nil
	}
	f.Config = cfg
	return newConfigInfo(cfg, data)
}

// tests reads the tests list.
func (d *decoder) tests(n *yaml.Node, start time.Time, ci *configInfo) []*Test {
	list, ok := d.list(n, "tests")
	if !ok {
		return nil
	}
	if len(list) == 0 {
		d.add(n, "tests", "want at least one test")
	}
	names := map[string]int{}
	var out []*Test
	for i, tn := range list {
		path := index("tests", i)
		m := d.mapping(tn, path, "name", "start", "steps")
		if m == nil {
			continue
		}
		t := &Test{Line: tn.Line, Start: start}
		if d.required(m, tn, path, "name", "it names the test in the report") {
			t.Name, _ = d.nonEmpty(m["name"].val, joinPath(path, "name"))
			if first, dup := names[t.Name]; dup && t.Name != "" {
				d.add(m["name"].val, joinPath(path, "name"), "%q: another test has this name (line %d)", t.Name, first)
			}
			names[t.Name] = m["name"].val.Line
		}
		if s, ok := m["start"]; ok {
			t.Start, _ = d.timestamp(s.val, joinPath(path, "start"))
		}
		if d.required(m, tn, path, "steps", "what the test sends, moves and expects") {
			t.steps = d.steps(m["steps"].val, joinPath(path, "steps"), t.Start, ci)
		}
		out = append(out, t)
	}
	return out
}

// steps reads a test's steps, keeping its clock's offset from the start
// to check that no step moves it back.
func (d *decoder) steps(n *yaml.Node, path string, start time.Time, ci *configInfo) []step {
	list, ok := d.list(n, path)
	if !ok {
		return nil
	}
	if len(list) == 0 {
		d.add(n, path, "want at least one step")
	}
	var clock time.Duration
	out := make([]step, 0, len(list))
	for i, sn := range list {
		sp := index(path, i)
		kind, v, ok := d.oneKey(sn, sp, stepKinds)
		if !ok {
			continue
		}
		s := step{kind: kind, line: sn.Line, path: joinPath(sp, kind)}
		switch kind {
		case kSend:
			d.send(&s, v, start, &clock, ci)
		case kAdvance:
			if by, ok := d.duration(v, s.path); ok {
				if by <= 0 {
					d.add(v, s.path, "%s: want a duration > 0", v.Value)
				}
				clock += max(by, 0)
			}
			s.to = clock
		case kAdvanceTo:
			if to, ok := d.duration(v, s.path); ok {
				if to < clock {
					d.add(v, s.path, "%s is before the clock, already at %s from the start: the clock does not go back", v.Value, clock)
				}
				clock = max(to, clock)
			}
			s.to = clock
		case kExpect, kExpectDead:
			d.expect(&s, v, start, ci)
		case kExpectState, kExpectHash:
			d.expectHash(&s, v, start, ci)
		}
		out = append(out, s)
	}
	return out
}

// pipelineOf reads the optional pipeline key: required unless the config
// has only one pipeline.
func (d *decoder) pipelineOf(m map[string]field, n *yaml.Node, path string, ci *configInfo) string {
	f, ok := m["pipeline"]
	if !ok {
		if ci != nil && len(ci.pipelines) != 1 {
			d.add(n, path, "pipeline is required: the config has %d pipelines (%s)", len(ci.pipelines), strings.Join(ci.pipelines, ", "))
		}
		if ci != nil && len(ci.pipelines) == 1 {
			return ci.pipelines[0]
		}
		return ""
	}
	name, ok := d.nonEmpty(f.val, joinPath(path, "pipeline"))
	if ok && ci != nil && !contains(ci.pipelines, name) {
		d.add(f.val, joinPath(path, "pipeline"), "no pipeline %q in the config (have: %s)", name, strings.Join(ci.pipelines, ", "))
	}
	return name
}

// send reads a send step.
func (d *decoder) send(s *step, n *yaml.Node, start time.Time, clock *time.Duration, ci *configInfo) {
	m := d.mapping(n, s.path, "pipeline", "events")
	if m == nil {
		return
	}
	s.pipeline = d.pipelineOf(m, n, s.path, ci)
	if !d.required(m, n, s.path, "events", "the events to send") {
		return
	}
	ep := joinPath(s.path, "events")
	list, ok := d.list(m["events"].val, ep)
	if !ok {
		return
	}
	if len(list) == 0 {
		d.add(m["events"].val, ep, "want at least one event")
	}
	payload := ci == nil || ci.payload[s.pipeline]
	for i, en := range list {
		path := index(ep, i)
		em := d.mapping(en, path, "at", "event")
		if em == nil {
			continue
		}
		var ev event
		if a, ok := em["at"]; ok {
			at, ok := d.duration(a.val, joinPath(path, "at"))
			switch {
			case !ok:
			case at < *clock:
				d.add(a.val, joinPath(path, "at"), "%s is before the clock, already at %s from the start: the clock does not go back", a.val.Value, *clock)
			default:
				*clock = at
			}
			ev.at, ev.hasAt = *clock, true
		}
		if !d.required(em, en, path, "event", "the event: a mapping (sent as JSON) or a string (sent as it is)") {
			continue
		}
		v := em["event"].val
		vp := joinPath(path, "event")
		switch {
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
			if !payload {
				d.add(v, vp, "pipeline %s reads an entry's own fields, so an event must be a mapping", s.pipeline)
			}
			ev.payload = v.Value
		case v.Kind != yaml.MappingNode && !payload:
			d.add(v, vp, "want a mapping (pipeline %s reads an entry's own fields), got %s", s.pipeline, kindName(v))
		default:
			ev.payload = string(d.readValue(v, vp, start).json())
		}
		s.events = append(s.events, ev)
	}
}

// expect reads an expect or expect_dead_letters step.
func (d *decoder) expect(s *step, n *yaml.Node, start time.Time, ci *configInfo) {
	keys := []string{"stream", "entries", "count", "match", "ordered", "new"}
	if s.kind == kExpectDead {
		keys[0] = "pipeline"
	}
	m := d.mapping(n, s.path, keys...)
	if m == nil {
		return
	}
	if s.kind == kExpectDead {
		s.pipeline = d.pipelineOf(m, n, s.path, ci)
		if ci != nil {
			s.stream = ci.dlq[s.pipeline]
		}
	} else if d.required(m, n, s.path, "stream", "the stream whose entries are expected") {
		sn := m["stream"].val
		var ok bool
		if s.stream, ok = d.nonEmpty(sn, joinPath(s.path, "stream")); ok && ci != nil && !ci.streams[s.stream] {
			d.add(sn, joinPath(s.path, "stream"), "no pipeline writes a stream %q (the config's: %s)", s.stream, ci.streamList())
		}
	}
	if e, ok := m["entries"]; ok {
		ep := joinPath(s.path, "entries")
		if list, ok := d.list(e.val, ep); ok {
			s.want.entries = make([]*value, 0, len(list))
			for i, en := range list {
				if en.Kind != yaml.MappingNode {
					d.add(en, index(ep, i), "want a mapping of the entry's fields, got %s", kindName(en))
					continue
				}
				s.want.entries = append(s.want.entries, d.readValue(en, index(ep, i), start))
			}
		}
	}
	if c, ok := m["count"]; ok {
		s.want.count, s.want.hasCount = d.count(c.val, joinPath(s.path, "count"))
	}
	if mt, ok := m["match"]; ok {
		v, _ := d.str(mt.val, joinPath(s.path, "match"))
		switch v {
		case matchExact:
		case matchContains:
			s.want.contains = true
		default:
			d.add(mt.val, joinPath(s.path, "match"), "want %s (these entries, in order, and no others) or %s (these among others, in order), got %q", matchExact, matchContains, v)
		}
	}
	if o, ok := m["ordered"]; ok {
		ordered, _ := d.boolean(o.val, joinPath(s.path, "ordered"))
		s.want.unordered = !ordered
	}
	if nw, ok := m["new"]; ok {
		s.onlyNew, _ = d.boolean(nw.val, joinPath(s.path, "new"))
	}
	_, hasEntries := m["entries"]
	switch {
	case !hasEntries && !s.want.hasCount:
		d.add(n, s.path, "want entries, count or both")
	case hasEntries && s.want.hasCount && !s.want.contains && s.want.count != len(s.want.entries):
		d.add(m["count"].val, joinPath(s.path, "count"), "count %d disagrees with the %d entries (match: exact wants exactly those)", s.want.count, len(s.want.entries))
	case !hasEntries && s.want.contains:
		d.add(m["match"].val, joinPath(s.path, "match"), "match: contains wants entries")
	}
}

// expectHash reads an expect_state or expect_hash step.
func (d *decoder) expectHash(s *step, n *yaml.Node, start time.Time, ci *configInfo) {
	var m map[string]field
	if s.kind == kExpectState {
		m = d.mapping(n, s.path, "pipeline", "name", "key", "fields", "exact")
	} else {
		m = d.mapping(n, s.path, "key", "fields", "exact")
	}
	if m == nil {
		return
	}
	if s.kind == kExpectState {
		s.pipeline = d.pipelineOf(m, n, s.path, ci)
		if d.required(m, n, s.path, "name", "the state's name (a state step's or an analytics step's name)") {
			nn := m["name"].val
			var ok bool
			if s.name, ok = d.nonEmpty(nn, joinPath(s.path, "name")); ok && ci != nil && contains(ci.pipelines, s.pipeline) && !ci.states[s.pipeline][s.name] {
				d.add(nn, joinPath(s.path, "name"), "pipeline %s has no state %q (its states: %s)", s.pipeline, s.name, ci.stateList(s.pipeline))
			}
		}
	}
	why := "the message key whose state is expected"
	if s.kind == kExpectHash {
		why = "the Redis key of the hash (a state step's hash with $key replaced)"
	}
	if d.required(m, n, s.path, "key", why) {
		s.key, _ = d.str(m["key"].val, joinPath(s.path, "key"))
	}
	if d.required(m, n, s.path, "fields", "the fields expected ({} with exact: true for none)") {
		fn := m["fields"].val
		if fn.Kind != yaml.MappingNode {
			d.add(fn, joinPath(s.path, "fields"), "want a mapping of fields, got %s", kindName(fn))
		} else {
			s.fields = d.readValue(fn, joinPath(s.path, "fields"), start)
		}
	}
	if e, ok := m["exact"]; ok {
		s.exact, _ = d.boolean(e.val, joinPath(s.path, "exact"))
	}
}
