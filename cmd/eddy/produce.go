package main

import (
	"bufio"
	"bytes"
	"context"
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
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 {
				return usageError{fmt.Errorf("--batch %d: must be at least 1", batch)}
			}
			f, ps, log, err := setupOne(g, file, pipeline)
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
			conn, err := connectAs(cmd.Context(), g, f, ps, log, "produce", processor.RoleProducer)
			if err != nil {
				return err
			}
			defer conn.close()
			res, err := produce(cmd.Context(), ps[0], processor.NewProducer(conn.client, ps[0].Input.Stream, ps[0].Input.Partitions, 0), in, batch, log)
			note := ""
			if res.interrupted {
				note = " (interrupted: stopped reading, sent what was read)"
			}
			fmt.Fprintf(g.stdout, "produced %d events to %s (%d malformed, sent on for dead-lettering) in %v%s\n",
				res.sent, ps[0].Input.Stream, res.malformed, res.took.Round(time.Millisecond), note)
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
	interrupted     bool
	took            time.Duration
}

// flushEvery bounds how long a read event waits for its batch to fill.
const flushEvery = 100 * time.Millisecond

// line is one line read from the input, or the error that ended it.
type line struct {
	n    int
	text []byte
	err  error
}

// produce reads NDJSON lines from in and sends them in batches: when a
// batch is full or flushEvery has passed. When ctx is done (Ctrl-C) it
// stops reading and still sends what it has read.
func produce(ctx context.Context, p *pipelines.Pipeline, prod *processor.Producer, in io.Reader, batch int, log *zap.Logger) (produceResult, error) {
	start := time.Now()
	var res produceResult
	lines := make(chan line, batch)
	stop := make(chan struct{})
	defer close(stop)
	// The reader may block in Read on a terminal or pipe until the process
	// exits; it is the one goroutine here nobody waits for.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64*1024), 64<<20)
		n := 0
		for sc.Scan() {
			n++
			select {
			case lines <- line{n: n, text: bytes.Clone(sc.Bytes())}:
			case <-stop:
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case lines <- line{n: n + 1, err: err}:
			case <-stop:
			}
		}
	}()

	send := context.WithoutCancel(ctx) // what was read is sent, even when interrupted
	recs := make([]processor.Record, 0, batch)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		sctx, cancel := context.WithTimeout(send, 30*time.Second)
		defer cancel()
		if _, err := prod.Send(sctx, recs); err != nil {
			return err
		}
		res.sent += len(recs)
		recs = recs[:0]
		return nil
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			res.interrupted = true
			break loop
		case <-tick.C:
			if err = flush(); err != nil {
				break loop
			}
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			if l.err != nil {
				err = fmt.Errorf("read line %d: %w", l.n, l.err)
				break loop
			}
			b := bytes.TrimSpace(l.text)
			if len(b) == 0 {
				continue
			}
			rec, encErr := encode(p, b)
			if encErr != nil {
				res.malformed++
				log.Warn("malformed_event_forwarded", zap.Int("line", l.n), zap.Error(encErr))
			}
			recs = append(recs, rec)
			if len(recs) == batch {
				if err = flush(); err != nil {
					err = fmt.Errorf("line %d: %w", l.n, err)
					break loop
				}
			}
		}
	}
	if ferr := flush(); err == nil {
		err = ferr
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
