package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eddy-streams/eddy/pipelines"
)

// loadConfig loads and validates FILE; every problem is printed to stderr.
func loadConfig(g *globals, path string) (*pipelines.File, error) {
	if path == "" {
		return nil, usageError{errors.New("-c FILE is required")}
	}
	f, err := pipelines.Load(path, pipelines.NewRegistry())
	if err != nil {
		fmt.Fprintln(g.stderr, err)
		var ce *pipelines.ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintf(g.stderr, "%s: %d problem(s)\n", path, len(ce.Problems))
		}
		return nil, exitError{code: 1}
	}
	return f, nil
}

// selectPipelines returns the pipelines named (all when names is empty).
func selectPipelines(f *pipelines.File, names []string) ([]*pipelines.Pipeline, error) {
	if len(names) == 0 {
		return f.Pipelines, nil
	}
	var out []*pipelines.Pipeline
	for _, n := range names {
		p := f.Pipeline(n)
		if p == nil {
			var have []string
			for _, p := range f.Pipelines {
				have = append(have, p.Name)
			}
			return nil, usageError{fmt.Errorf("--pipeline %q: no such pipeline in %s (have: %s)", n, f.Name, strings.Join(have, ", "))}
		}
		out = append(out, p)
	}
	return out, nil
}
