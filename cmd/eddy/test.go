package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest/suite"
)

// defaultTestDir is where eddy test looks for test files when given none.
const defaultTestDir = "configs"

func testCommand(g *globals) *cobra.Command {
	var match string
	var logs bool
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run pipeline tests (*.test.yaml beside a config) on an embedded Redis and a clock the tests move: exit 0 if all pass, 1 if any fails, 2 if a test file is broken",
		Long: `Run pipeline tests written in YAML beside a config (docs/testing.md).

A PATH is a test file or a directory, whose *.test.yaml files are run. With no
PATH, the *.test.yaml files of ./configs are run.

Each test runs the config's pipelines in-process on a fresh embedded Redis,
with a clock that only the test moves; the config's sources, simulate, redis
and http sections are ignored. For each test it prints "ok   <name>", or
"FAIL <name>" and what differed, then "N passed, M failed".

Exit status: 0 when every test passed, 1 when one failed, 2 when a test file
or its config could not be loaded (its problems are printed as
file:line: path: message) or the command was called wrongly.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := testFiles(args)
			if err != nil {
				return err
			}
			opts := suite.Options{}
			if match != "" {
				if opts.Match, err = regexp.Compile(match); err != nil {
					return usageError{fmt.Errorf("--run: %w", err)}
				}
			}
			if logs {
				if opts.Logger, err = g.logger(); err != nil {
					return err
				}
			}
			return runTestFiles(g, files, opts, match)
		},
	}
	cmd.Flags().StringVar(&match, "run", "", "run only the tests whose names match this regular expression")
	cmd.Flags().BoolVar(&logs, "logs", false, "print the engine's logs (at --log-level, as --log-format) to stderr")
	return cmd
}

// runTestFiles loads and runs each file; see testCommand for the exit
// status.
func runTestFiles(g *globals, files []string, opts suite.Options, match string) error {
	passed, failed, broken := 0, 0, 0
	for _, path := range files {
		f, err := suite.Load(path, pipelines.NewRegistry())
		if err != nil {
			fmt.Fprintln(g.stderr, err)
			var ce *pipelines.ConfigError
			if errors.As(err, &ce) {
				fmt.Fprintf(g.stderr, "%s: %d problem(s)\n", path, len(ce.Problems))
			}
			broken++
			continue
		}
		fmt.Fprintf(g.stdout, "%s (config %s)\n", path, f.ConfigPath)
		for _, r := range suite.Run(f, g.stdout, opts) {
			if r.Passed() {
				passed++
			} else {
				failed++
			}
		}
	}
	fmt.Fprintln(g.stdout, suite.Summary(passed, failed, broken))
	switch {
	case broken > 0:
		return exitError{code: 2}
	case failed > 0:
		return exitError{code: 1}
	case passed == 0 && match != "":
		return usageError{fmt.Errorf("--run %q matches no test", match)}
	}
	return nil
}

// testFiles are the test files that args name: files as given, and the
// *.test.yaml files of directories; with no args, those of ./configs.
func testFiles(args []string) ([]string, error) {
	if len(args) == 0 {
		if st, err := os.Stat(defaultTestDir); err != nil || !st.IsDir() {
			return nil, usageError{fmt.Errorf("no PATH given and no %s directory here: name test files or directories", defaultTestDir)}
		}
		args = []string{defaultTestDir}
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, usageError{fmt.Errorf("test path: %w", err)}
		}
		found := []string{a}
		if st.IsDir() {
			found, _ = filepath.Glob(filepath.Join(a, "*"+suite.Suffix)) // the pattern is valid
			if len(found) == 0 {
				return nil, usageError{fmt.Errorf("%s: no *%s files in this directory", a, suite.Suffix)}
			}
			sort.Strings(found)
		}
		for _, f := range found {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out, nil
}
