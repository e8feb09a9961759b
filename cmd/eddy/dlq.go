package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/processor"
)

func dlqCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay a pipeline's dead letters",
	}
	cmd.AddCommand(dlqListCommand(g), dlqReplayCommand(g))
	return cmd
}

// dlqTarget is the dead-letter stream of one pipeline, read through an
// Inspector, and the connection it uses.
type dlqTarget struct {
	conn     *redisConn
	in       *processor.Inspector
	stream   string
	pipeline string
	// others are the other pipelines of the file reading the same input
	// stream without dedupe: a replay would reach them too.
	others []string
	g      *globals
}

func openDLQ(ctx context.Context, g *globals, file, pipeline string) (*dlqTarget, error) {
	f, ps, log, err := setupOne(g, file, pipeline)
	if err != nil {
		return nil, err
	}
	pipeline = ps[0].Name // the file's only one when none was named
	conn, err := connectAs(ctx, g, f, ps, log, "dlq", processor.RoleMonitor)
	if err != nil {
		return nil, err
	}
	in, err := processor.NewInspector(conn.client, ps[0].Options())
	if err != nil {
		conn.close()
		return nil, err
	}
	t := &dlqTarget{conn: conn, in: in, stream: in.Options().DeadLetterStream, pipeline: pipeline, g: g}
	for _, p := range f.Pipelines {
		if p.Name != pipeline && p.Input.Stream == ps[0].Input.Stream && p.Dedupe == nil {
			t.others = append(t.others, p.Name)
		}
	}
	return t, nil
}

// each calls fn for every dead letter of the pipeline that match accepts,
// oldest first, until fn returns false. It stops at the last entry the
// stream had when it began: a replayed event that fails again lands behind
// that and is not visited again. Entries that are not Eddy's dead letters
// are skipped with a warning.
func (t *dlqTarget) each(ctx context.Context, match func(processor.DeadLetter) bool, fn func(processor.DeadLetter) (bool, error)) error {
	_, stop, err := t.in.DeadLetterSpan(ctx)
	if err != nil || stop == "" {
		return err
	}
	after := ""
	for {
		page, last, foreign, err := t.in.DeadLetters(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, id := range foreign {
			fmt.Fprintf(t.g.stderr, "eddy: %s: entry %s is not an eddy dead letter; skipped\n", t.stream, id)
		}
		for _, d := range page {
			if processor.IDAfter(d.ID, stop) {
				return nil
			}
			if (d.Pipeline != "" && d.Pipeline != t.pipeline) || !match(d) {
				continue
			}
			more, err := fn(d)
			if err != nil || !more {
				return err
			}
		}
		if last == "" || last == stop || processor.IDAfter(last, stop) {
			return nil
		}
		after = last
	}
}

func reasonFilter(reason string) func(processor.DeadLetter) bool {
	return func(d processor.DeadLetter) bool { return reason == "" || d.Reason == reason }
}

func dlqListCommand(g *globals) *cobra.Command {
	var file, pipeline, reason string
	var count int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list -c FILE --pipeline NAME",
		Short: "Show dead letters, oldest first: reason, attempts, key, source entry and error",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 {
				return usageError{fmt.Errorf("--count %d: must be at least 1", count)}
			}
			ctx := cmd.Context()
			t, err := openDLQ(ctx, g, file, pipeline)
			if err != nil {
				return err
			}
			defer t.conn.close()
			total, _, err := t.in.DeadLetterSpan(ctx)
			if err != nil {
				return err
			}
			var tw *tabwriter.Writer
			if !asJSON {
				fmt.Fprintf(g.stdout, "%s: %d dead letters\n", t.stream, total)
				tw = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tFAILED AT\tREASON\tATTEMPTS\tKEY\tSOURCE\tERROR")
			}
			shown := 0
			err = t.each(ctx, reasonFilter(reason), func(d processor.DeadLetter) (bool, error) {
				shown++
				if asJSON {
					b, err := json.Marshal(dlqJSON(d))
					if err != nil {
						return false, err
					}
					fmt.Fprintln(g.stdout, string(b))
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s %s\t%s\n", d.ID, d.FailedAt.UTC().Format(time.RFC3339),
						d.Reason, d.Attempts, d.Key, d.Stream, d.EntryID, oneLine(d.Error, 80))
				}
				return shown < count, nil
			})
			if tw != nil {
				_ = tw.Flush()
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringVar(&pipeline, "pipeline", "", "pipeline whose dead letters to show")
	fl.StringVar(&reason, "reason", "", "only dead letters with this reason")
	fl.IntVar(&count, "count", 50, "show at most this many")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per dead letter, with the original fields")
	return cmd
}

func dlqJSON(d processor.DeadLetter) map[string]any {
	fields := make(map[string]string, len(d.Fields)/2)
	for i := 0; i+1 < len(d.Fields); i += 2 {
		fields[d.Fields[i]] = d.Fields[i+1]
	}
	return map[string]any{
		"id": d.ID, "reason": d.Reason, "error": d.Error, "attempts": d.Attempts,
		"stream": d.Stream, "entry_id": d.EntryID, "key": d.Key, "pipeline": d.Pipeline,
		"group": d.Group, "consumer": d.Consumer, "failed_at": d.FailedAt.UTC().Format(time.RFC3339Nano),
		"fields": fields,
	}
}

func oneLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func dlqReplayCommand(g *globals) *cobra.Command {
	var file, pipeline, reason string
	var ids []string
	var all, dryRun, force bool
	cmd := &cobra.Command{
		Use:   "replay -c FILE --pipeline NAME (--id ID ... | --all) [--reason R]",
		Short: "Put dead letters back on the partition streams they came from, to be processed again",
		Long: `Appends each chosen dead letter's original fields to the partition stream it
came from and deletes it from the dead-letter stream, in one script that
appends only if it deleted: a dead letter replayed by someone else meanwhile
(another eddy dlq replay, the console) is counted as gone, not appended twice.
The replayed entry is new: it is processed again after the events already in
the stream. Fix the cause first (the pipeline, the data it depends on), or it
comes back; dead letters added while the replay runs are left for the next.

Every consumer group on the input stream sees a replayed entry. Groups with
dedupe skip events they processed; replay refuses (unless --force) when the
config has another pipeline on the same stream without dedupe.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all == (len(ids) > 0) {
				return usageError{errors.New("give --id ID (repeatable) or --all, not both")}
			}
			ctx := cmd.Context()
			t, err := openReplay(ctx, g, file, pipeline)
			if err != nil {
				return err
			}
			defer t.conn.close()
			if len(t.others) > 0 && !force {
				return usageError{fmt.Errorf("pipelines %s also read this input stream and have no dedupe: a replay would reach them again; give --force if they should see these events twice",
					strings.Join(t.others, ", "))}
			}
			want := map[string]bool{}
			for _, id := range ids {
				want[id] = true
			}
			match := func(d processor.DeadLetter) bool {
				return reasonFilter(reason)(d) && (all || want[d.ID])
			}
			n, gone := 0, 0
			err = t.each(ctx, match, func(d processor.DeadLetter) (bool, error) {
				delete(want, d.ID)
				if dryRun {
					fmt.Fprintf(g.stdout, "would replay %s (%s) to %s\n", d.ID, d.Reason, d.Stream)
				} else if _, err := t.in.Replay(ctx, d); errors.Is(err, processor.ErrDeadLetterGone) {
					gone++
					return true, nil
				} else if err != nil {
					return false, err
				}
				n++
				return true, nil
			})
			if gone > 0 {
				fmt.Fprintf(g.stdout, "%d dead letters were gone when their turn came (replayed or deleted by someone else meanwhile)\n", gone)
			}
			verb := "replayed"
			if dryRun {
				verb = "would replay"
			}
			fmt.Fprintf(g.stdout, "%s %d dead letters from %s\n", verb, n, t.stream)
			if err != nil {
				return err
			}
			if len(want) > 0 {
				var missing []string
				for id := range want {
					missing = append(missing, id)
				}
				return fmt.Errorf("not found in %s: %s", t.stream, strings.Join(missing, ", "))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringVar(&pipeline, "pipeline", "", "pipeline whose dead letters to replay")
	fl.StringSliceVar(&ids, "id", nil, "dead-letter id to replay (repeatable)")
	fl.BoolVar(&all, "all", false, "replay every dead letter (that matches --reason)")
	fl.StringVar(&reason, "reason", "", "only dead letters with this reason")
	fl.BoolVar(&dryRun, "dry-run", false, "list what would be replayed, change nothing")
	fl.BoolVar(&force, "force", false, "replay even though other pipelines without dedupe read the same stream")
	return cmd
}
