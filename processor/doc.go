// Package processor is Eddy's engine: it reads entries of one pipeline from
// Redis consumer groups, runs them through a Handler in per-key lanes,
// retries transient failures, reclaims orphaned entries and commits every
// batch's effects in one atomic Lua script.
//
// It owns the engine's Redis key names (keys.go), its Lua scripts
// (scripts.go, lease_scripts.go, and the effect kinds' handlers in
// effects.go) and every Redis command it sends: redis.go, plus the
// keyed-state load (state.go), the read-only views (inspector.go), the
// permission probes (access.go) and the writes of effects outside a
// partition's slot (effects.go). It knows nothing
// of YAML, Prometheus or the CLI: pipelines/ builds a Handler and Options
// from configuration, metrics/ implements Observer, cmd/eddy wires them.
//
// Import direction: cmd/eddy -> pipelines, metrics -> processor -> dedupe.
//
// # Delivery contract
//
// Every entry read from a partition stream ends in exactly one of these
// outcomes, and each outcome is committed atomically (one Lua script per
// commit: dedupe marks, outputs, state writes, dead letters and XACK):
//
//   - Handler returns nil: the entry is processed. Its effects (Message.Emit,
//     Message.SetState) are written, its dedupe id is marked and it is acked,
//     all in one step. An entry with no effects (filtered) is acked and marked.
//   - The dedupe id was already marked within the dedupe window: the entry is
//     acked and counted as a duplicate; the handler is not called (or, if the
//     mark appeared while the entry was in flight, its effects are dropped).
//   - Handler returns an ordinary error (or panics, or runs past
//     StepTimeout): the entry is retried in place with exponential backoff
//     and jitter. Later entries of the same key wait; the key's queue is
//     parked, and other keys, of the same lane too, go on. When attempts
//     reach MaxAttempts the entry is dead-lettered with reason
//     "max_attempts". A parked key's entries keep their room in flight: a
//     partition whose MaxInflight is all held by parked keys reads nothing
//     more until one of them settles. A call past StepTimeout that ignores
//     its ctx is left running (at most Lanes of them at once; past that the
//     lane waits for it): its effects are dropped, and the key's next
//     attempt may run while it still does.
//   - Decoder or Handler returns a *PermanentError (not JSON, missing key,
//     failed validation, payload over MaxEventBytes): the entry is
//     dead-lettered at once with that reason. It is not marked as seen, so a
//     replay from the dead-letter stream is processed again.
//   - The process crashes, or shutdown passes its hard deadline: nothing of the
//     entry's uncommitted effects exists in Redis, and the entry stays in the
//     pending-entries list. With ordering "key", the partition's next owner
//     (the restarted worker at once, another once the lease has expired) takes
//     every pending entry over, oldest first, before reading new ones; with
//     "none", another worker reclaims it with XAUTOCLAIM once it has been idle
//     for ReclaimAfter. Each delivery counts as an attempt: an entry delivered
//     more than MaxAttempts times (a poison entry that kills the worker) is
//     dead-lettered with reason "max_deliveries" without calling the handler.
//   - The worker loses the partition's lease (paused past SessionTimeout, cut
//     off): its claims and commits are fenced, so nothing of what it was
//     doing is written; the entries are the next owner's, as above. Its
//     reads are not refused, but it stops at the first one (each read
//     returns the lease too), and the owner's next read shows the owner
//     what it took: the owner lets its own entries in flight commit and
//     takes those over before anything newer.
//
// Keyed state (Options.StateNames, ordering key only): a handler reads its
// key's state with Message.State and changes it with effects (StateSet,
// StateIncr, …). It sees the state as committed plus the effects of the
// key's entries handled before it, in order, and its own; an attempt that
// fails leaves nothing. The owner keeps the state in memory and drops it
// when the session ends, so a new owner reads what was committed. A
// duplicate never reaches the state: ids are looked up before handling,
// and one whose first is still in flight is acked as a duplicate once the
// first is processed.
//
// Timers (ordering key only): Message.SetTimer and SetEventTimer are
// effects, written with the ack. A due timer fires once: the owner hands
// it to its key's lane as a Message with Timer set, in order with the
// key's entries, and the firing's effects are committed together with the
// timer's removal, only if the timer is still set for the same due time.
// A crash or a lost lease before that commit leaves the timer set, and the
// next owner fires it. A firing that fails is retried like an entry and
// then dead-lettered (the dead letter names the timer; it has no entry to
// replay). Processing-time timers fire within about TimerTick after they
// are due, never before; event-time timers once the partition's watermark
// (highest event time seen, less AllowedLateness; the clock's after
// IdleWatermark without input) reaches them.
//
// Effects that a commit could not write are refused before anything is
// written: an unknown kind or malformed fields at once (reason
// "invalid_effect"), and, in the commit script, a key of the wrong type or
// a value an increment or PFADD cannot take (reason "output_failed");
// the rest of the batch commits.
//
// An entry's effects are applied only by the commit that acks it: if two
// workers ever finish the same entry, the second commit writes nothing. So
// a lost commit reply can be retried safely, and a redelivered entry never
// doubles an effect, with or without dedupe. With ordering none each entry
// is acked on its own (XACK returns 1 or 0). A partition's owner acks its
// commit's entries with one XACK: only the owner acks them, and a commit is
// all or nothing, so they are all pending or all acked by an earlier run of
// the same commit. If someone else (an operator, by hand) acked part of a
// batch meanwhile, which part is not known, and every effect of the batch
// is written: nothing is lost, and those entries' effects may be doubled.
//
// With dedupe, an entry whose id was seen is acked as a duplicate and none
// of its effects are written; nor is a dead letter (a duplicate can fail
// when it is handled). The id is looked up before handling, so the handler
// is not called for a duplicate, unless Options.DedupeAtCommit leaves that
// to the commit.
//
// On Redis Cluster, outputs, state hashes and a dead-letter stream in
// another slot than the partition cannot be part of the script: they are
// written just before it, for the entries a dry run of it says will commit,
// and so at least once (see the README's "Redis Cluster" section).
package processor
