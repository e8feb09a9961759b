package processor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// These tests put the retention loop (retention.go) under load on a real
// redis-server: consumer groups of different speeds read one input while
// every worker trims it, and no entry a group has not acknowledged may go.

// reportLog records every TrimReport the processors make, in the order each
// pipeline made them. It is the Observer of the processors under test.
type reportLog struct {
	mu      sync.Mutex
	reports map[string][]TrimReport // "<pipeline> <stream>" -> its reports, in order
}

var _ RetentionObserver = (*reportLog)(nil)

func (l *reportLog) Committed(Commit)              {}
func (l *reportLog) Retried(string, int, error)    {}
func (l *reportLog) Handled(string, time.Duration) {}

func (l *reportLog) Trimmed(r TrimReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reports == nil {
		l.reports = map[string][]TrimReport{}
	}
	k := r.Pipeline + " " + r.Stream
	l.reports[k] = append(l.reports[k], r)
}

// counts returns how many reports each pipeline has made of each stream.
func (l *reportLog) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := make(map[string]int, len(l.reports))
	for k, rs := range l.reports {
		n[k] = len(rs)
	}
	return n
}

// since returns the reports of each pipeline and stream made after the
// first from[k] of them.
func (l *reportLog) since(from map[string]int) map[string][]TrimReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]TrimReport, len(l.reports))
	for k, rs := range l.reports {
		out[k] = append([]TrimReport(nil), rs[min(from[k], len(rs)):]...)
	}
	return out
}

// all returns every report, of every pipeline and stream.
func (l *reportLog) all() []TrimReport {
	var out []TrimReport
	for _, rs := range l.since(nil) {
		out = append(out, rs...)
	}
	return out
}

// waitRounds waits until each of keys has made at least n reports after
// the first from[k], and returns those reports. A pipeline trims its streams
// one after another in one goroutine, so the second report of a stream made
// after some moment comes from a trim that started after it.
func (l *reportLog) waitRounds(tb testing.TB, keys []string, from map[string]int, n int, what string) map[string][]TrimReport {
	tb.Helper()
	waitFor(tb, 20*time.Second, what, func() bool {
		got := l.since(from)
		for _, k := range keys {
			if len(got[k]) < n {
				return false
			}
		}
		return true
	})
	return l.since(from)
}

// seqDecoder keys each entry by its field "k"; the load tests need no
// payload beyond the fields "k" and "seq".
var seqDecoder = DecoderFunc(func(m *Message) error {
	k, ok := m.Field("k")
	if !ok {
		return Permanentf(ReasonMissingKey, "entry %s has no field k", m.ID)
	}
	m.Key = k
	return nil
})

// seqRecord is what one group's handler saw: each seq's entry id and how
// many times it was handled, and every entry found already gone from the
// stream while the group had it read and not acknowledged.
type seqRecord struct {
	mu      sync.Mutex
	ids     []string // seq -> entry id, "" until handled
	times   []int    // seq -> times handled
	handled atomic.Int64
	gone    []string // "seq id" of entries trimmed while pending
	bad     []string // entries without a readable seq
}

func newSeqRecord(n int) *seqRecord { return &seqRecord{ids: make([]string, n), times: make([]int, n)} }

// handler records each entry it handles, after hold (nil: none) lets it
// go, and checks that the entry is still in the stream: the group has read
// it and not yet acked it (the commit acks after the handler returns), so
// a trim must not have removed it. This checks every entry of every group,
// at the end of the window in which it is pending the longest.
func (r *seqRecord) handler(c redis.Cmdable, hold func(ctx context.Context, seq int) error) HandlerFunc {
	return func(ctx context.Context, m *Message) error {
		raw, _ := m.Field("seq")
		seq, err := strconv.Atoi(raw)
		if err != nil || seq < 0 || seq >= len(r.ids) {
			r.mu.Lock()
			r.bad = append(r.bad, m.ID+" seq="+raw)
			r.mu.Unlock()
			return nil
		}
		if hold != nil {
			if err := hold(ctx, seq); err != nil {
				return err
			}
		}
		es, err := c.XRangeN(ctx, m.Stream, m.ID, m.ID, 1).Result()
		if err != nil {
			return fmt.Errorf("look up %s in %s: %w", m.ID, m.Stream, err) // retried
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(es) == 0 {
			r.gone = append(r.gone, fmt.Sprintf("seq %d id %s", seq, m.ID))
		}
		if r.times[seq] == 0 {
			r.ids[seq] = m.ID
			r.handled.Add(1)
		}
		r.times[seq]++
		return nil
	}
}

// lagGate holds the slow group back: its handler lets entry seq go only
// once the producer has sent lag entries past it, or has finished. A
// sleep per entry would make the lag depend on the machine's speed; this
// makes it the same everywhere.
type lagGate struct {
	lag      int64
	produced atomic.Int64
	done     atomic.Bool
}

func (g *lagGate) hold(ctx context.Context, seq int) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !g.done.Load() && g.produced.Load() < int64(seq)+g.lag {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// check reports every seq the group never handled, every entry handled
// under another id than the one it was produced with, and every entry
// found gone while pending.
func (r *seqRecord) check(t *testing.T, group string, produced []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing, wrongID []string
	dup := 0
	for seq, id := range produced {
		switch {
		case r.times[seq] == 0:
			missing = append(missing, strconv.Itoa(seq))
		case r.ids[seq] != id:
			wrongID = append(wrongID, fmt.Sprintf("seq %d: handled %s, produced %s", seq, r.ids[seq], id))
		}
		if r.times[seq] > 1 {
			dup++
		}
	}
	if len(missing) > 0 {
		t.Errorf("group %s never handled %d of %d entries (trimmed before it read them?): seq %s",
			group, len(missing), len(produced), firstFew(missing))
	}
	if len(wrongID) > 0 {
		t.Errorf("group %s handled %d entries under another id: %s", group, len(wrongID), firstFew(wrongID))
	}
	if len(r.gone) > 0 {
		t.Errorf("group %s found %d entries trimmed while it had them pending: %s", group, len(r.gone), firstFew(r.gone))
	}
	if len(r.bad) > 0 {
		t.Errorf("group %s handled %d entries without a valid seq: %s", group, len(r.bad), firstFew(r.bad))
	}
	if dup > 0 {
		// Redelivery is allowed by the contract, but nothing here fails or
		// restarts, so it would point at something else.
		t.Logf("group %s handled %d entries more than once", group, dup)
	}
}

func firstFew(s []string) string {
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(" … (%d more)", len(s)-10)
	}
	return strings.Join(s, ", ")
}

// snapshotScript reads, atomically, a stream's first entry, its length and
// each group's oldest pending entry and lag.
//
//	KEYS[1]  the stream
//
// Reply: first id ("" when empty), length, then per group: its name, its
// oldest pending id ("" when none is pending) and its lag, the entries
// added after the last it read (-1 when Redis cannot tell).
var snapshotScript = redis.NewScript(`
local s = KEYS[1]
local r = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)
local first = ''
if #r > 0 then first = r[1][1] end
local out = {first, redis.call('XLEN', s)}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
  local name, pending, lag = nil, 0, -1
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'pending' then pending = g[i + 1] end
    if g[i] == 'lag' and type(g[i + 1]) == 'number' then lag = g[i + 1] end
  end
  local oldest = ''
  if pending > 0 then oldest = redis.call('XPENDING', s, name)[2] end
  table.insert(out, name)
  table.insert(out, oldest)
  table.insert(out, lag)
end
return out
`)

// idLess reports whether stream id a is below b; ok is false when either
// is not an id "ms-seq".
func idLess(a, b string) (less, ok bool) {
	parse := func(id string) (ms, seq uint64, ok bool) {
		x, y, found := strings.Cut(id, "-")
		ms, err1 := strconv.ParseUint(x, 10, 64)
		seq, err2 := strconv.ParseUint(y, 10, 64)
		return ms, seq, found && err1 == nil && err2 == nil
	}
	am, as, oka := parse(a)
	bm, bs, okb := parse(b)
	return am < bm || am == bm && as < bs, oka && okb
}

// sampler checks, over and over until stop closes, that no stream has lost
// an entry that a group has not acknowledged. Nothing here deletes entries
// but trimming, which removes the oldest, so it is enough that the oldest
// of them is still there: of the entries a group holds pending, the first
// id must not be above the oldest; of those it has not read yet (its lag,
// the newest entries added), the stream must hold at least that many.
type sampler struct {
	samples    int
	lagChecked int // group snapshots whose lag Redis could tell
	// unreadOnly counts snapshots of slow with nothing pending and entries
	// not read: where its last delivered id, not a pending entry, is what
	// holds the cut.
	unreadOnly atomic.Int64
	maxLen     map[string]int64
	violations []string
}

func (s *sampler) run(c redis.UniversalClient, streams []string, stop <-chan struct{}) {
	ctx := context.Background()
	s.maxLen = map[string]int64{}
	for {
		select {
		case <-stop:
			return
		default:
		}
		for _, st := range streams {
			v, err := snapshotScript.Run(ctx, c, []string{st}).Slice()
			if err != nil {
				s.violations = append(s.violations, fmt.Sprintf("snapshot of %s: %v", st, err))
				return
			}
			first, _ := v[0].(string)
			n, _ := v[1].(int64)
			s.maxLen[st] = max(s.maxLen[st], n)
			for i := 2; i+2 < len(v); i += 3 {
				group, _ := v[i].(string)
				oldest, _ := v[i+1].(string)
				lag, _ := v[i+2].(int64)
				if lag >= 0 {
					s.lagChecked++
					if lag > n {
						s.violations = append(s.violations, fmt.Sprintf("%s: group %s has %d entries to read, the stream holds %d", st, group, lag, n))
					}
				}
				if group == "slow" && oldest == "" && lag > 0 {
					s.unreadOnly.Add(1)
				}
				if oldest == "" {
					continue
				}
				below, ok := idLess(oldest, first)
				if first == "" || below || !ok {
					s.violations = append(s.violations, fmt.Sprintf("%s: first entry %q, above group %s's oldest pending %q", st, first, group, oldest))
				}
			}
		}
		s.samples++
		time.Sleep(time.Millisecond) // pacing only
	}
}

// runInBackground runs p until the stop it returns is called; stop waits
// for Run to return and returns its error (nil when called again).
func runInBackground(p *Processor) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { cancel(); err = <-done })
		return err
	}
}

// The requirement: with three consumer groups on one input, one of
// them slow, the trimming that every worker runs never removes an entry
// some group has not acknowledged, checked entry by entry; once all groups
// catch up, each partition stream is cut to its cap.
//
// Two partitions, so that the partition streams (not the plain name) are
// what is trimmed. Each group is a Processor of its own pipeline.
func TestRetentionUnderLoadNeverTrimsUnacked(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 entries through three processors on a real redis-server")
	}
	const (
		entries    = 20000
		partitions = 2
		maxLen     = 200
		batch      = 50                    // entries per XADD round trip
		pace       = 10 * time.Millisecond // between batches: 5,000 entries/s
		slowLag    = 2000                  // entries the slow group stays behind the producer, at least, over both partitions
		// Every worker trims both streams this often. At 50ms the test
		// passes too, but takes 30-50s: while slow holds the cut, each
		// trim reads up to trimChunk entries to find where the cap
		// would cut (about 19ms of Redis at 10,000 over), six per round
		// saturate Redis, and slow falls further behind.
		retEvery = 200 * time.Millisecond
	)
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	groups := []string{"fast1", "fast2", "slow"}
	var streams []string
	for p := range partitions {
		streams = append(streams, PartitionStream("in", p, partitions))
	}
	// Every group exists before the first entry: a group created later
	// starts from whatever the others have let be trimmed.
	for _, s := range streams {
		for _, g := range groups {
			if err := c.XGroupCreateMkStream(ctx, s, g, "0").Err(); err != nil {
				t.Fatalf("create group %s on %s: %v", g, s, err)
			}
		}
	}

	log := &reportLog{}
	gate := &lagGate{lag: slowLag}
	rec := map[string]*seqRecord{}
	procs := make([]*Processor, len(groups))
	for i, g := range groups {
		rec[g] = newSeqRecord(entries)
		o := Options{Pipeline: g, Group: g, Stream: "in", Partitions: partitions, Consumer: g + "-w",
			Decoder: seqDecoder, Handler: rec[g].handler(c, nil), Observer: log,
			Block: 50 * time.Millisecond, InputRetention: Retention{MaxLen: maxLen}, RetentionEvery: retEvery}
		if g == "slow" {
			// Of the entries slow is behind by, up to MaxInflight per
			// partition are read and pending (held by the gate); the
			// rest are not read yet. Both kinds hold the cut.
			o.Handler = rec[g].handler(c, gate.hold)
		}
		p, err := New(c, o)
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	stops := map[string]func() error{}
	for i, g := range groups {
		stops[g] = runInBackground(procs[i])
	}
	stopProcs := func() {
		for _, g := range groups {
			if err := stops[g](); err != nil {
				t.Errorf("Run of %s: %v", g, err)
			}
		}
	}
	t.Cleanup(stopProcs)

	stopSampling := make(chan struct{})
	var smp sampler
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() { defer sampling.Done(); smp.run(c, streams, stopSampling) }()
	samplerStopped := false
	stopSampler := func() {
		if !samplerStopped {
			samplerStopped = true
			close(stopSampling)
			sampling.Wait()
		}
	}
	t.Cleanup(stopSampler)

	// The producer: batches at a steady pace, each entry with its seq.
	start := time.Now()
	produced := make([]string, entries)
	var prodErr error
	var producing sync.WaitGroup
	stopProducing := make(chan struct{})
	t.Cleanup(func() { close(stopProducing); producing.Wait() }) // on a failure before it is done
	producing.Add(1)
	go func() {
		defer producing.Done()
		defer gate.done.Store(true)
		pr := NewProducer(c, "in", partitions, 0)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := 0; i < entries; i += batch {
			recs := make([]Record, 0, batch)
			for seq := i; seq < min(i+batch, entries); seq++ {
				recs = append(recs, Record{Key: "k" + strconv.Itoa(seq%64), Fields: []string{"k", "k" + strconv.Itoa(seq%64), "seq", strconv.Itoa(seq)}})
			}
			ids, err := pr.Send(ctx, recs)
			if err != nil {
				prodErr = err
				return
			}
			copy(produced[i:], ids)
			gate.produced.Store(int64(i + len(ids)))
			select {
			case <-tick.C:
			case <-stopProducing:
				return
			}
		}
	}()
	// A fifth of the way in, slow's worker stops (a deploy, say): it
	// finishes and acks what it has read, and while it is away the entries
	// it has not read, not a pending one, are what hold the cut. It comes
	// back once the sampler has seen that and the others have trimmed
	// twice meanwhile.
	waitFor(t, 60*time.Second, "a fifth of the entries produced", func() bool {
		return gate.produced.Load() >= entries/5
	})
	if err := stops["slow"](); err != nil {
		t.Fatalf("Run of slow: %v", err)
	}
	pausedAt := gate.produced.Load()
	var fastKeys []string
	for _, s := range streams {
		fastKeys = append(fastKeys, "fast1 "+s, "fast2 "+s)
	}
	log.waitRounds(t, fastKeys, log.counts(), 2, "two rounds of fast1 and fast2 while slow's worker is away")
	waitFor(t, 20*time.Second, "a snapshot of slow with nothing pending and entries to read", func() bool {
		return smp.unreadOnly.Load() > 0
	})
	resumedAt := gate.produced.Load()
	stops["slow"] = runInBackground(procs[2])

	producing.Wait()
	if prodErr != nil {
		t.Fatal(prodErr)
	}
	produceTime := time.Since(start)
	slowAtEnd := rec["slow"].handled.Load()
	last := map[string]string{} // stream -> its last produced id
	perStream := map[string]int64{}
	for seq, id := range produced {
		s := PartitionStream("in", PartitionOf("k"+strconv.Itoa(seq%64), partitions), partitions)
		last[s] = id
		perStream[s]++
	}

	// Every group catches up: nothing pending, each group's last delivered
	// id the last produced. (Not "every entry handled": an entry trimmed
	// before a group read it never is, and check names it below.)
	caughtUpAll := func() bool {
		for _, s := range streams {
			gs, err := c.XInfoGroups(ctx, s).Result()
			if err != nil {
				t.Fatalf("XINFO GROUPS %s: %v", s, err)
			}
			for _, g := range gs {
				if g.Pending != 0 || g.LastDeliveredID != last[s] {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(90 * time.Second) // typically 10-30s; this only catches a stall
	for !caughtUpAll() {
		if time.Now().After(deadline) {
			var state []string
			for _, g := range groups {
				state = append(state, fmt.Sprintf("%s handled %d", g, rec[g].handled.Load()))
			}
			for _, s := range streams {
				gs, _ := c.XInfoGroups(ctx, s).Result()
				state = append(state, fmt.Sprintf("%s (last produced %s): %+v", s, last[s], gs))
			}
			info, _ := c.Info(ctx, "commandstats").Result()
			t.Fatalf("groups not caught up after 90s: %s\n%s", strings.Join(state, "; "), info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	caughtUp := time.Since(start)
	at := log.counts()
	var keys []string
	for _, g := range groups {
		for _, s := range streams {
			keys = append(keys, g+" "+s)
		}
	}
	after := log.waitRounds(t, keys, at, 2, "two retention rounds of every pipeline after the catch-up")
	stopSampler()
	stopProcs()

	// Entry by entry, for every group.
	for _, g := range groups {
		rec[g].check(t, g, produced)
	}
	if len(smp.violations) > 0 {
		t.Errorf("sampler: %d times in %d snapshots, an entry a group had not acknowledged was gone: %s", len(smp.violations), smp.samples, firstFew(smp.violations))
	}

	// The slow group really lagged, held the cut back, and the stream grew
	// past its cap meanwhile.
	var (
		heldBy       = map[string]int{}
		maxHeldLen   int64
		removed      = map[string]int64{}
		rounds       int
		abandonedSet int
	)
	for _, r := range log.all() {
		rounds++
		heldBy[r.HeldBy]++
		removed[r.Stream] += r.Removed
		if r.HeldBy == "slow" {
			maxHeldLen = max(maxHeldLen, r.Length)
		}
		if r.Abandoned {
			// Only while slow's worker was away: it left the group on
			// its way out (Processor.leave), and a group with no
			// consumer is abandoned at once, however recently it read.
			if r.HeldBy != "slow" || r.ConsumerIdle != -1 {
				t.Errorf("report %+v: abandoned, but every group but slow (while its worker was away) has a live consumer", r)
			}
			abandonedSet++
		}
		if r.HeldBy == "" && r.Length > maxLen {
			t.Errorf("report %+v: length %d past the cap %d with nothing holding it back", r, r.Length, maxLen)
		}
		if r.HeldBy != "" && r.Over != r.Length-maxLen {
			t.Errorf("report %+v: over %d, want length - cap = %d", r, r.Over, r.Length-maxLen)
		}
	}
	if heldBy["slow"] == 0 {
		t.Errorf("no report held back by slow (held by: %v); the slow group did not lag", heldBy)
	}
	if maxHeldLen <= maxLen {
		t.Errorf("longest stream while slow held it back = %d, want above the cap %d", maxHeldLen, maxLen)
	}
	if slowAtEnd >= entries {
		t.Errorf("slow had handled all %d entries when the producer stopped; it did not lag", entries)
	}
	if smp.lagChecked == 0 {
		t.Errorf("no snapshot had a group's lag; the check of unread entries did not run")
	}

	// Bounded once all caught up: every trim that started after the
	// catch-up (the second report of each pipeline and stream, and later)
	// applied the cap in full, and the stream holds exactly the last
	// maxLen entries produced to it.
	for _, k := range keys {
		for _, r := range after[k][1:] {
			if r.HeldBy != "" || r.Length > maxLen {
				t.Errorf("%s: after the catch-up, report %+v, want held by none and length at most %d", k, r, maxLen)
			}
		}
	}
	for _, s := range streams {
		es, err := c.XRange(ctx, s, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for seq, id := range produced {
			if PartitionStream("in", PartitionOf("k"+strconv.Itoa(seq%64), partitions), partitions) == s {
				want = append(want, id)
			}
		}
		want = want[len(want)-maxLen:]
		if len(es) != maxLen || es[0].ID != want[0] || es[len(es)-1].ID != want[len(want)-1] {
			t.Errorf("%s after the catch-up: %d entries, want the last %d produced (%s .. %s)", s, len(es), maxLen, want[0], want[len(want)-1])
		}
		// Every report of every pipeline: the removals add up to what went.
		if removed[s] != perStream[s]-maxLen {
			t.Errorf("%s: reports removed %d in all, want %d produced - %d kept", s, removed[s], perStream[s], maxLen)
		}
	}

	t.Logf("%d entries over %d partitions (%v), produced in %v; all groups caught up at %v (slow had handled %d when the producer stopped)",
		entries, partitions, perStream, produceTime.Round(time.Millisecond), caughtUp.Round(time.Millisecond), slowAtEnd)
	t.Logf("slow's worker was stopped from entry %d to %d; %d snapshots found slow with nothing pending and entries to read; %d reports called it abandoned meanwhile",
		pausedAt, resumedAt, smp.unreadOnly.Load(), abandonedSet)
	t.Logf("retention: %d reports from 3 pipelines, held by %v; longest stream while slow held it back %d (cap %d); sampler: %d snapshots (%d group lags), longest %v",
		rounds, heldBy, maxHeldLen, maxLen, smp.samples, smp.lagChecked, smp.maxLen)
}

// A group that exists but never reads holds every cap back and nothing
// below it is trimmed. With no consumer it is abandoned at once; with a
// consumer that never reads, once that consumer has been idle for
// AbandonedAfter. When it is destroyed, the stream is cut to its cap.
func TestRetentionHeldByAbandonedGroup(t *testing.T) {
	const (
		entries        = 2000
		maxLen         = 200
		abandonedAfter = 2 * time.Second
	)
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.XGroupCreateMkStream(ctx, "in", "gone", "0").Err(); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for seq := range entries {
		k := "k" + strconv.Itoa(seq%16)
		recs = append(recs, Record{Key: k, Fields: []string{"k", k, "seq", strconv.Itoa(seq)}})
	}
	produced, err := NewProducer(c, "in", 1, 0).Send(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}

	log := &reportLog{}
	rec := newSeqRecord(entries)
	p, err := New(c, Options{Pipeline: "fast1", Stream: "in", Consumer: "w", Decoder: seqDecoder,
		Handler: rec.handler(c, nil), Observer: log, Block: 50 * time.Millisecond,
		InputRetention: Retention{MaxLen: maxLen, AbandonedAfter: abandonedAfter}, RetentionEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stopRun := runInBackground(p)
	stop := func() {
		if err := stopRun(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	const key = "fast1 in"
	key1 := []string{key}

	// While fast1 works through the entries, its own oldest pending entry
	// may hold the cut (it ties with gone's at 0-1 before it reads); either
	// way nothing may go.
	waitFor(t, 20*time.Second, "fast1 to read and ack every entry", func() bool {
		gs, err := c.XInfoGroups(ctx, "in").Result()
		if err != nil {
			t.Fatalf("XINFO GROUPS in: %v", err)
		}
		for _, g := range gs {
			if g.Name == "fast1" {
				return g.Pending == 0 && g.LastDeliveredID == produced[len(produced)-1]
			}
		}
		return false // fast1 has not created its group yet
	})

	// held checks reports made while gone held the cut: from 0-1, as it
	// has read nothing, and abandoned as its consumers' idle time says.
	held := func(phase string, rs []TrimReport) (notYet, abandoned int) {
		t.Helper()
		for _, r := range rs {
			if r.HeldBy != "gone" || r.HeldFrom != "0-1" || r.Removed != 0 || r.Length != entries || r.Over != entries-maxLen {
				t.Errorf("%s: report %+v, want held by gone from 0-1, nothing removed, length %d, over %d", phase, r, entries, entries-maxLen)
			}
			if want := r.ConsumerIdle < 0 || r.ConsumerIdle >= abandonedAfter; r.Abandoned != want {
				t.Errorf("%s: report abandoned=%v with consumer idle %v, want %v (AbandonedAfter %v)", phase, r.Abandoned, r.ConsumerIdle, want, abandonedAfter)
			}
			if r.Abandoned {
				abandoned++
			} else {
				notYet++
			}
		}
		return notYet, abandoned
	}
	stream := func(phase string, n int) {
		t.Helper()
		es, err := c.XRange(ctx, "in", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		want := produced[len(produced)-n:]
		if len(es) != n || es[0].ID != want[0] || es[n-1].ID != want[n-1] {
			t.Errorf("%s: the stream holds %d entries, want the last %d produced (%s .. %s)", phase, len(es), n, want[0], want[n-1])
		}
	}

	// Phase 1: gone has no consumer. Reports from the second after fast1
	// caught up on come from trims that started after it.
	rs := log.waitRounds(t, key1, log.counts(), 2, "two rounds after fast1 caught up")[key][1:]
	held("no consumer", rs)
	for _, r := range rs {
		if r.ConsumerIdle != -1 || !r.Abandoned {
			t.Errorf("no consumer: report %+v, want consumer idle -1 and abandoned", r)
		}
	}
	stream("held by gone, no consumer", entries)
	for _, r := range log.since(nil)[key] {
		if r.Removed != 0 || r.Length != entries {
			t.Errorf("before gone went: report %+v, want nothing removed, length %d", r, entries)
		}
	}

	// Phase 2: gone gets a consumer that never reads; its idle time counts
	// from now, and it is abandoned once that reaches AbandonedAfter.
	if err := c.XGroupCreateConsumer(ctx, "in", "gone", "ghost").Err(); err != nil {
		t.Fatal(err)
	}
	at := log.counts()
	waitFor(t, 20*time.Second, "a report calling gone's idle consumer abandoned", func() bool {
		rs := log.since(at)[key]
		return len(rs) > 1 && rs[len(rs)-1].Abandoned
	})
	rs = log.since(at)[key][1:]
	notYet, abandoned := held("idle consumer", rs)
	if notYet == 0 {
		t.Errorf("no report called gone not yet abandoned while its consumer had been idle less than %v", abandonedAfter)
	}
	for _, r := range rs {
		if r.ConsumerIdle < 0 {
			t.Errorf("idle consumer: report %+v, want gone's consumer's idle time", r)
		}
	}
	stream("held by gone, idle consumer", entries)

	// Phase 3: gone destroyed, the cap applies in full.
	if err := c.XGroupDestroy(ctx, "in", "gone").Err(); err != nil {
		t.Fatal(err)
	}
	at = log.counts()
	rs = log.waitRounds(t, key1, at, 2, "two rounds after gone is destroyed")[key][1:]
	for _, r := range rs {
		if r.HeldBy != "" || r.Length != maxLen || r.Abandoned {
			t.Errorf("destroyed: report %+v, want held by none, length %d", r, maxLen)
		}
	}
	stream("gone destroyed", maxLen)
	stop()
	rec.check(t, "fast1", produced)
	t.Logf("%d entries held back by gone: %d reports with its consumer idle under %v, %d after (and with none); then cut to %d; %v in all",
		entries, notYet, abandonedAfter, abandoned, maxLen, time.Since(start).Round(time.Millisecond))
}
