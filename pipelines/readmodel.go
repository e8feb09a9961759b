package pipelines

import (
	"fmt"
	"strings"

	"github.com/eddy-streams/eddy/processor"
)

// A pipeline's read model is what its state steps with a hash write: the
// CQRS view others read. `eddy rebuild` builds a new version of it from
// the input's whole history, in a consumer group of its own
// (processor.VersionGroup) and under hashes of their own
// (processor.VersionPrefix), while the current version keeps serving, then
// switches processor.VersionKey to it.

// rebuildSafe are the step types a rebuild may run again over the whole
// history: they write nothing but the read model and the key's own state.
// Any other (output, the analytics steps, saga) would emit every result
// again to its stream.
var rebuildSafe = map[string]bool{
	"require": true, "validate": true, "filter": true, "map": true, "schema": true, "state": true,
}

// Version returns the pipeline's read-model version (1 unless AtVersion
// made it).
func (p *Pipeline) Version() int { return max(p.version, 1) }

// AtVersion returns the pipeline as version n of its read model: the
// consumer group processor.VersionGroup(group, n), starting at the
// input's first entry, and the read-model hashes prefixed with
// processor.VersionPrefix(n). Version 1 is p itself.
func (p *Pipeline) AtVersion(n int) *Pipeline {
	if n <= 1 {
		return p
	}
	q := *p
	q.version = n
	q.Input.Group = processor.VersionGroup(p.group(), n)
	q.Input.Start = processor.StartOldest
	return &q
}

// group is the pipeline's consumer group as configured (its name by
// default).
func (p *Pipeline) group() string {
	if p.Input.Group != "" {
		return p.Input.Group
	}
	return p.Name
}

// ReadModels lists the hash names (with "$key") the pipeline's state steps
// write, in order.
func (p *Pipeline) ReadModels() []string {
	var out []string
	for _, s := range p.steps {
		if st, ok := s.step.(*stateStep); ok && st.name == "" {
			out = append(out, strings.Join(st.hash, keyPlaceholder))
		}
	}
	return out
}

// Rebuildable reports why the pipeline's read model cannot be rebuilt, or
// nil: it must write one, and do nothing else a replay of its whole
// history would do twice.
func (p *Pipeline) Rebuildable() error {
	for _, s := range p.steps {
		if !rebuildSafe[s.typ] {
			return fmt.Errorf("pipeline %s: steps[%d] is %s, which a rebuild would run again over the whole history (emitting every result again); rebuild a pipeline of its own that keeps the read model with state steps (and require, validate, filter, map, schema)", p.Name, s.index, s.typ)
		}
	}
	if len(p.ReadModels()) == 0 {
		return fmt.Errorf("pipeline %s has no read model to rebuild: no state step with a hash", p.Name)
	}
	return nil
}
