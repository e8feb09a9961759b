package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// statusJSON is what `eddy status --json` prints: one object.
type statusJSON struct {
	Pipelines []pipelineStatus `json:"pipelines"`
}

type pipelineStatus struct {
	Name       string            `json:"name"`
	Stream     string            `json:"stream"`
	Group      string            `json:"group"`
	Ordering   string            `json:"ordering"`
	Version    int               `json:"version"`  // of the read model (eddy rebuild)
	Unrouted   int64             `json:"unrouted"` // entries on the bare stream name of a partitioned pipeline
	Workers    []workerStatus    `json:"workers"`
	Partitions []partitionStatus `json:"partitions"`
	// Open is, for each analytics step, its open windows, sessions or
	// funnels, or active alerts, over every partition.
	Open map[string]int64 `json:"open"`
}

type workerStatus struct {
	Consumer    string `json:"consumer"`
	ExpiresInMs int64  `json:"expires_in_ms"`
}

type partitionStatus struct {
	Partition       int    `json:"partition"`
	Stream          string `json:"stream"`
	Owner           string `json:"owner"`
	Token           int64  `json:"token"`
	LeaseTTLMs      int64  `json:"lease_ttl_ms"`
	Length          int64  `json:"length"`
	GroupExists     bool   `json:"group_exists"`
	Lag             int64  `json:"lag"`
	Pending         int64  `json:"pending"`
	OldestPendingMs int64  `json:"oldest_pending_ms"`
}

func statusCommand(g *globals) *cobra.Command {
	var file string
	var names []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status -c FILE",
		Short: "Show live workers, each partition's owner and fencing token, lag, pending entries and the oldest one's age",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, ps, log, err := setup(g, file, names)
			if err != nil {
				return err
			}
			conn, err := connectAs(ctx, g, f, ps, log, "status", processor.RoleMonitor)
			if err != nil {
				return err
			}
			defer conn.close()
			var out statusJSON
			for _, p := range ps {
				st, err := pipelineStatusOf(cmd, conn, p)
				if err != nil {
					return err
				}
				out.Pipelines = append(out.Pipelines, st)
			}
			if asJSON {
				b, err := json.Marshal(out)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, string(b))
				return nil
			}
			printStatus(g, out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringSliceVar(&names, "pipeline", nil, "only these pipelines (default all)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func pipelineStatusOf(cmd *cobra.Command, conn *redisConn, p *pipelines.Pipeline) (pipelineStatus, error) {
	ctx := cmd.Context()
	p, version, err := atCurrentVersion(ctx, conn.client, p)
	if err != nil {
		return pipelineStatus{}, err
	}
	in, err := processor.NewInspector(conn.client, p.Options())
	if err != nil {
		return pipelineStatus{}, err
	}
	o := in.Options()
	st := pipelineStatus{Name: o.Pipeline, Stream: o.Stream, Group: o.Group, Ordering: o.Ordering, Version: version,
		Workers: []workerStatus{}, Partitions: []partitionStatus{}}
	if o.Ordering == processor.OrderingKey {
		members, err := in.Members(ctx)
		if err != nil {
			return st, err
		}
		for _, m := range members {
			st.Workers = append(st.Workers, workerStatus{Consumer: m.Consumer, ExpiresInMs: time.Until(m.Expires).Milliseconds()})
		}
	}
	stats, err := in.Stats(ctx)
	if err != nil {
		return st, err
	}
	for _, s := range stats {
		st.Partitions = append(st.Partitions, partitionStatus{
			Partition: s.Partition, Stream: s.Stream, Owner: s.Owner, Token: s.Token,
			LeaseTTLMs: s.LeaseTTL.Milliseconds(), Length: s.Length, GroupExists: s.GroupExists,
			Lag: s.Lag, Pending: s.Pending, OldestPendingMs: s.OldestPending.Milliseconds(),
		})
	}
	if st.Unrouted, err = in.Unrouted(ctx); err != nil {
		return st, err
	}
	st.Open = map[string]int64{}
	if steps := p.AnalyticsSteps(); len(steps) > 0 {
		gauges, err := in.Gauges(ctx)
		if err != nil {
			return st, err
		}
		for _, name := range steps {
			st.Open[name] = 0
			for _, g := range gauges {
				st.Open[name] += g[pipelines.GaugeOpen(name)]
			}
		}
	}
	return st, nil
}

func printStatus(g *globals, out statusJSON) {
	for i, p := range out.Pipelines {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		fmt.Fprintf(g.stdout, "pipeline %s  stream %s  group %s  ordering %s", p.Name, p.Stream, p.Group, p.Ordering)
		if p.Version > 1 {
			fmt.Fprintf(g.stdout, "  read model version %d", p.Version)
		}
		fmt.Fprintln(g.stdout)
		if p.Ordering == processor.OrderingKey {
			var ws []string
			for _, w := range p.Workers {
				ws = append(ws, fmt.Sprintf("%s (%.1fs)", w.Consumer, float64(w.ExpiresInMs)/1000))
			}
			if len(ws) == 0 {
				ws = []string{"none"}
			}
			fmt.Fprintf(g.stdout, "workers: %s\n", strings.Join(ws, ", "))
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tSTREAM\tOWNER\tTOKEN\tLEASE\tLENGTH\tLAG\tPENDING\tOLDEST PENDING")
		for _, s := range p.Partitions {
			owner, lease := s.Owner, fmt.Sprintf("%.1fs", float64(s.LeaseTTLMs)/1000)
			if owner == "" {
				owner, lease = "-", "-"
			}
			lag := fmt.Sprint(s.Lag)
			switch {
			case !s.GroupExists:
				lag += " (no group yet)"
			case s.Lag < 0:
				lag = "?"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\n", s.Partition, s.Stream, owner, s.Token, lease,
				s.Length, lag, s.Pending, (time.Duration(s.OldestPendingMs) * time.Millisecond).String())
		}
		_ = tw.Flush()
		if len(p.Open) > 0 {
			var open []string
			for _, name := range slices.Sorted(maps.Keys(p.Open)) {
				open = append(open, fmt.Sprintf("%s %d", name, p.Open[name]))
			}
			fmt.Fprintf(g.stdout, "open (windows, sessions, funnels, sagas, active alerts): %s\n", strings.Join(open, ", "))
		}
		if p.Unrouted > 0 {
			n := len(p.Partitions)
			fmt.Fprintf(g.stdout, "warning: %d entries on the bare stream %s are never read: with %d partitions, producers add "+
				"each entry to {%s:<p>}, p = processor.PartitionOf(key, %d), named by processor.PartitionStream (eddy produce routes so)\n",
				p.Unrouted, p.Stream, n, p.Stream, n)
		}
	}
}
