package main

import (
	"bufio"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/simulate"
)

func simulateCommand(g *globals) *cobra.Command {
	var kind string
	var count int64
	var o simulate.Options
	cmd := &cobra.Command{
		Use:   "simulate --kind clickstream|iot --count N",
		Short: "Write generated clickstream or IoT events as NDJSON to stdout (pipe into eddy produce)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var gen simulate.Generator
			switch kind {
			case pipelines.SimulateClickstream:
				gen = simulate.NewClickstream(o)
			case pipelines.SimulateIoT:
				gen = simulate.NewIoT(o)
			default:
				return usageError{fmt.Errorf("--kind %q: want clickstream or iot", kind)}
			}
			if count < 1 {
				return usageError{fmt.Errorf("--count %d: must be at least 1", count)}
			}
			w := bufio.NewWriterSize(g.stdout, 1<<16)
			for i := int64(0); i < count; i++ {
				ev, _ := gen.Next()
				if _, err := w.Write(append(ev, '\n')); err != nil {
					return err
				}
			}
			return w.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "clickstream", "clickstream or iot")
	fl.Int64Var(&count, "count", 1000, "how many events")
	fl.IntVar(&o.Keys, "keys", simulate.DefaultKeys, "distinct users or devices")
	fl.Uint64Var(&o.Seed, "seed", 1, "seed: the same seed gives the same events (timestamps aside)")
	fl.Float64Var(&o.Duplicates, "duplicates", 0, "fraction of events re-sent with the same id")
	fl.Float64Var(&o.Bad, "bad", 0, "fraction of malformed events")
	return cmd
}
