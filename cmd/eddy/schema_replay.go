package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// replayPage is how many entries one XREVRANGE asks a partition for.
const replayPage = 500

// replayTarget is the pipeline whose input --replay reads, and the
// connection it reads it through.
type replayTarget struct {
	p    *pipelines.Pipeline
	conn *redisConn
}

// openReplayTarget picks the pipeline and connects to Redis as a monitor.
func openReplayTarget(ctx context.Context, g *globals, f *pipelines.File, name, typ string) (*replayTarget, error) {
	p, err := replayPipeline(f, name, typ)
	if err != nil {
		return nil, err
	}
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	conn, err := connectAs(ctx, g, f, []*pipelines.Pipeline{p}, log, "eddy schema check --replay", replayRole)
	if err != nil {
		return nil, err
	}
	return &replayTarget{p: p, conn: conn}, nil
}

// replay validates the payloads of the last n entries of the pipeline's
// input stream (all partitions merged by entry id, newest first) against
// s, prints the counts and the first failures with their entry ids, and
// returns how many failed. An entry without the payload field, or with
// one that is not JSON, fails.
func (t *replayTarget) replay(ctx context.Context, g *globals, s *schema.Schema, n int) (int, error) {
	p, conn := t.p, t.conn
	parts := p.Input.Partitions
	cursors := make([]*revCursor, parts)
	for i := range cursors {
		cursors[i] = &revCursor{stream: processor.PartitionStream(p.Input.Stream, i, parts), end: "+", count: min(n, replayPage)}
	}
	checked, failed := 0, 0
	var shown []string
	for checked < n {
		best := -1
		for i, c := range cursors {
			if err := c.fill(ctx, conn.client); err != nil {
				return 0, replayError(c.stream, err)
			}
			if len(c.page) > 0 && (best < 0 || laterID(c.page[0].ID, cursors[best].page[0].ID)) {
				best = i
			}
		}
		if best < 0 {
			break // every partition read to its start
		}
		c := cursors[best]
		m := c.page[0]
		c.page = c.page[1:]
		checked++
		if err := checkEntry(s, p.Input.Payload, m); err != nil {
			failed++
			if len(shown) < replayShown {
				shown = append(shown, fmt.Sprintf("  %s %s: %v", c.stream, m.ID, err))
			}
		}
	}
	fmt.Fprintf(g.stdout, "replay: pipeline %s, stream %s (%d partitions): %d events checked", p.Name, p.Input.Stream, parts, checked)
	if checked > 0 {
		fmt.Fprintf(g.stdout, ", %d pass, %d fail", checked-failed, failed)
	}
	fmt.Fprintln(g.stdout)
	for _, l := range shown {
		fmt.Fprintln(g.stdout, l)
	}
	if failed > len(shown) {
		fmt.Fprintf(g.stdout, "  … and %d more\n", failed-len(shown))
	}
	return failed, nil
}

// checkEntry validates the payload field of one entry.
func checkEntry(s *schema.Schema, field string, m redis.XMessage) error {
	raw, ok := m.Values[field]
	if !ok {
		return fmt.Errorf("no payload field %q", field)
	}
	str, ok := raw.(string)
	if !ok {
		return fmt.Errorf("payload field %q is a %T", field, raw)
	}
	return s.ValidateJSON([]byte(str))
}

func replayError(stream string, err error) error {
	if redis.HasErrorPrefix(err, "NOPERM") {
		return fmt.Errorf("--replay: XREVRANGE %s: %w (the user needs XREVRANGE on the pipeline's partition streams, as the monitor rules of docs/redis-acl.md give)", stream, err)
	}
	return fmt.Errorf("--replay: XREVRANGE %s: %w", stream, err)
}

// revCursor reads one stream from its newest entry backwards, a page at a
// time.
type revCursor struct {
	stream string
	end    string // "+" or "(" + the oldest id read so far
	count  int
	page   []redis.XMessage
	done   bool
}

// fill reads the next page when the current one is used up.
func (c *revCursor) fill(ctx context.Context, rdb redis.UniversalClient) error {
	if len(c.page) > 0 || c.done {
		return nil
	}
	msgs, err := rdb.XRevRangeN(ctx, c.stream, c.end, "-", int64(c.count)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if len(msgs) == 0 {
		c.done = true
		return nil
	}
	c.page, c.end = msgs, "("+msgs[len(msgs)-1].ID
	return nil
}

// laterID reports whether stream entry id a is after b ("ms-seq").
func laterID(a, b string) bool {
	ams, aseq := splitID(a)
	bms, bseq := splitID(b)
	if ams != bms {
		return ams > bms
	}
	return aseq > bseq
}

func splitID(id string) (ms, seq uint64) {
	l, r, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(l, 10, 64)
	seq, _ = strconv.ParseUint(r, 10, 64)
	return ms, seq
}
