package pipelines

import (
	"context"
	"fmt"
	"slices"

	"github.com/eddy-streams/eddy/processor"
)

// Options returns the engine options of the pipeline, with Decoder and
// Handler set. Consumer, Logger, Observer and Now are left for the caller
// (cmd/eddy); fields the file leaves out are zero, which processor.Options
// documents as its defaults.
func (p *Pipeline) Options() processor.Options {
	o := processor.Options{
		Pipeline:            p.Name,
		Stream:              p.Input.Stream,
		Partitions:          p.Input.Partitions,
		Group:               p.Input.Group,
		Start:               p.Input.Start,
		BatchSize:           p.BatchSize,
		Block:               p.Block,
		Lanes:               p.Lanes,
		MaxInflight:         p.MaxInflight,
		MaxEventBytes:       p.MaxEventBytes,
		MaxAttempts:         p.Retry.MaxAttempts,
		Backoff:             p.Retry.Backoff,
		MaxBackoff:          p.Retry.MaxBackoff,
		ReclaimAfter:        p.Retry.ReclaimAfter,
		DeadLetterStream:    p.DeadLetter.Stream,
		DeadLetterMaxLen:    p.DeadLetter.MaxLen,
		InputRetention:      p.Input.Retention.Engine(),
		DeadLetterRetention: p.DeadLetter.Retention.Engine(),
		Retain:              p.retained(),
		Versioned:           p.Rebuildable() == nil,
		ShutdownTimeout:     p.ShutdownTimeout,
		Ordering:            p.Ordering,
		Heartbeat:           p.Group.Heartbeat,
		SessionTimeout:      p.Group.SessionTimeout,
		Decoder:             p.Decoder(),
		Handler:             p.Handler(),
		StateNames:          p.StateNames(),
		StepTimeout:         p.StepTimeout,
		StateCacheSize:      p.StateCacheSize,
		WrongPartition:      p.WrongPartition,
		TimerTick:           p.Timers.Tick,
		AllowedLateness:     p.Timers.AllowedLateness,
		IdleWatermark:       p.Timers.IdleWatermark,
	}
	if p.Dedupe != nil {
		o.DedupeWindow = p.Dedupe.Window
		o.DedupeBucket = p.Dedupe.Bucket
		// Steps have no side effects but their effects, which the commit
		// writes only for events it has not seen. A registered step that
		// acts outside its effects needs DedupeAtCommit set back to false.
		o.DedupeAtCommit = true
	}
	return o
}

// Decoder returns the pipeline's decoder. It sets Message.Data to the
// payload: a map[string]any of the entry's fields, or, with input.payload,
// the JSON as it arrived, checked and decoded on first use by the Event
// that NewEvent makes of the message (use NewEvent(m).Payload() to get it
// as a map in a Handler of your own). It sets Message.Key to the value at
// the key path and
// Message.DedupeID to the value at the dedupe id path, formatted as strings
// (numbers without exponent). Its permanent errors have the reasons
// processor.ReasonNotJSON (payload field missing, not JSON, not an object),
// processor.ReasonMissingKey (key missing, null, empty, object or array) and
// ReasonMissingID (likewise for the dedupe id).
func (p *Pipeline) Decoder() processor.Decoder {
	if p.dec == nil { // not built by Load or Parse; let processor.Options report it
		return nil
	}
	if p.eventTime != nil {
		maxFuture := p.Input.MaxFuture
		switch {
		case maxFuture == 0:
			maxFuture = DefaultMaxFuture
		case maxFuture < 0:
			maxFuture = 0 // no bound
		}
		return eventTimeDecoder{inner: p.dec, path: *p.eventTime, field: p.Input.EventTime, maxFuture: maxFuture}
	}
	return p.dec
}

// Handler returns the pipeline's steps as one processor.Handler: each
// event goes through the steps in order until one drops it, fails, or the
// last one passes it on. A step's error is returned wrapped with the step's
// position and type; permanent errors stay permanent.
func (p *Pipeline) Handler() processor.Handler {
	h := &handler{steps: p.steps, stateNames: p.StateNames(), readModel: processor.VersionPrefix(p.version)}
	for _, s := range p.steps {
		h.decode = h.decode || readsPayloadStep(s)
	}
	return h
}

// payloadReader is implemented by built-in steps that can tell whether
// they read the payload; the handler decodes it up front (dead-lettering
// a payload that is not JSON as not_json) only for a pipeline with a step
// that does, or that cannot tell.
type payloadReader interface {
	readsPayload() bool
}

func readsPayloadStep(s boundStep) bool {
	if s.typ == "output" {
		return false
	}
	if r, ok := s.step.(payloadReader); ok {
		return r.readsPayload()
	}
	return true
}

// boundStep is a built step and where it came from.
type boundStep struct {
	index int
	typ   string
	step  Step
}

// StateNames lists the keyed state names of the pipeline's state steps, in
// order, each once.
func (p *Pipeline) StateNames() []string {
	var names []string
	for _, s := range p.steps {
		if st, ok := s.step.(interface{ stateName() string }); ok && st.stateName() != "" && !slices.Contains(names, st.stateName()) {
			names = append(names, st.stateName())
		}
	}
	return names
}

// retained lists the output streams the steps put under retention, each
// once (validation makes the policies of one stream agree).
func (p *Pipeline) retained() []processor.Retained {
	var out []processor.Retained
	for _, s := range p.steps {
		st, ok := s.step.(interface{ retained() []processor.Retained })
		if !ok {
			continue
		}
		for _, r := range st.retained() {
			if !r.Retention.IsZero() && !slices.ContainsFunc(out, func(o processor.Retained) bool { return o.Stream == r.Stream }) {
				out = append(out, r)
			}
		}
	}
	return out
}

type handler struct {
	stateNames []string
	steps      []boundStep
	// decode is set when a step reads the payload: every step but output,
	// which writes a payload no step changed as it arrived.
	decode bool
	// readModel prefixes the read-model hashes of state steps: the
	// pipeline's version's (processor.VersionPrefix).
	readModel string
}

func (h *handler) Handle(ctx context.Context, m *processor.Message) error {
	if m.Timer != nil {
		return h.fire(ctx, m)
	}
	ev := NewEvent(m)
	ev.stateNames = h.stateNames
	ev.readModel = h.readModel
	if h.decode {
		if err := ev.decode(); err != nil {
			return processor.Permanentf(processor.ReasonNotJSON, "payload: %w", err)
		}
	}
	for _, s := range h.steps {
		keep, err := s.step.Process(ctx, ev)
		if err != nil {
			return fmt.Errorf("steps[%d] %s: %w", s.index, s.typ, err)
		}
		if !keep {
			return nil
		}
	}
	return nil
}

var _ processor.Handler = (*handler)(nil)

// TimerStep is a Step that also handles the firings of timers it set
// (processor.Message.SetTimer). A firing goes to every TimerStep of the
// pipeline, in order, with an Event whose payload is empty.
type TimerStep interface {
	Step
	Fire(ctx context.Context, ev *Event) error
}

func (h *handler) fire(ctx context.Context, m *processor.Message) error {
	ev := NewEvent(m)
	ev.stateNames = h.stateNames
	ev.readModel = h.readModel
	for _, s := range h.steps {
		if ts, ok := s.step.(TimerStep); ok {
			if err := ts.Fire(ctx, ev); err != nil {
				return fmt.Errorf("steps[%d] %s: timer %q: %w", s.index, s.typ, m.Timer.Name, err)
			}
		}
	}
	return nil
}
