package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

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

// setup is how every command on pipelines starts: load and validate the
// file, pick the pipelines named (all when none), build the logger.
func setup(g *globals, file string, names []string) (*pipelines.File, []*pipelines.Pipeline, *zap.Logger, error) {
	f, err := loadConfig(g, file)
	if err != nil {
		return nil, nil, nil, err
	}
	ps, err := selectPipelines(f, names)
	if err != nil {
		return nil, nil, nil, err
	}
	log, err := g.logger()
	if err != nil {
		return nil, nil, nil, err
	}
	return f, ps, log, nil
}

// connect opens the Redis a command other than run works on: a real one
// (the embedded Redis lives only inside eddy run) that answers.
func connect(ctx context.Context, g *globals, f *pipelines.File, log *zap.Logger, command string) (*redisConn, error) {
	conn, err := openRedis(ctx, g, f, 0, 0, log)
	if err != nil {
		return nil, err
	}
	if conn.embedded {
		conn.close()
		return nil, usageError{fmt.Errorf("%s works on a Redis: give --redis URL or a redis section in the config (the embedded one lives only inside eddy run)", command)}
	}
	if err := conn.ping(ctx); err != nil {
		conn.close()
		return nil, err
	}
	return conn, nil
}

// setupOne is setup for commands that act on one pipeline: the one named,
// or the file's only one when none is named.
func setupOne(g *globals, file, pipeline string) (*pipelines.File, []*pipelines.Pipeline, *zap.Logger, error) {
	if pipeline != "" {
		return setup(g, file, []string{pipeline})
	}
	f, ps, log, err := setup(g, file, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(ps) != 1 {
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Name
		}
		return nil, nil, nil, usageError{fmt.Errorf("%s has %d pipelines (%s): name one with --pipeline NAME", file, len(ps), strings.Join(names, ", "))}
	}
	return f, ps, log, nil
}
