package suite

import (
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/pipelines"
)

// configInfo is what a test file may name in its config: pipelines, the
// streams they write and the names of their keyed states.
type configInfo struct {
	pipelines []string
	payload   map[string]bool            // pipeline → reads the event as JSON in one field
	dlq       map[string]string          // pipeline → its dead-letter stream
	states    map[string]map[string]bool // pipeline → state names
	streams   map[string]bool            // every stream a pipeline may write
}

// newConfigInfo reads f and the YAML it was loaded from. The streams a
// pipeline writes are its dead-letter stream and every stream its steps
// name: the value of any "stream" key in a step's config (output's
// stream, an analytics step's output.stream) and a "late" of
// "stream:<name>". The state names are each step's "name" (a state step's,
// an analytics step's).
func newConfigInfo(f *pipelines.File, data []byte) *configInfo {
	ci := &configInfo{payload: map[string]bool{}, dlq: map[string]string{},
		states: map[string]map[string]bool{}, streams: map[string]bool{}}
	for _, p := range f.Pipelines {
		ci.pipelines = append(ci.pipelines, p.Name)
		ci.payload[p.Name] = p.Input.Payload != ""
		ci.dlq[p.Name] = p.DeadLetter.Stream
		ci.streams[p.DeadLetter.Stream] = true
		ci.states[p.Name] = map[string]bool{}
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return ci
	}
	ps := lookup(resolve(doc.Content[0]), "pipelines")
	if ps == nil || ps.Kind != yaml.SequenceNode {
		return ci
	}
	for i, pn := range ps.Content {
		if i >= len(f.Pipelines) {
			break
		}
		name := f.Pipelines[i].Name
		steps := lookup(resolve(pn), "steps")
		if steps == nil || steps.Kind != yaml.SequenceNode {
			continue
		}
		for _, sn := range steps.Content {
			sn = resolve(sn)
			if sn.Kind != yaml.MappingNode || len(sn.Content) != 2 {
				continue
			}
			cfg := resolve(sn.Content[1])
			if n := lookup(cfg, "name"); n != nil && n.Kind == yaml.ScalarNode {
				ci.states[name][n.Value] = true
			}
			ci.collectStreams(cfg)
		}
	}
	return ci
}

// lookup returns the value of key in mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// collectStreams adds the streams a step's config names.
func (ci *configInfo) collectStreams(n *yaml.Node) {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, resolve(n.Content[i+1])
			if v.Kind == yaml.ScalarNode {
				switch {
				case k == "stream":
					ci.streams[v.Value] = true
				case k == "late" && strings.HasPrefix(v.Value, "stream:"):
					ci.streams[strings.TrimSpace(strings.TrimPrefix(v.Value, "stream:"))] = true
				}
				continue
			}
			ci.collectStreams(v)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			ci.collectStreams(c)
		}
	}
}

func (ci *configInfo) streamList() string {
	var s []string
	for k := range ci.streams {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func (ci *configInfo) stateList(pipeline string) string {
	var s []string
	for k := range ci.states[pipeline] {
		s = append(s, k)
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
