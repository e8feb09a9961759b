package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/eddy-streams/eddy/processor"
)

// Side is one of the two things measured.
type Side string

const (
	// SideBaseline is the hand-written consumer, `eddy bench-baseline`.
	SideBaseline Side = "baseline"
	// SideEddy is the engine, `eddy run` on an ordered pipeline with dedupe
	// and one output.
	SideEddy Side = "eddy"
	// SideEddyIncr is SideEddy with keyed state: a state step before the
	// output that adds one to the key's counter (state: {name: counts,
	// incr: {n: 1}}).
	SideEddyIncr Side = "eddy_state_incr"
	// SideEddyRMW is SideEddy with keyed state read, changed and written
	// back by an expression (fields: {n: '(state.counts.n ?? 0) + 1'}).
	SideEddyRMW Side = "eddy_state_rmw"
	// SideEddyWindow is SideEddy with input.event_time (the events' "at")
	// and, before the output, a window step: tumbling one-minute windows
	// per key, the events and the distinct pages of each, a result when a
	// window closes (see windowStep).
	SideEddyWindow Side = "eddy_window"
)

// stateName and stateField are the keyed state the stateful sides count in.
const (
	stateName  = "counts"
	stateField = "n"
)

// stateStep is the YAML of the state step of the stateful sides, "" for
// the others.
func (s Side) stateStep() string {
	switch s {
	case SideEddyIncr:
		return "      - state: {name: " + stateName + ", incr: {" + stateField + ": 1}}\n"
	case SideEddyRMW:
		return "      - state: {name: " + stateName + ", fields: {" + stateField + ": '(state." + stateName + "." + stateField + " ?? 0) + 1'}}\n"
	}
	return ""
}

// steps is the YAML of the steps before the output: the state step of a
// stateful side, the window step of the windowed one, "" for the others.
func (s Side) steps(n names) string {
	if s == SideEddyWindow {
		return windowStep(n)
	}
	return s.stateStep()
}

// eventTime is the input's event_time of the side's pipeline, "" for none.
func (s Side) eventTime() string {
	if s == SideEddyWindow {
		return eventTimeField
	}
	return ""
}

// isEddy reports whether s is Eddy's engine, with or without state.
func (s Side) isEddy() bool { return s != SideBaseline }

// other is the side that is not s.
func (s Side) other() Side {
	if s == SideEddy {
		return SideBaseline
	}
	return SideEddy
}

// outputMaxLen is the MAXLEN ~ of both sides' output: far more than any run
// writes, so nothing is trimmed, and both pay the same check per XADD.
const outputMaxLen = 100_000_000

// sideRun is how to run one side on the keys of one scenario run.
type sideRun struct {
	side   Side
	names  names
	inputs []string // the input streams: Eddy's partitions, or the one stream
	group  string
	prod   *processor.Producer // routes events to inputs
	args   []string            // the eddy binary's arguments
	// pprof is the HTTP address where the side serves /debug/pprof/, ""
	// when it is not profiled (Options.ProfileDir).
	pprof string
}

// prepare returns how to run side on n, writing Eddy's config file to dir.
// Eddy reads partitions = Options.Consumers partition streams in one
// process; the baseline reads one stream with that many consumers. With
// one, both read the stream input() itself.
func (b *bencher) prepare(side Side, n names) (*sideRun, error) {
	o := b.o
	r := &sideRun{side: side, names: n}
	// The Redis URL goes to the children in their environment
	// (EDDY_REDIS_URL, set by startChild), not on their command line,
	// where any user of the machine could read a password in it.
	global := []string{"--log-level", "warn", "--log-format", "console"}
	switch side {
	case SideEddy, SideEddyIncr, SideEddyRMW, SideEddyWindow:
		r.group = eddyGroup
		for p := range o.Consumers {
			r.inputs = append(r.inputs, processor.PartitionStream(n.input(), p, o.Consumers))
		}
		r.prod = processor.NewProducer(b.rdb, n.input(), o.Consumers, 0)
		cfg := filepath.Join(b.dir, "eddy-"+strconv.Itoa(b.runs)+".yaml")
		if err := os.WriteFile(cfg, []byte(eddyConfig(n, o, side)), 0o600); err != nil {
			return nil, fmt.Errorf("write the eddy config: %w", err)
		}
		r.args = slices.Concat(global, []string{"run", "-c", cfg, "--consumer", "bench-1", "--http", "off"})
		if side == SideEddyWindow && o.ProfileDir != "" {
			addr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			r.pprof = addr
			r.args = slices.Concat(global, []string{"run", "-c", cfg, "--consumer", "bench-1", "--http", addr, "--pprof"})
		}
	case SideBaseline:
		r.group = baselineGroup
		r.inputs = []string{n.input()}
		r.prod = processor.NewProducer(b.rdb, n.input(), 1, 0)
		r.args = slices.Concat(global, []string{"bench-baseline",
			"--stream", n.input(), "--group", baselineGroup, "--output", n.output(), "--seen", n.seen(),
			"--consumers", strconv.Itoa(o.Consumers), "--batch", strconv.Itoa(o.Batch),
			"--max-len", strconv.Itoa(outputMaxLen)})
	default:
		return nil, fmt.Errorf("unknown side %q", side)
	}
	return r, nil
}

// eddyConfig is side's pipeline, like configs/bench.yaml: ordered by
// user_id (ordering key, the default), dedupe on event_id, one output, and
// before the output side's steps (a state or a window step), with the
// input's event time the side needs. A mistake in it makes `eddy run` fail
// at once, with the problems on its stderr, which the run's error quotes.
func eddyConfig(n names, o Options, side Side) string {
	input := ""
	if f := side.eventTime(); f != "" {
		input = "      event_time: " + f + "\n"
	}
	return fmt.Sprintf(`# written by eddy bench
http:
  addr: "off"
pipelines:
  - name: %s
    input:
      stream: %q
      partitions: %d
      payload: %s
%s    key: user_id
    dedupe:
      id: event_id
      window: %v
    batch_size: %d
    lanes: %d
    steps:
%s      - output: {stream: %q, max_len: %d}
`, eddyGroup, n.input(), o.Consumers, payloadField, input, dedupeWindow, o.Batch, o.Lanes, side.steps(n), n.output(), outputMaxLen)
}

// probes returns one event per input stream, so that a latency run can
// tell that every partition is being read before it starts the clock.
// (Every partition count up to the engine's 1024 is covered by the first
// few thousand users.)
func (r *sideRun) probes(ev *events, now int64) []processor.Record {
	parts := len(r.inputs)
	recs := make([]processor.Record, 0, parts)
	covered := make([]bool, parts)
	for user := 0; len(recs) < parts; user++ {
		p := processor.PartitionOf("u"+strconv.Itoa(user), parts)
		if covered[p] {
			continue
		}
		covered[p] = true
		recs = append(recs, ev.of(user, now))
	}
	return recs
}
