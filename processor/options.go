package processor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/dedupe"
)

// Orderings.
const (
	// OrderingKey: each partition has one owner at a time, held as a lease
	// with a fencing token; entries of one key are handled in order however
	// many workers run. The default.
	OrderingKey = "key"
	// OrderingNone: every worker reads every partition as a competing
	// consumer of the group; orphaned entries are reclaimed with XAUTOCLAIM
	// after ReclaimAfter. More parallelism, no order across workers.
	OrderingNone = "none"
)

// Start positions for a newly created consumer group.
const (
	StartOldest = "oldest" // the group starts at the first entry of the stream ("0")
	StartNewest = "newest" // the group starts after the last entry ("$")
)

// Options configure one pipeline's engine. A zero value means the default
// given in each field's comment.
type Options struct {
	// Pipeline names the pipeline in logs, metrics and dead letters. Required.
	Pipeline string
	// Stream is the input stream. With Partitions > 1, partition p is the
	// stream PartitionStream(Stream, p, Partitions). Required.
	Stream string
	// Partitions is how many partition streams Stream is split into. Default 1.
	Partitions int
	// Group is the consumer group. Default: Pipeline.
	Group string
	// Consumer is this worker's consumer name. Default: "<hostname>-<pid>".
	Consumer string
	// Start is where a new group starts: StartOldest (default) or StartNewest.
	Start string
	// Ordering is OrderingKey (default) or OrderingNone.
	Ordering string

	// BatchSize is the XREADGROUP COUNT and the largest commit. Default 256.
	BatchSize int
	// Block is the XREADGROUP BLOCK time. Default 1s.
	Block time.Duration
	// Lanes is how many keys are handled in parallel. Default 16.
	Lanes int
	// MaxInflight caps entries read but not yet committed, per partition.
	// Default 4 × BatchSize.
	MaxInflight int
	// MaxEventBytes dead-letters entries whose fields add up to more bytes
	// (reason "too_large"). Default 1 MiB; -1 disables the check.
	MaxEventBytes int

	// MaxAttempts is how many times an entry is tried, counting redeliveries,
	// before it is dead-lettered. Default 5.
	MaxAttempts int
	// Backoff is the wait before the second attempt; it doubles with each
	// attempt, with ±50% jitter. Default 100ms.
	Backoff time.Duration
	// MaxBackoff caps the wait between attempts. Default 10s.
	MaxBackoff time.Duration
	// ReclaimAfter (ordering none) is how long an entry must sit idle in
	// another consumer's pending list before this worker takes it over.
	// Default 30s. With ordering key an owner takes every pending entry of
	// its partition over when it gets the lease, and this is not used.
	ReclaimAfter time.Duration
	// ReclaimInterval (ordering none) is how often the worker looks for such
	// entries. Default ReclaimAfter / 2, at most 5s.
	ReclaimInterval time.Duration
	// Heartbeat is how often the worker announces itself and renews its
	// partition leases. Default 2s.
	Heartbeat time.Duration
	// SessionTimeout is how long a worker that stops renewing keeps its
	// membership and its leases: after it, its partitions move to the
	// others. Consumers with no heartbeat for SessionTimeout and nothing
	// pending are deleted from the group. Default 10s; at least 2×Heartbeat.
	SessionTimeout time.Duration

	// DeadLetterStream receives dead letters. Default "<Stream>:dlq".
	DeadLetterStream string
	// DeadLetterMaxLen caps the dead-letter stream (MAXLEN ~); 0 means no cap.
	DeadLetterMaxLen int64

	// InputRetention trims each partition stream, and DeadLetterRetention
	// the dead-letter stream, never past an entry a consumer group has not
	// acknowledged (Retention). Zero: not trimmed.
	InputRetention      Retention
	DeadLetterRetention Retention
	// Retain lists more streams to trim so: the outputs of the steps.
	Retain []Retained
	// Versioned is set for a pipeline whose read model eddy rebuild may
	// version (processor.VersionKey): its workers read the version, and
	// CheckAccess asks for it. The engine itself does not read it.
	Versioned bool
	// RetentionEvery is how often the streams under retention are trimmed.
	// Default DefaultRetentionEvery.
	RetentionEvery time.Duration

	// DedupeWindow is how long a dedupe id is remembered; 0 disables dedupe.
	DedupeWindow time.Duration
	// DedupeBucket is the width of one dedupe set. Default DedupeWindow /
	// DefaultDedupeBuckets.
	DedupeBucket time.Duration
	// DedupeAtCommit leaves duplicates to the commit alone. By default (false)
	// each read's dedupe ids are looked up before handling, one round trip,
	// so the handler is not called for a duplicate. Set it when the handler
	// has no side effects outside its Message's effects: a duplicate is then
	// handled, and the commit writes none of its effects and counts it as a
	// duplicate, which saves the round trip (about 0.15 ms at p50) and the
	// look-up in Redis. Pipelines built from YAML set it.
	DedupeAtCommit bool

	// ShutdownTimeout bounds the soft stop: after Run's ctx is done, entries
	// in flight are finished and committed for at most this long. Default 10s.
	ShutdownTimeout time.Duration

	// StepTimeout bounds one handler call. A handler still running then
	// (one that ignores its ctx) is left behind and the attempt counts as a
	// transient failure: retried with backoff, then dead-lettered. Default
	// 30s; -1 disables the bound.
	StepTimeout time.Duration

	// StateNames lists the per-key state hashes the handler reads with
	// Message.State and writes with Message.StateSet and friends. Keyed
	// state needs ordering key. Empty: no keyed state.
	StateNames []string
	// StateCacheSize is how many keys' state an owner keeps in memory per
	// partition (least recently used first out). Default 10,000.
	StateCacheSize int
	// TimerTick is how often an owner looks for due timers. A timer fires
	// within about one tick after it is due. Default 100ms.
	TimerTick time.Duration
	// AllowedLateness is subtracted from the highest event time seen on a
	// partition to give its watermark, which fires event-time timers.
	// Default 0.
	AllowedLateness time.Duration
	// IdleWatermark: a partition that reads nothing for this long advances
	// its watermark with the wall clock (minus AllowedLateness), so that
	// event-time timers still fire when input stops. Default 5s; -1: never.
	IdleWatermark time.Duration
	// WrongPartition is what to do with an entry whose key routes to
	// another partition than the one it was read from (a producer that
	// partitions differently): WrongPartitionProcess (default; it is
	// counted and logged, and its key's order is not guaranteed) or
	// WrongPartitionDeadLetter (the default, and the only choice, with
	// StateNames: the entry's state would be another partition's copy).
	WrongPartition string

	// Decoder sets each message's key and dedupe id. Required.
	Decoder Decoder
	// Handler handles each message. Required.
	Handler Handler
	// Observer receives counts and timings; nil means none.
	Observer Observer
	// Tracer records a span per commit (see BatchTracer); nil means none,
	// at no cost. Outputs carry their input's TraceField either way.
	Tracer BatchTracer
	// Logger logs; nil means no logs.
	Logger *zap.Logger
	// Clock drives every wait of the engine (backoff, leases, reclaim,
	// timers); nil means the system clock. Tests inject a fake one.
	Clock Clock
	// Now is the time used for dedupe buckets and dead letters; nil means
	// Clock.Now.
	Now func() time.Time
}

// Observer is told what the engine does, for metrics. Calls come from many
// goroutines and must not block.
type Observer interface {
	// Committed reports one commit of a partition.
	Committed(c Commit)
	// Retried reports that an entry failed with a transient error and will
	// be tried again after backoff.
	Retried(pipeline string, partition int, err error)
	// Handled reports how long one handler call took.
	Handled(pipeline string, d time.Duration)
}

// OwnershipObserver, when the Observer also implements it, is told which
// partitions this worker owns (ordering key). Calls must not block.
type OwnershipObserver interface {
	// Owned reports that this worker took (true) or gave up (false) a partition.
	Owned(pipeline string, partition int, owned bool)
	// LeaseLost reports a lease found taken over by another worker.
	LeaseLost(pipeline string, partition int)
}

// Commit describes one committed batch.
type Commit struct {
	Pipeline  string
	Partition int
	// Processed counts entries whose effects were written.
	Processed int
	// Duplicates counts entries skipped because their dedupe id was seen.
	Duplicates int
	// Stale counts entries that were already acked (by another worker or an
	// earlier try of this commit); their effects were not written again.
	Stale int
	// DeadLetters counts dead-lettered entries by reason.
	DeadLetters map[string]int
	// Duration is how long the commit took.
	Duration time.Duration
	// Latencies are, for each processed entry, the time from its stream id
	// (when it was added) to this commit.
	Latencies []time.Duration
	// TimersFired counts timer firings committed (they are not in
	// Processed); TimerLateness is, for each processing-time one, how long
	// after it was due its firing committed.
	TimersFired   int
	TimerLateness []time.Duration
	// WrongPartition counts entries whose key routes to another partition
	// than the one they were read from (see Options.WrongPartition).
	WrongPartition int
	// Counts sums Message.Count over the messages (entries and timer
	// firings) whose effects this commit wrote.
	Counts map[string]int
}

// Defaults of Options, in one place: docs/configuration.md and package
// pipelines take them from here, and a test checks that the docs agree.
const (
	DefaultPartitions      = 1
	DefaultBatchSize       = 256
	DefaultBlock           = time.Second
	DefaultLanes           = 16
	DefaultInflightBatches = 4 // MaxInflight is this many × BatchSize
	DefaultMaxEventBytes   = 1 << 20
	DefaultMaxAttempts     = 5
	DefaultBackoff         = 100 * time.Millisecond
	DefaultMaxBackoff      = 10 * time.Second
	DefaultReclaimAfter    = 30 * time.Second
	DefaultMaxReclaimEvery = 5 * time.Second // ReclaimInterval is ReclaimAfter/2, at most this
	DefaultHeartbeat       = 2 * time.Second
	DefaultSessionTimeout  = 10 * time.Second
	DefaultDedupeBuckets   = 2 // DedupeBucket is DedupeWindow / this
	// FormerDedupeBuckets was DefaultDedupeBuckets before: the sets of
	// that width are looked up too (dedupe.Window.Former), so that an
	// upgraded worker remembers the ids its predecessor marked.
	FormerDedupeBuckets     = 8
	DefaultShutdownTimeout  = 10 * time.Second
	DefaultStepTimeout      = 30 * time.Second
	DefaultStateCacheSize   = 10000
	DefaultTimerTick        = 100 * time.Millisecond
	DefaultIdleWatermark    = 5 * time.Second
	DefaultDeadLetterSuffix = ":dlq"
	DefaultRetentionEvery   = 10 * time.Second
	DefaultAbandonedAfter   = time.Hour
	// trimChunk bounds the entries one trim call cuts for a length cap
	// (the cut is found by reading that many ids); maxTrimCalls bounds the
	// calls of one round.
	trimChunk    = 2000
	maxTrimCalls = 500
)

// Wrong-partition policies (Options.WrongPartition).
const (
	// WrongPartitionProcess handles an entry whose key routes to another
	// partition like any other (counted and logged). The default.
	WrongPartitionProcess = "process"
	// WrongPartitionDeadLetter dead-letters it with reason "wrong_partition".
	WrongPartitionDeadLetter = "dead_letter"
)

// check reports every required field that is missing and every value that
// is not one of its allowed choices. Handler and Decoder are checked only
// when forRun is set: an Inspector needs neither.
func (o *Options) check(forRun bool) error {
	var errs []error
	if o.Pipeline == "" {
		errs = append(errs, errors.New("processor: Options.Pipeline is required"))
	}
	if o.Stream == "" {
		errs = append(errs, errors.New("processor: Options.Stream is required"))
	}
	if forRun && o.Decoder == nil {
		errs = append(errs, errors.New("processor: Options.Decoder is required"))
	}
	if forRun && o.Handler == nil {
		errs = append(errs, errors.New("processor: Options.Handler is required"))
	}
	if o.Ordering != "" && o.Ordering != OrderingKey && o.Ordering != OrderingNone {
		errs = append(errs, fmt.Errorf("processor: Options.Ordering %q: want %q or %q", o.Ordering, OrderingKey, OrderingNone))
	}
	if o.Ordering == OrderingNone && len(o.StateNames) > 0 {
		errs = append(errs, fmt.Errorf("processor: Options.StateNames %v: keyed state needs ordering %q (one writer per key), not %q", o.StateNames, OrderingKey, OrderingNone))
	}
	if strings.Contains(o.Consumer, "/") {
		errs = append(errs, fmt.Errorf("processor: Options.Consumer %q: must not contain '/'", o.Consumer))
	}
	if o.Start != "" && o.Start != StartOldest && o.Start != StartNewest {
		errs = append(errs, fmt.Errorf("processor: Options.Start %q: want %q or %q", o.Start, StartOldest, StartNewest))
	}
	if o.WrongPartition == WrongPartitionProcess && len(o.StateNames) > 0 {
		errs = append(errs, fmt.Errorf("processor: Options.WrongPartition %q with keyed state: an entry read from another partition than its key's would keep a second copy of the key's state; use %q", o.WrongPartition, WrongPartitionDeadLetter))
	}
	if o.WrongPartition != "" && o.WrongPartition != WrongPartitionProcess && o.WrongPartition != WrongPartitionDeadLetter {
		errs = append(errs, fmt.Errorf("processor: Options.WrongPartition %q: want %q or %q", o.WrongPartition, WrongPartitionProcess, WrongPartitionDeadLetter))
	}
	return errors.Join(errs...)
}

// setDefaults checks o for a run and fills in every default.
func (o *Options) setDefaults() error {
	if err := o.check(true); err != nil {
		return err
	}
	o.fillDefaults()
	return nil
}

// fillDefaults sets every zero field to its default.
func (o *Options) fillDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Partitions, DefaultPartitions)
	if o.Group == "" {
		o.Group = o.Pipeline
	}
	if o.Consumer == "" {
		o.Consumer = DefaultConsumer()
	}
	if o.Start == "" {
		o.Start = StartOldest
	}
	if o.Ordering == "" {
		o.Ordering = OrderingKey
	}
	if o.WrongPartition == "" {
		o.WrongPartition = WrongPartitionProcess
		if len(o.StateNames) > 0 {
			// Its state and timers would be another partition's copy.
			o.WrongPartition = WrongPartitionDeadLetter
		}
	}
	def(&o.BatchSize, DefaultBatchSize)
	defd(&o.Block, DefaultBlock)
	def(&o.Lanes, DefaultLanes)
	def(&o.MaxInflight, DefaultInflightBatches*o.BatchSize)
	if o.MaxInflight < o.BatchSize {
		o.MaxInflight = o.BatchSize
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	def(&o.MaxAttempts, DefaultMaxAttempts)
	defd(&o.Backoff, DefaultBackoff)
	defd(&o.MaxBackoff, DefaultMaxBackoff)
	defd(&o.ReclaimAfter, DefaultReclaimAfter)
	defd(&o.ReclaimInterval, min(o.ReclaimAfter/2, DefaultMaxReclaimEvery))
	defd(&o.Heartbeat, DefaultHeartbeat)
	defd(&o.SessionTimeout, DefaultSessionTimeout)
	if o.SessionTimeout < 2*o.Heartbeat {
		o.SessionTimeout = 2 * o.Heartbeat
	}
	if o.DeadLetterStream == "" {
		o.DeadLetterStream = o.Stream + DefaultDeadLetterSuffix
	}
	if o.DedupeWindow > 0 {
		defd(&o.DedupeBucket, o.DedupeWindow/DefaultDedupeBuckets)
	}
	defd(&o.ShutdownTimeout, DefaultShutdownTimeout)
	defd(&o.RetentionEvery, DefaultRetentionEvery)
	if o.StepTimeout == 0 { // below 0: no bound
		o.StepTimeout = DefaultStepTimeout
	}
	def(&o.StateCacheSize, DefaultStateCacheSize)
	defd(&o.TimerTick, DefaultTimerTick)
	if o.IdleWatermark == 0 { // below 0: never
		o.IdleWatermark = DefaultIdleWatermark
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.Now == nil {
		o.Now = o.Clock.Now
	}
}

// DefaultConsumer is "<hostname>-<pid>", the consumer name used when none is given.
func DefaultConsumer() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "eddy"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// dedupeWindow is the dedupe bucketing of o: its sets and, when the width
// is the default, those of the former default width, which cost one
// EXISTS each per commit once they have expired (9 EXISTS a commit).
func dedupeWindow(o Options) dedupe.Window {
	w := dedupe.Window{Window: o.DedupeWindow, Bucket: o.DedupeBucket}
	if o.DedupeBucket == o.DedupeWindow/DefaultDedupeBuckets { // the default width: it was another
		w.Former = o.DedupeWindow / FormerDedupeBuckets
	}
	return w
}
