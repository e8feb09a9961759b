package processor

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Retention bounds a stream by age and length. Trimming never removes an
// entry that some consumer group of the stream has not read and
// acknowledged: a cap that would is held back, and reported, until every
// group has caught up. A stream with no consumer group is trimmed to the
// policy as it stands.
type Retention struct {
	// MaxAge trims entries whose id is older than this; 0: no age cap.
	MaxAge time.Duration
	// MaxLen trims the oldest entries past this many; 0: no length cap.
	MaxLen int64
	// AbandonedAfter calls a group that holds trimming back abandoned when
	// none of its consumers has read or acked for this long (with no
	// consumer, a clean stop deletes it: when the last entry it read is
	// that old, or it never read one). Default DefaultAbandonedAfter.
	AbandonedAfter time.Duration
}

// IsZero reports whether r caps nothing.
func (r Retention) IsZero() bool { return r.MaxAge <= 0 && r.MaxLen <= 0 }

// Retained is a stream other than the input partitions that a processor
// trims to a retention policy: an output its steps write.
type Retained struct {
	Stream    string
	Retention Retention
}

// TrimReport is what one trim of a stream did, or, from RetentionStatus,
// what it would do now.
type TrimReport struct {
	Pipeline string
	Stream   string
	// Retention is the policy trimmed to.
	Retention Retention
	// Removed counts the entries trimmed (0 for a status).
	Removed int64
	// Length is the stream's length after.
	Length int64
	// HeldBy names the consumer group whose unacknowledged entries held the
	// cut back ("" when the policy was applied in full); HeldFrom is where
	// the cut stopped: that group's oldest pending entry, or, with none
	// pending, the id just after the last entry it read.
	HeldBy, HeldFrom string
	// Over counts entries past the policy kept because HeldBy has not
	// acknowledged them (for an age cap, counted up to trimChunk).
	Over int64
	// Abandoned is set when HeldBy has been idle for the policy's
	// AbandonedAfter; ConsumerIdle is how long: its consumers' least idle
	// time, or with none the age of the last entry it read (-1 when it
	// never read one).
	Abandoned    bool
	ConsumerIdle time.Duration
	// Oldest is the time of the oldest entry left (zero when empty).
	Oldest time.Time
}

// RetentionObserver, when the Observer also implements it, is told of each
// trim of a stream under retention. Calls must not block.
type RetentionObserver interface {
	Trimmed(r TrimReport)
}

// RetentionStatus reports what trimming stream to r would do now, without
// trimming: the console shows it. A zero now is Redis's clock (TIME), as
// the workers' trims use: entry ids are made by it, so a worker's clock
// that is off never trims by max_age early or late.
func RetentionStatus(ctx context.Context, rdb redis.UniversalClient, stream string, r Retention, now time.Time) (TrimReport, error) {
	return trim(ctx, rdb, stream, r, now, true)
}

// retention trims the processor's streams under a retention policy every
// RetentionEvery until ctx ends. Every worker of the pipeline does so: the
// trim of a stream is one script, so that two at once cut no deeper than
// one.
func (p *Processor) retention(ctx context.Context) {
	streams := retained(p.o)
	if len(streams) == 0 {
		return
	}
	held := map[string]string{} // stream -> group last logged as holding it back
	for p.wait(ctx, p.o.RetentionEvery) {
		for _, s := range streams {
			p.trimStream(ctx, s, held)
		}
	}
}

// retained lists the streams a pipeline of options o trims: its input
// partitions, its dead-letter stream and the outputs in Options.Retain.
func retained(o Options) []Retained {
	var out []Retained
	if !o.InputRetention.IsZero() {
		for n := range o.Partitions {
			out = append(out, Retained{Stream: PartitionStream(o.Stream, n, o.Partitions), Retention: o.InputRetention})
		}
	}
	if !o.DeadLetterRetention.IsZero() {
		out = append(out, Retained{Stream: o.DeadLetterStream, Retention: o.DeadLetterRetention})
	}
	for _, r := range o.Retain {
		if !r.Retention.IsZero() {
			out = append(out, r)
		}
	}
	return out
}

// Retention reports, for each stream of the pipeline under retention, what
// a trim would do now (nothing is trimmed): its length, its oldest entry,
// and the consumer group holding its cap back, if one does. A zero now is
// Redis's clock (see RetentionStatus).
func (in *Inspector) Retention(ctx context.Context, now time.Time) ([]TrimReport, error) {
	var out []TrimReport
	for _, r := range retained(in.o) {
		rep, err := RetentionStatus(ctx, in.rdb, r.Stream, r.Retention, now)
		if err != nil {
			return nil, err
		}
		rep.Pipeline = in.o.Pipeline
		out = append(out, rep)
	}
	return out, nil
}

// trimStream trims one stream, as many times as it takes to reach the
// policy (a length cap cuts at most trimChunk entries a call), and reports.
func (p *Processor) trimStream(ctx context.Context, s Retained, held map[string]string) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	var total TrimReport
	for range maxTrimCalls {
		rep, err := trim(ctx, p.rdb, s.Stream, s.Retention, redisNow(p.o.Clock), false)
		if err != nil {
			p.log.Warn("retention_failed", zap.String("stream", s.Stream), zap.Error(err))
			if total.Removed == 0 {
				return
			}
			break // report what the round's earlier calls removed
		}
		removed := total.Removed + rep.Removed
		total = rep
		total.Removed = removed
		if rep.Removed < trimChunk || rep.HeldBy != "" {
			break
		}
	}
	total.Pipeline = p.o.Pipeline
	if ob, ok := p.o.Observer.(RetentionObserver); ok {
		ob.Trimmed(total)
	}
	switch {
	case total.HeldBy != "" && held[s.Stream] != total.HeldBy:
		p.log.Warn("retention_held_back", zap.String("stream", s.Stream), zap.String("held_by", total.HeldBy),
			zap.String("oldest_unacked", total.HeldFrom), zap.Int64("over", total.Over),
			zap.Bool("abandoned", total.Abandoned), zap.Duration("consumer_idle", total.ConsumerIdle))
		held[s.Stream] = total.HeldBy
	case total.HeldBy == "" && held[s.Stream] != "":
		p.log.Info("retention_released", zap.String("stream", s.Stream), zap.String("held_by", held[s.Stream]))
		delete(held, s.Stream)
	}
	if total.Removed > 0 {
		p.log.Debug("retention_trimmed", zap.String("stream", s.Stream), zap.Int64("removed", total.Removed), zap.Int64("length", total.Length))
	}
}
