package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

func schemaCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Check new versions of the JSON Schemas a config registers",
	}
	cmd.AddCommand(schemaCheckCommand(g))
	return cmd
}

// Limits of eddy schema check.
const (
	// maxReplay bounds --replay.
	maxReplay = 1_000_000
	// replayShown is how many failing events --replay prints.
	replayShown = 10
)

type schemaCheckFlags struct {
	file, typ, mode, pipeline string
	against, replay           int
}

func schemaCheckCommand(g *globals) *cobra.Command {
	var fl schemaCheckFlags
	cmd := &cobra.Command{
		Use:   "check -c FILE --type T [--against VERSION] [--mode backward|forward|full] [--replay N [--pipeline P]] NEW.json",
		Short: "Tell whether NEW.json is a backward, forward or fully compatible new version of a registered schema, and replay real events against it",
		Long: `Compares NEW.json with the schema the config registers for --type at --against
(default: its highest version) and prints, for each direction, compatible,
incompatible or unknown, with every reason (JSON pointer into the schemas,
keyword, what breaks). Backward: NEW.json accepts every event the registered
version accepts (consumers on the new version read old events). Forward: the
registered version accepts every event NEW.json accepts (consumers on the old
version read new events). Full: both.

--replay N reads the last N entries of the pipeline's input stream (all
partitions, newest first) from Redis, as a monitor, and validates each
payload against NEW.json, printing how many pass and the first failures
with their entry ids.

Exit status: 0 when the change is compatible in --mode (default backward)
and every replayed event passes; 1 when it is incompatible or unknown in
that mode, an event fails, or the config or NEW.json is broken; 2 for bad
usage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("want one argument, the new schema file (NEW.json); got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSchemaCheck(cmd, g, fl, args[0])
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&fl.file, "config", "c", "", "config file (YAML) whose schemas list registers the type")
	fs.StringVar(&fl.typ, "type", "", "event type to check (required)")
	fs.IntVar(&fl.against, "against", 0, "registered version to compare with (default: the type's highest)")
	fs.StringVar(&fl.mode, "mode", string(schema.ModeBackward), "compatibility required for exit status 0: backward, forward or full")
	fs.IntVar(&fl.replay, "replay", 0, fmt.Sprintf("validate the last N events of the pipeline's input stream against NEW.json (at most %d; 0: none)", maxReplay))
	fs.StringVar(&fl.pipeline, "pipeline", "", "pipeline whose input --replay reads (default: the file's only pipeline, or the only one with a schema step for --type)")
	return cmd
}

func runSchemaCheck(cmd *cobra.Command, g *globals, fl schemaCheckFlags, newFile string) error {
	mode, err := schema.ParseMode(fl.mode)
	if err != nil {
		return usageError{fmt.Errorf("--mode: %w", err)}
	}
	switch {
	case fl.typ == "":
		return usageError{errors.New("--type is required")}
	case fl.replay < 0 || fl.replay > maxReplay:
		return usageError{fmt.Errorf("--replay %d: want 0 to %d", fl.replay, maxReplay)}
	case fl.against < 0:
		return usageError{fmt.Errorf("--against %d: want a version >= 1", fl.against)}
	case fl.pipeline != "" && fl.replay == 0:
		return usageError{errors.New("--pipeline goes with --replay N")}
	}
	f, err := loadConfig(g, fl.file)
	if err != nil {
		return err
	}
	reg := f.SchemaRegistry()
	versions := reg.Versions(fl.typ)
	if len(versions) == 0 {
		return usageError{fmt.Errorf("--type %q: %s registers no schema of that type (types: %s)", fl.typ, fl.file, orNone(reg.Types()))}
	}
	against := fl.against
	if against == 0 {
		against = versions[len(versions)-1]
	}
	old := reg.Lookup(fl.typ, against)
	if old == nil {
		return usageError{fmt.Errorf("--against %d: %s registers no %s version %d (versions: %s)", against, fl.file, fl.typ, against, intList(versions))}
	}
	next, err := schema.CompileFile(newFile)
	if err != nil {
		fmt.Fprintln(g.stderr, "eddy:", err)
		return exitError{code: 1}
	}
	var rp *replayTarget
	if fl.replay > 0 { // before any output: a usage error prints nothing else
		if rp, err = openReplayTarget(cmd.Context(), g, f, fl.pipeline, fl.typ); err != nil {
			return err
		}
		defer rp.conn.close()
	}

	r := schema.Check(old, next)
	w := g.stdout
	fmt.Fprintf(w, "%s: version %d (%s) -> %s\n", fl.typ, against, old.Name(), newFile)
	for _, d := range []struct {
		dir  schema.Direction
		v    schema.Verdict
		what string
	}{
		{schema.Backward, r.Backward, fmt.Sprintf("%s reads every event version %d accepts", newFile, against)},
		{schema.Forward, r.Forward, fmt.Sprintf("version %d reads every event %s accepts", against, newFile)},
	} {
		fmt.Fprintf(w, "%s: %s", d.dir, d.v)
		if d.v == schema.Compatible {
			fmt.Fprintf(w, " (%s)", d.what)
		}
		fmt.Fprintln(w)
		for _, fd := range r.Findings {
			if fd.Direction != d.dir {
				continue
			}
			what := "breaks"
			if fd.Unknown {
				what = "unknown"
			}
			ptr := fd.Pointer
			if ptr == "" {
				ptr = "(root)"
			}
			fmt.Fprintf(w, "  - %s at %s: %s: %s\n", what, ptr, fd.Keyword, fd.Message)
		}
	}
	fmt.Fprintf(w, "compatibility: %s\n", r.Level())
	ok := r.In(mode) == schema.Compatible
	verdict := "ok"
	if !ok {
		verdict = fmt.Sprintf("not %s compatible", mode)
		if r.In(mode) == schema.Unknown {
			verdict = fmt.Sprintf("%s compatibility not proven (unknown)", mode)
		}
	}
	fmt.Fprintf(w, "mode %s: %s\n", mode, verdict)

	if rp != nil {
		failed, err := rp.replay(cmd.Context(), g, next, fl.replay)
		if err != nil {
			return err
		}
		ok = ok && failed == 0
	}
	if !ok {
		return exitError{code: 1}
	}
	return nil
}

// replayPipeline picks the pipeline whose input --replay reads.
func replayPipeline(f *pipelines.File, name, typ string) (*pipelines.Pipeline, error) {
	var p *pipelines.Pipeline
	switch {
	case name != "":
		ps, err := selectPipelines(f, []string{name})
		if err != nil {
			return nil, err
		}
		p = ps[0]
	case len(f.Pipelines) == 1:
		p = f.Pipelines[0]
	default:
		var with []*pipelines.Pipeline
		for _, q := range f.Pipelines {
			if slices.Contains(q.SchemaTypes(), typ) {
				with = append(with, q)
			}
		}
		if len(with) != 1 {
			return nil, usageError{fmt.Errorf("--replay: name the pipeline with --pipeline (%d pipelines of %s validate %s)", len(with), f.Name, typ)}
		}
		p = with[0]
	}
	if p.Input.Payload == "" {
		return nil, usageError{fmt.Errorf("--replay: pipeline %q has no input.payload: its entries' fields are strings, not the JSON events a schema describes", p.Name)}
	}
	return p, nil
}

// replayRole is the Redis role of --replay: it only reads.
const replayRole = processor.RoleMonitor

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func intList(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return orNone(s)
}
