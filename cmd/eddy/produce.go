package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

func produceCommand(g *globals) *cobra.Command {
	var file, pipeline, input string
	var batch int
	cmd := &cobra.Command{
		Use:   "produce -c FILE --pipeline NAME [--file EVENTS.ndjson]",
		Short: "Append NDJSON events from stdin or --file to a pipeline's input, routed to its partitions",
		Long: `Reads one JSON event per line and appends it to the pipeline's input
stream, to the partition its key hashes to, in pipelined batches. A line that
is not a JSON object or lacks the key is still appended, as it is, so that the
pipeline dead-letters it with the reason: nothing is dropped on the way in.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pipeline == "" {
				return usageError{errors.New("--pipeline NAME is required")}
			}
			if batch < 1 {
				return usageError{fmt.Errorf("--batch %d: must be at least 1", batch)}
			}
			f, err := loadConfig(g, file)
			if err != nil {
				return err
			}
			ps, err := selectPipelines(f, []string{pipeline})
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			in := g.stdin
			if input != "" && input != "-" {
				fh, err := os.Open(input)
				if err != nil {
					return err
				}
				defer fh.Close() //nolint:errcheck // read-only file
				in = fh
			}
			conn, err := openRedis(cmd.Context(), g, f, 0, log)
			if err != nil {
				return err
			}
			defer conn.close()
			if conn.embedded {
				return usageError{errors.New("produce needs a Redis: give --redis URL or a redis section in the config (the embedded one lives only inside `eddy run`)")}
			}
			if err := conn.ping(cmd.Context()); err != nil {
				return err
			}
			res, err := produce(cmd.Context(), ps[0], processor.NewProducer(conn.client, ps[0].Input.Stream, ps[0].Input.Partitions, 0), in, batch, log)
			fmt.Fprintf(g.stdout, "produced %d events to %s (%d malformed, sent on for dead-lettering) in %v\n",
				res.sent, ps[0].Input.Stream, res.malformed, res.took.Round(time.Millisecond))
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringVar(&pipeline, "pipeline", "", "pipeline whose input receives the events")
	fl.StringVar(&input, "file", "", "NDJSON file to read instead of stdin")
	fl.IntVar(&batch, "batch", 500, "events per pipelined round trip")
	return cmd
}

type produceResult struct {
	sent, malformed int
	took            time.Duration
}

// produce reads NDJSON lines from in and sends them in batches.
func produce(ctx context.Context, p *pipelines.Pipeline, prod *processor.Producer, in io.Reader, batch int, log *zap.Logger) (produceResult, error) {
	start := time.Now()
	var res produceResult
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	recs := make([]processor.Record, 0, batch)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		if _, err := prod.Send(ctx, recs); err != nil {
			return err
		}
		res.sent += len(recs)
		recs = recs[:0]
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rec, err := encode(p, b)
		if err != nil {
			res.malformed++
			log.Warn("malformed_event_forwarded", zap.Int("line", line), zap.Error(err))
		}
		recs = append(recs, rec)
		if len(recs) == batch {
			if err := flush(); err != nil {
				res.took = time.Since(start)
				return res, fmt.Errorf("line %d: %w", line, err)
			}
		}
	}
	err := flush()
	if err == nil {
		err = sc.Err()
		if err != nil {
			err = fmt.Errorf("read line %d: %w", line+1, err)
		}
	}
	res.took = time.Since(start)
	return res, err
}

// encode turns an event into a record for p. A malformed event becomes a
// record holding the raw bytes (in the payload field, or "raw"), for the
// pipeline to dead-letter, and the error says what is wrong.
func encode(p *pipelines.Pipeline, event []byte) (processor.Record, error) {
	key, fields, err := p.EncodeEvent(event)
	if err == nil {
		return processor.Record{Key: key, Fields: fields}, nil
	}
	field := p.Input.Payload
	if field == "" {
		field = "raw"
	}
	return processor.Record{Fields: []string{field, string(event)}}, err
}
