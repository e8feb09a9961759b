package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
)

// partition reads one partition stream and commits its entries. It does so
// in sessions: with ordering "key", one per period this worker holds the
// partition's lease; with "none", one for the whole Run. The fields below
// log are a session's state, made anew by start.
type partition struct {
	p      *Processor
	n      int
	stream string
	dedupe string // dedupe set prefix
	lease  string // the lease key
	// lastCommit keeps the last commit's token and reply; commits counts
	// the commits of this worker, for their tokens (committer only).
	lastCommit string
	commits    uint64
	token      string // the token counter key
	slot       int    // the Redis Cluster slot of all of the above
	ks         keyspace
	timers     timerKeys
	meta       string // the partition's metadata hash (its watermark)
	log        *zap.Logger

	// desired says whether the current assignment gives this partition to
	// this worker; wake is signalled when it changes.
	desired atomic.Bool
	wake    chan struct{}

	// fence is the session's lease value ("" with ordering none); lose
	// ends the session at once, when the lease is found lost.
	fence string
	lose  func(where string)
	// seen is the highest entry id the session has dispatched (owner only).
	seen string

	// results carries handled tasks to the committer.
	results chan *task
	// handling counts tasks given to lanes and not yet back in results: the
	// committer waits a moment for them (commitLinger).
	handling atomic.Int64
	// sem bounds entries read but not yet committed.
	sem *semaphore.Weighted

	mu       sync.Mutex
	inflight map[string]time.Time // entry id → when it was dispatched or last touched
	// firedSince holds the timers committed since the timer loop last read
	// the due ones.
	firedSince map[string]struct{}
	// takenOver is closed once an owner has taken over the partition's
	// pending entries (at once with ordering none): timers fire after.
	takenOver chan struct{}
	// byDedupeID is the task in flight for each dedupe id: an entry with
	// the same id dispatched meanwhile is a duplicate if that task is
	// processed (task.dupOf).
	byDedupeID map[string]*task

	readLog, retryLog, commitLog, routeLog, waitLog throttle
	args                                            commitArgs

	// states is the session's keyed-state cache (nil without StateNames).
	states *stateCache
	// maxEventTime is the highest event time seen (unix ms) and watermark
	// what timers wait for: maxEventTime less AllowedLateness, or the
	// clock's, when the partition has been idle for IdleWatermark.
	maxEventTime, watermark atomic.Int64
	// storedWatermark is the watermark last committed.
	storedWatermark atomic.Int64
	// eventTimeMoved wakes the timer loop when a read raised the highest
	// event time, so that event-time timers it made due fire at once
	// rather than at the next tick.
	eventTimeMoved chan struct{}
	// lastRead is when the session last read an entry (unix ns).
	lastRead atomic.Int64
}

func newPartition(p *Processor, n int) *partition {
	o := p.o
	stream := PartitionStream(o.Stream, n, o.Partitions)
	ks := keyspace{stream: o.Stream, p: n, n: o.Partitions, group: o.Group}
	return &partition{
		ks:         ks,
		timers:     timerKeysOf(ks),
		meta:       metaKey(o.Stream, n, o.Partitions, o.Group),
		p:          p,
		n:          n,
		stream:     stream,
		dedupe:     DedupePrefix(o.Stream, n, o.Partitions, o.Group),
		lease:      leaseKey(o.Stream, n, o.Partitions, o.Group),
		lastCommit: lastCommitKey(o.Stream, n, o.Partitions, o.Group),
		token:      tokenKey(o.Stream, n, o.Partitions, o.Group),
		slot:       keySlot(stream),
		log:        p.log.With(zap.String("stream", stream), zap.Int("partition", n)),
		wake:       make(chan struct{}, 1),
	}
}

// start makes the state of one session.
func (pt *partition) start(fence string, lose func(string)) {
	o := pt.p.o
	pt.fence, pt.lose, pt.seen = fence, lose, "0-0"
	pt.states = nil
	if len(o.StateNames) > 0 && fence != "" {
		pt.states = newStateCache(pt.ks, o.StateNames, o.StateCacheSize, o.Clock.Now)
	}
	pt.lastRead.Store(o.Clock.Now().UnixNano())
	pt.results = make(chan *task, pt.p.o.MaxInflight)
	pt.sem = semaphore.NewWeighted(int64(pt.p.o.MaxInflight))
	pt.mu.Lock()
	pt.inflight = make(map[string]time.Time)
	pt.byDedupeID = make(map[string]*task)
	pt.firedSince = make(map[string]struct{})
	pt.takenOver = make(chan struct{})
	pt.eventTimeMoved = make(chan struct{}, 1)
	pt.mu.Unlock()
}

// readLoop: create the group, finish this consumer's own pending entries,
// take over orphaned ones, then read new entries until soft is done. Every
// ReclaimInterval it reclaims again. Redis calls are not cancelled by soft
// (an entry Redis delivered would sit pending until reclaimed; Block bounds
// how long a stop waits for the read in progress), only by hard.
//
// After a read or claim whose reply was lost (a timeout, a dropped
// connection), Redis may have handed this consumer entries it never saw.
// Before reading anything newer, the loop re-reads its own pending entries,
// so they are not overtaken by later entries of their keys.
func (pt *partition) readLoop(soft, hard context.Context, lanes []*lane, fail func(error)) {
	o := pt.p.o
	rctx := hard
	for {
		err := ensureGroup(soft, pt.p.rdb, pt.stream, o.Group, o.Start)
		if err == nil {
			break
		}
		if !pt.retryable(err) {
			fail(err)
			return
		}
		pt.logReadError("create_group_failed", err)
		if !pt.p.wait(soft, time.Second) {
			return
		}
	}
	if pt.fence != "" {
		pt.ownedReadLoop(soft, hard, lanes, fail)
		return
	}
	recheck := true // start with this consumer's own pending entries
	var lastReclaim time.Time
	failures := 0
	for soft.Err() == nil {
		if recheck {
			if err := pt.recoverOwn(soft, rctx, hard, lanes); err != nil {
				failures++
				pt.logReadError("recover_pending_failed", err)
				pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, failures))
				continue
			}
			recheck = false
		}
		if o.Clock.Now().Sub(lastReclaim) >= o.ReclaimInterval {
			recheck = !pt.reclaim(soft, rctx, hard, lanes)
			lastReclaim = o.Clock.Now()
			if recheck {
				continue
			}
		}
		room, err := pt.acquireRoom(soft)
		if err != nil {
			return
		}
		// A read begun before a stop has no stop deadline: bound it by its
		// own BLOCK time instead.
		block := min(o.Block, o.ReclaimInterval)
		cctx, cancel := pt.p.bounded(rctx)
		cctx, cancelRead := context.WithTimeout(cctx, block+time.Second)
		entries, err := readNew(cctx, pt.p.rdb, pt.stream, o.Group, o.Consumer, room, block)
		cancelRead()
		cancel()
		pt.sem.Release(int64(room - len(entries)))
		if err != nil {
			if isNoGroup(err) {
				// The stream or group was deleted under us: create it again.
				pt.log.Warn("group_missing_recreating", zap.Error(err))
				if err := ensureGroup(soft, pt.p.rdb, pt.stream, o.Group, o.Start); err != nil && !pt.retryable(err) {
					fail(err)
					return
				}
				continue
			}
			if !pt.retryable(err) {
				fail(fmt.Errorf("read %s: %w", pt.stream, err))
				return
			}
			failures++
			recheck = true
			pt.logReadError("read_failed", err)
			pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, failures))
			continue
		}
		failures = 0
		pt.dispatch(rctx, hard, lanes, entries, nil)
	}
}

// ownedReadLoop reads the partition while this worker holds its lease:
// first every entry pending in the partition, whoever holds it (the
// previous owner's unfinished work), one at a time and oldest first; then
// new entries. Reads and claims check the lease in the same script, so once
// it is lost nothing more is read. Each read first returns entries already
// delivered to this consumer that it has not seen (a read whose reply was
// lost), so they are not overtaken by later ones.
func (pt *partition) ownedReadLoop(soft, hard context.Context, lanes []*lane, fail func(error)) {
	o := pt.p.o
	takeover, failures, idle := true, 0, false
	for soft.Err() == nil {
		if takeover {
			ok, err := pt.takeOver(soft, hard, lanes)
			if !ok {
				return
			}
			if err != nil {
				failures++
				if isNoGroup(err) {
					_ = ensureGroup(soft, pt.p.rdb, pt.stream, o.Group, o.Start)
				}
				pt.logReadError("take_over_failed", err)
				pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, failures))
				continue
			}
			takeover = false
			select {
			case <-pt.takenOver:
			default:
				close(pt.takenOver)
			}
		}
		room, err := pt.acquireRoom(soft)
		if err != nil {
			return
		}
		cctx, cancel := pt.p.bounded(hard)
		var r ownedRead
		if idle {
			// Nothing was there last time: wait for new entries in the read
			// itself, so that one arriving is handled one round trip later.
			block := min(o.Block, o.Heartbeat)
			wctx, cancelWait := context.WithTimeout(cctx, block+time.Second)
			r, err = readOwnedWaiting(wctx, pt.p.rdb, pt.stream, pt.lease, o.Group, o.Consumer, room, block, pt.fence, pt.seen)
			cancelWait()
		} else {
			r, err = readOwned(cctx, pt.p.rdb, pt.stream, pt.lease, o.Group, o.Consumer, room, pt.fence, pt.seen)
		}
		cancel()
		idle = false
		// The read holds room units; it may bring up to twice as many
		// entries (this consumer's unseen ones, then new ones).
		held := min(len(r.entries), room)
		pt.sem.Release(int64(room - held))
		switch {
		case r.fenced:
			pt.lose("read")
			return
		case err != nil && isNoGroup(err):
			pt.log.Warn("group_missing_recreating", zap.Error(err))
			if err := ensureGroup(soft, pt.p.rdb, pt.stream, o.Group, o.Start); err != nil && !pt.retryable(err) {
				fail(err)
				return
			}
			failures++
			pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, failures))
			continue
		case err != nil && !pt.retryable(err):
			fail(fmt.Errorf("read %s: %w", pt.stream, err))
			return
		case err != nil:
			failures++
			pt.logReadError("read_failed", err)
			pt.p.wait(soft, backoff(50*time.Millisecond, 2*time.Second, failures))
			continue
		}
		failures = 0
		if len(r.entries) > 0 {
			pt.seen = r.entries[len(r.entries)-1].id
		}
		if r.foreign > 0 {
			// A worker that lost its lease read entries after the takeover.
			// They come before these: leave these pending, let every entry
			// in flight commit, and take them all over, oldest first.
			pt.log.Warn("entries_read_by_former_owner", zap.Int64("count", r.foreign))
			pt.sem.Release(int64(held))
			if !pt.drain(soft) {
				return
			}
			takeover = true
			continue
		}
		pt.dispatch(hard, hard, lanes, r.entries[:held], nil)
		for rest := r.entries[held:]; len(rest) > 0; {
			k := min(len(rest), o.BatchSize)
			if pt.sem.Acquire(hard, int64(k)) != nil {
				return // the hard stop: the rest stays pending
			}
			pt.dispatch(hard, hard, lanes, rest[:k], nil)
			rest = rest[k:]
		}
		// Less than it had room for: what was there is read, and the next
		// read may as well wait (it returns at once if more has come).
		idle = len(r.entries) < room
	}
}

// takeOver claims every entry pending in the partition, one at a time and
// oldest first, and waits for each to be committed. It passes over the
// pending list until a pass finds nothing: an entry whose claim reply was
// lost is this consumer's then, and the next pass finds it. It returns
// false when the lease was lost or the session is stopping.
func (pt *partition) takeOver(soft, hard context.Context, lanes []*lane) (bool, error) {
	for {
		found, ok, err := pt.takeOverPass(soft, hard, lanes)
		if !ok || err != nil || found == 0 {
			return ok, err
		}
	}
}

// takeOverPass is one pass of takeOver; it returns how many entries it took.
func (pt *partition) takeOverPass(soft, hard context.Context, lanes []*lane) (int, bool, error) {
	o := pt.p.o
	cursor, total := "0-0", 0
	defer func() {
		if total > 0 {
			pt.log.Info("took_over_pending", zap.Int("count", total))
		}
	}()
	for soft.Err() == nil {
		cctx, cancel := pt.p.bounded(hard)
		r, err := fencedClaim(cctx, pt.p.rdb, pt.stream, pt.lease, o.Group, o.Consumer, cursor, pt.fence)
		cancel()
		if err != nil {
			return total, true, err
		}
		if r.fenced {
			pt.lose("claim")
			return total, false, nil
		}
		if len(r.deleted) > 0 {
			pt.log.Warn("pending_entries_deleted_from_stream", zap.Int("count", len(r.deleted)), zap.Strings("entry_ids", r.deleted))
		}
		for _, e := range r.entries {
			if pt.isInflight(e.id) {
				continue
			}
			total++
			if IDAfter(e.id, pt.seen) {
				pt.seen = e.id
			}
			if !pt.dispatchSerial(soft, hard, hard, lanes, e) {
				return total, false, nil
			}
		}
		if r.next == "0-0" || r.next == "" {
			return total, true, nil
		}
		cursor = r.next
	}
	return total, false, nil
}

// retryable reports whether err may go away by itself (a connection
// problem, a failover, Redis loading) rather than needing an operator.
func (pt *partition) retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if isNoPerm(err) {
		return false
	}
	for _, prefix := range []string{"WRONGTYPE", "WRONGPASS", "NOAUTH", "ERR unknown command"} {
		if redis.HasErrorPrefix(err, prefix) {
			return false
		}
	}
	return true
}

func (pt *partition) logReadError(msg string, err error) {
	if ok, n := pt.readLog.allow(time.Now(), 5*time.Second); ok {
		pt.log.Error(msg, zap.Error(err), zap.Int("suppressed", n))
	}
}

// Redelivered entries (this consumer's own pending entries after a restart,
// and entries reclaimed from other consumers) are claimed and handled one at
// a time, each committed before the next is claimed. Every claim adds one to
// an entry's delivery count, so when a poison entry kills the worker, only
// that entry's count grows, and it alone reaches MaxAttempts and goes to the
// dead-letter stream; the entries behind it are not penalised.

// recoverOwn re-reads the entries pending for this consumer that it is not
// working on (those it had when it last stopped, or whose read reply was
// lost), oldest first, before anything new.
func (pt *partition) recoverOwn(soft, rctx, hard context.Context, lanes []*lane) error {
	o := pt.p.o
	start := "-"
	total := 0
	for soft.Err() == nil {
		cctx, cancel := pt.p.bounded(rctx)
		pend, err := pendingOf(cctx, pt.p.rdb, pt.stream, o.Group, o.Consumer, start, o.BatchSize)
		cancel()
		if err != nil || len(pend) == 0 {
			return err
		}
		for i := range pend {
			if soft.Err() != nil {
				return nil //nolint:nilerr // a stop is not a failure to recover
			}
			if pt.isInflight(pend[i].ID) {
				continue
			}
			cctx, cancel := pt.p.bounded(rctx)
			e, ok, deleted, err := claimOwn(cctx, pt.p.rdb, pt.stream, o.Group, o.Consumer, pend[i].ID)
			cancel()
			if err != nil {
				return err
			}
			if deleted {
				pt.log.Warn("pending_entry_deleted_from_stream", zap.String("entry_id", pend[i].ID))
			}
			if !ok { // gone, or another worker reclaimed it since it was listed: it is theirs
				continue
			}
			total++
			if !pt.dispatchSerial(soft, rctx, hard, lanes, e) {
				return nil
			}
		}
		if len(pend) < o.BatchSize {
			break
		}
		start = "(" + pend[len(pend)-1].ID
	}
	if total > 0 {
		pt.log.Info("recovered_own_pending", zap.Int("count", total))
	}
	return nil
}

// reclaim takes over, one by one, entries idle in other consumers' pending
// lists for ReclaimAfter. It returns false if a claim's reply may have been
// lost, so that the caller re-reads this consumer's own pending entries.
func (pt *partition) reclaim(soft, rctx, hard context.Context, lanes []*lane) bool {
	o := pt.p.o
	cursor, total := "0-0", 0
	defer func() {
		if total > 0 {
			pt.log.Info("reclaimed_entries", zap.Int("count", total))
		}
	}()
	for soft.Err() == nil {
		cctx, cancel := pt.p.bounded(rctx)
		next, entries, deleted, err := autoclaim(cctx, pt.p.rdb, pt.stream, o.Group, o.Consumer, o.ReclaimAfter, cursor, 1)
		cancel()
		if err != nil {
			if isNoGroup(err) {
				return true
			}
			pt.logReadError("reclaim_failed", err)
			return false
		}
		if len(deleted) > 0 {
			pt.log.Warn("pending_entries_deleted_from_stream", zap.Int("count", len(deleted)), zap.Strings("entry_ids", deleted))
		}
		for _, e := range entries {
			if pt.isInflight(e.id) { // our own, still being worked on
				continue
			}
			total++
			if !pt.dispatchSerial(soft, rctx, hard, lanes, e) {
				return true
			}
		}
		if next == "0-0" || next == "" {
			return true
		}
		cursor = next
	}
	return true
}

// touchInflight resets the idle time of entries this worker has had in
// flight for longer than every, so that no other worker reclaims an entry
// still being handled here (a slow handler, a long retry). Only entries
// still pending for this consumer are touched: one that another worker has
// taken over stays with it. (Ordering "none"; an owner needs none of this.)
func (pt *partition) touchInflight(hard context.Context, every time.Duration) {
	o := pt.p.o
	ids := pt.stale(every)
	if len(ids) == 0 {
		return
	}
	cctx, cancel := pt.p.bounded(hard)
	err := touchOwn(cctx, pt.p.rdb, pt.stream, o.Group, o.Consumer, ids)
	cancel()
	if err != nil && hard.Err() == nil {
		pt.logReadError("keep_alive_failed", err)
	}
}

// dispatchSerial dispatches one redelivered entry and waits until it is
// committed. It returns false if a stop came first.
func (pt *partition) dispatchSerial(soft, rctx, hard context.Context, lanes []*lane, e entry) bool {
	if err := pt.sem.Acquire(soft, 1); err != nil {
		return false
	}
	done := make(chan struct{})
	pt.dispatch(rctx, hard, lanes, []entry{e}, done)
	select {
	case <-done:
		return true
	case <-hard.Done():
		return false
	}
}

// dispatch decodes entries, settles what needs no handler (too large, not
// decodable, delivered too often, already seen) and sends the rest to the
// lane of their key. The caller has acquired one sem unit per entry.
// A non-nil done is closed once the (single) entry is committed.
func (pt *partition) dispatch(rctx, hard context.Context, lanes []*lane, entries []entry, done chan struct{}) {
	if len(entries) == 0 {
		return
	}
	o := pt.p.o
	now := time.Now()
	pt.lastRead.Store(o.Clock.Now().UnixNano())
	tasks := make([]*task, 0, len(entries))
	// The watermark moves only once this read's entries are in their
	// lanes, so that no event-time firing overtakes them.
	var latest int64
	defer func() {
		if latest > 0 {
			pt.sawEventTime(latest)
		}
	}()
	var ids []string
	var idTasks []*task
	pt.mu.Lock()
	for _, e := range entries {
		pt.inflight[e.id] = now
	}
	pt.mu.Unlock()
	// Each entry gets the watermark as of its place in the stream: that of
	// the reads before, raised by the event times of the entries before it
	// in this read (not by its own or later ones), so that whether an
	// entry is late does not depend on where a read ends.
	running := pt.watermark.Load()
	lateness := o.AllowedLateness.Milliseconds()
	for _, e := range entries {
		m := &Message{ID: e.id, Stream: pt.stream, Partition: pt.n, Fields: e.fields,
			Deliveries: e.deliveries, Attempt: int(max(e.deliveries, 1)), received: now, ks: pt.ks, pt: pt}
		t := &task{m: m, part: pt, done: done, ctx: hard, results: pt.results}
		tasks = append(tasks, t)
		if e.deliveries > int64(o.MaxAttempts) {
			t.deadLetter(ReasonMaxDeliveries, fmt.Errorf("delivered %d times without completing (max_attempts %d)", e.deliveries, o.MaxAttempts))
			continue
		}
		if size := fieldsSize(e.fields); o.MaxEventBytes > 0 && size > o.MaxEventBytes {
			t.deadLetter(ReasonTooLarge, fmt.Errorf("entry is %d bytes, over max_event_bytes %d", size, o.MaxEventBytes))
			continue
		}
		if err := decode(o.Decoder, m); err != nil {
			reason, ok := permanentReason(err)
			if !ok {
				reason = ReasonInvalid
			}
			t.deadLetter(reason, err)
			continue
		}
		if o.Partitions > 1 && PartitionOf(m.Key, o.Partitions) != pt.n {
			t.wrongPartition = true
			if ok, n := pt.routeLog.allow(now, 10*time.Second); ok {
				pt.log.Warn("entry_in_wrong_partition", zap.String("entry_id", m.ID), zap.String("key", m.Key),
					zap.Int("key_partition", PartitionOf(m.Key, o.Partitions)), zap.String("policy", o.WrongPartition),
					zap.Int("suppressed", n))
			}
			if o.WrongPartition == WrongPartitionDeadLetter {
				t.deadLetter(ReasonWrongPartition, fmt.Errorf("key %q routes to partition %d of %d, read from partition %d",
					m.Key, PartitionOf(m.Key, o.Partitions), o.Partitions, pt.n))
				continue
			}
		}
		m.wmAt, m.wmSet = running, true
		if !m.EventTime.IsZero() {
			latest = max(latest, m.EventTime.UnixMilli())
			running = max(running, m.EventTime.UnixMilli()-lateness)
		}
		if m.DedupeID != "" && pt.p.dd.Enabled() {
			pt.mu.Lock()
			if orig, ok := pt.byDedupeID[m.DedupeID]; ok {
				t.dupOf = orig
			} else {
				pt.byDedupeID[m.DedupeID] = t
			}
			pt.mu.Unlock()
			ids = append(ids, m.DedupeID)
			idTasks = append(idTasks, t)
		}
	}
	// Keyed state must not see a duplicate's effects, which the commit
	// would then drop: look ids up before handling. (An id found in flight
	// above is settled in the lane, once its first is handled.)
	if len(ids) > 0 && (!o.DedupeAtCommit || pt.states != nil) {
		cctx, cancel := pt.p.bounded(rctx)
		seen, err := pt.p.dd.Seen(cctx, pt.p.rdb, pt.dedupe, o.Now(), ids)
		cancel()
		if err != nil {
			// The commit checks again; this look-up only saves handler calls.
			pt.logReadError("dedupe_lookup_failed", err)
		}
		for i, s := range seen {
			if s {
				idTasks[i].kind = 'a'
			}
		}
	}
	if !pt.pinState(rctx, hard, tasks) {
		return
	}
	for _, t := range tasks {
		if t.kind == 0 {
			pt.handling.Add(1)
			lanes[laneOf(t.m.Key, len(lanes))].push(t)
			continue
		}
		select { // settled already
		case pt.results <- t:
		case <-hard.Done():
			return
		}
	}
}

// decode runs the decoder, turning a panic into a permanent error: the
// same input would panic again.
func decode(d Decoder, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanentf(ReasonInvalid, "decoder panic: %v", r)
		}
	}()
	return d.Decode(m)
}

func fieldsSize(fields []string) int {
	n := 0
	for _, f := range fields {
		n += len(f)
	}
	return n
}

func (pt *partition) isInflight(id string) bool {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	_, ok := pt.inflight[id]
	return ok
}

// stale returns in-flight ids not touched for longer than d and marks them touched.
func (pt *partition) stale(d time.Duration) []string {
	now := time.Now()
	pt.mu.Lock()
	defer pt.mu.Unlock()
	var ids []string
	for id, at := range pt.inflight {
		if now.Sub(at) > d {
			ids = append(ids, id)
			pt.inflight[id] = now
		}
	}
	return ids
}

func (pt *partition) inflightCount() int {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return len(pt.inflight)
}

// settled forgets committed tasks and frees their room in flight.
func (pt *partition) settled(batch []*task) {
	pt.mu.Lock()
	for _, t := range batch {
		delete(pt.inflight, t.inflightID())
		if tm := t.m.Timer; tm != nil {
			pt.firedSince[timerMember(tm.Key, tm.Name)] = struct{}{}
		}
		if id := t.m.DedupeID; id != "" && pt.byDedupeID[id] == t {
			delete(pt.byDedupeID, id)
		}
	}
	pt.mu.Unlock()
	pt.sem.Release(int64(len(batch)))
	for _, t := range batch {
		if t.done != nil {
			close(t.done)
		}
	}
}

// drain waits until every entry in flight is committed. It returns false
// if ctx is done first.
func (pt *partition) drain(ctx context.Context) bool {
	all := int64(pt.p.o.MaxInflight)
	if err := pt.sem.Acquire(ctx, all); err != nil {
		return false
	}
	pt.sem.Release(all)
	return true
}

// pinState loads, for tasks that go to lanes, their keys' state that the
// cache misses, and pins it until they are committed. Loading is retried
// until it succeeds; it returns false if the hard stop comes first.
func (pt *partition) pinState(rctx, hard context.Context, tasks []*task) bool {
	if pt.states == nil {
		return true
	}
	keys := make([]string, 0, len(tasks))
	for _, t := range tasks {
		if t.kind == 0 {
			keys = append(keys, t.m.Key)
			t.m.states = pt.states
		}
	}
	if len(keys) == 0 {
		return true
	}
	for attempt := 1; ; attempt++ {
		cctx, cancel := pt.p.bounded(rctx)
		err := pt.states.pin(cctx, pt.p.rdb, keys)
		cancel()
		if err == nil {
			return true
		}
		pt.logReadError("state_load_failed", err)
		if !pt.p.wait(hard, backoff(50*time.Millisecond, 2*time.Second, attempt)) {
			return false
		}
	}
}

// acquireRoom takes room in flight for one read: BatchSize entries if
// free, else whatever is free once at least one entry's room is (entries
// of keys in backoff hold theirs until they settle, so the partition reads
// on until MaxInflight is all taken).
func (pt *partition) acquireRoom(ctx context.Context) (int, error) {
	b := pt.p.o.BatchSize
	if pt.sem.TryAcquire(int64(b)) {
		return b, nil
	}
	if err := pt.sem.Acquire(ctx, 1); err != nil {
		return 0, err
	}
	got := 1
	for k := (b - 1) / 2; k >= 1 && got < b; k /= 2 {
		for got+k <= b && pt.sem.TryAcquire(int64(k)) {
			got += k
		}
	}
	return got, nil
}
