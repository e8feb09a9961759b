package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// rebuildConfig is the read-model pipeline of the rebuild tests: a
// balance, an entry count and the last event id per account, with
// resent events deduplicated.
const rebuildConfig = `redis: {url: %s}
http: {addr: "off"}
pipelines:
  - name: accounts
    input: {stream: ledger, partitions: 4, payload: data}
    key: account
    dedupe: {id: id, window: 1h}
    steps:
      - state:
          hash: 'account:$key'
          incr: {balance: amount, entries: 1}
          fields: {last_id: id}
`

// rebuildAccounts is how many accounts the events spread over.
const rebuildAccounts = 5000

// accountModel is one account's read model: what the pipeline's state
// step keeps in account:<key>.
type accountModel struct {
	balance, entries int64
	lastID           string
}

// ledger makes the tests' events and keeps the read model they make, as
// the pipeline should: each event adds its amount and one entry to its
// account and becomes its last_id; a resent event (an id seen before)
// changes nothing. Only one goroutine at a time uses it.
type ledger struct {
	rng  *rand.Rand
	n    int // events made, resends included
	last map[string]string
	want map[string]*accountModel
}

func newLedger(seed uint64) *ledger {
	return &ledger{rng: rand.New(rand.NewPCG(seed, 13)), last: map[string]string{}, want: map[string]*accountModel{}}
}

// next makes the next batch of n events.
func (l *ledger) next(n int) []processor.Record {
	recs := make([]processor.Record, n)
	for i := range recs {
		l.n++
		acct := "a" + strconv.Itoa(l.rng.IntN(rebuildAccounts))
		if prev, ok := l.last[acct]; ok && l.n%50 == 0 {
			// The account's last event sent again: dedupe drops it.
			recs[i] = processor.Record{Key: acct, Fields: []string{"data", prev}}
			continue
		}
		id := "e" + strconv.Itoa(l.n)
		amount := l.rng.IntN(1000) - 100
		data := fmt.Sprintf(`{"id":%q,"account":%q,"amount":%d}`, id, acct, amount)
		recs[i] = processor.Record{Key: acct, Fields: []string{"data", data}}
		l.last[acct] = data
		m := l.want[acct]
		if m == nil {
			m = &accountModel{}
			l.want[acct] = m
		}
		m.balance += int64(amount)
		m.entries++
		m.lastID = id
	}
	return recs
}

// produce sends n events in pipelined batches.
func (l *ledger) produce(ctx context.Context, prod *processor.Producer, n int) error {
	const batch = 2000
	for n > 0 {
		k := min(n, batch)
		if _, err := prod.Send(ctx, l.next(k)); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// checkReadModel compares every account's hash under prefix with the
// ledger's read model, and counts the hashes there, and returns the
// differences (at most a few).
func checkReadModel(ctx context.Context, c *redis.Client, prefix string, l *ledger) error {
	accts := make([]string, 0, len(l.want))
	for a := range l.want {
		accts = append(accts, a)
	}
	var bad []string
	for i := 0; i < len(accts); i += 1000 {
		part := accts[i:min(i+1000, len(accts))]
		cmds := make([]*redis.MapStringStringCmd, len(part))
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, a := range part {
				cmds[j] = p.HGetAll(ctx, prefix+"account:"+a)
			}
			return nil
		}); err != nil {
			return err
		}
		for j, a := range part {
			got, want := cmds[j].Val(), l.want[a]
			bal, _ := strconv.ParseFloat(got["balance"], 64)
			ent, _ := strconv.ParseFloat(got["entries"], 64)
			if bal != float64(want.balance) || ent != float64(want.entries) || got["last_id"] != want.lastID {
				bad = append(bad, fmt.Sprintf("%saccount:%s = balance %q entries %q last_id %q, want %d %d %q",
					prefix, a, got["balance"], got["entries"], got["last_id"], want.balance, want.entries, want.lastID))
			}
		}
	}
	var keys int
	iter := c.Scan(ctx, 0, prefix+"account:*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if keys != len(l.want) {
		bad = append(bad, fmt.Sprintf("%d hashes %saccount:*, want %d", keys, prefix, len(l.want)))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d differences from the events produced, e.g.:\n%s", len(bad), strings.Join(bad[:min(len(bad), 5)], "\n"))
	}
	return nil
}

// readerStats is what the reader saw.
type readerStats struct {
	reads map[int]int // consistent reads per version
	torn  int         // reads during which the version changed
	// tornAhead counts the torn reads whose entries for some account the
	// next consistent read had fewer of: what a reader that does not read
	// the version again would have seen as a step back.
	tornAhead int
	err       error // the first step back
}

// readModelReader reads the version, then the entries of sample under its
// prefix, then the version again, as a reader of the read model does, until
// ctx ends, and fails at the first account whose entries step back. A read
// during which the version changed is discarded: it may mix the old
// version, still written until the workers follow, with the new one.
func readModelReader(ctx context.Context, c *redis.Client, sample []string) readerStats {
	st := readerStats{reads: map[int]int{}}
	seen := map[string]int64{}
	prevVersion := 1
	var torn map[string]int64                    // the last torn read's entries
	tick := time.NewTicker(2 * time.Millisecond) // pace, leaving the CPUs to eddy
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
		v, err := processor.ReadVersion(ctx, c, "accounts")
		if err != nil {
			continue // ctx ended
		}
		prefix := processor.VersionPrefix(v)
		cmds := make([]*redis.StringCmd, len(sample))
		_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, a := range sample {
				cmds[i] = p.HGet(ctx, prefix+"account:"+a, "entries")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			continue
		}
		entries := make(map[string]int64, len(sample))
		for i, a := range sample {
			n, _ := strconv.ParseFloat(cmds[i].Val(), 64) // missing: 0
			entries[a] = int64(n)
		}
		if again, err := processor.ReadVersion(ctx, c, "accounts"); err != nil || again != v {
			st.torn++
			torn = entries
			continue
		}
		for _, a := range sample {
			if entries[a] < torn[a] {
				st.tornAhead++
				break
			}
		}
		torn = nil
		for _, a := range sample {
			n := entries[a]
			if n < seen[a] {
				st.err = fmt.Errorf("account %s: entries %d in version %d after %d in version %d", a, n, v, seen[a], prevVersion)
				return st
			}
			seen[a] = n
		}
		prevVersion = v
		st.reads[v]++
	}
}

// startEddyOut starts the eddy binary like startEddy, its stdout going to
// stdout.
func startEddyOut(t *testing.T, stdout io.Writer, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(eddyBin, args...), exited: make(chan struct{})}
	p.cmd.Stdout = stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	return p
}

// caughtUp reports whether version v's group has read and acknowledged
// every entry of every partition.
func caughtUp(ctx context.Context, t *testing.T, c *redis.Client, p *pipelines.Pipeline, v int) bool {
	t.Helper()
	in, err := processor.NewInspector(c, p.AtVersion(v).Options())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if !s.GroupExists || s.Lag != 0 || s.Pending != 0 {
			return false
		}
	}
	return true
}

func loadPipeline(t *testing.T, cfg, name string) *pipelines.Pipeline {
	t.Helper()
	f, err := pipelines.Load(cfg, pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return f.Pipeline(name)
}

// progressLine is a line of --progress lines: a bar, a percentage, and
// entries done of the total.
var progressLine = regexp.MustCompile(`(?m)^\[[#.]{30}\] +(\d+\.\d)% ([\d,]+)/([\d,]+) entries`)

// Issue 13, item 3: eddy rebuild of a read model over N events (1,000,000
// with EDDY_TEST_REBUILD_EVENTS=1000000) while new events keep arriving
// ends with the new version equal to the read model computed from every
// event, and a reader never sees the model step back: before the switch
// it reads version 1, complete and kept by eddy run, after it version 2,
// which the switch made hold all version 1 held.
func TestRebuildWhileEventsArrive(t *testing.T) {
	events := 200000
	if s := os.Getenv("EDDY_TEST_REBUILD_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("EDDY_TEST_REBUILD_EVENTS=%q: want a positive count", s)
		}
		events = n
	}
	// Bounds that grow with the backlog: eddy handles well over 10k
	// events a second on one core.
	patience := 60*time.Second + time.Duration(events/5000)*time.Second
	const rate = 3000 // live events a second during the rebuild

	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := writeFile(t, "accounts.yaml", fmt.Sprintf(rebuildConfig, srv.URL()))
	p := loadPipeline(t, cfg, "accounts")
	prod := processor.NewProducer(c, "ledger", 4, 0)
	l := newLedger(1)
	began := time.Now()
	if err := l.produce(ctx, prod, events); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %d events in %v", events, time.Since(began).Round(time.Millisecond))

	worker := startEddy(t, "run", "-c", cfg, "--consumer", "w1")
	// Readers start once version 1 exists; the rebuild starts while eddy
	// run still works through the backlog.
	waitFor(t, 30*time.Second, "version 1 to hold some accounts", func() bool { return c.Exists(ctx, "account:a0").Val() == 1 })

	sample := make([]string, 0, 50)
	for i := 0; i < rebuildAccounts; i += rebuildAccounts / 50 {
		sample = append(sample, "a"+strconv.Itoa(i))
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readerDone := make(chan readerStats, 1)
	go func() { readerDone <- readModelReader(readCtx, c, sample) }()

	// The producer keeps adding events until told to stop, which is a
	// moment after the switch.
	prodCtx, stopProducing := context.WithCancel(ctx)
	var live atomic.Int64
	var prodErr error
	var prodWG sync.WaitGroup
	defer func() { stopProducing(); prodWG.Wait() }()
	prodWG.Add(1)
	go func() {
		defer prodWG.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-prodCtx.Done():
				return
			case <-tick.C:
			}
			if _, err := prod.Send(ctx, l.next(rate/10)); err != nil {
				prodErr = err
				return
			}
			live.Add(rate / 10)
		}
	}()

	var out lockedBuffer
	start := time.Now()
	rb := startEddyOut(t, &out, "rebuild", "-c", cfg, "--pipeline", "accounts", "--progress", "lines")
	code := rb.wait(t, patience)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("eddy rebuild exit = %d, want 0; output:\n%s\nlog:\n%s", code, out.String(), rb.stderr.String())
	}
	if v, err := processor.ReadVersion(ctx, c, "accounts"); err != nil || v != 2 {
		t.Fatalf("version after eddy rebuild = %d %v, want 2", v, err)
	}
	// Events keep arriving while eddy run follows the switch.
	waitFor(t, 20*time.Second, "eddy run to follow version 2", func() bool {
		return strings.Contains(worker.stderr.String(), "read_model_version_followed")
	})
	followed := live.Load()
	waitFor(t, 20*time.Second, "a second more of events after the follow", func() bool { return live.Load() >= followed+rate })
	stopProducing()
	prodWG.Wait()
	if prodErr != nil {
		t.Fatal(prodErr)
	}

	text := out.String()
	bars := progressLine.FindAllStringSubmatch(text, -1)
	if len(bars) == 0 {
		t.Errorf("eddy rebuild printed no progress line with a bar and a percentage:\n%s", text)
	}
	for _, want := range []string{"rebuilding accounts: version 2", "switched accounts to version 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("eddy rebuild output lacks %q:\n%s", want, text)
		}
	}
	if c.Exists(ctx, processor.RebuildKey("accounts")).Val() != 0 {
		t.Errorf("%s is still set after the switch", processor.RebuildKey("accounts"))
	}

	waitFor(t, patience, "version 2 to have processed every event", func() bool { return caughtUp(ctx, t, c, p, 2) })
	stopReading()
	rs := <-readerDone
	if rs.err != nil {
		t.Errorf("a reader saw the read model step back: %v", rs.err)
	}
	if rs.reads[1] == 0 || rs.reads[2] == 0 {
		t.Errorf("reads of version 1 = %d, of version 2 = %d; want both > 0", rs.reads[1], rs.reads[2])
	}
	if err := checkReadModel(ctx, c, processor.VersionPrefix(2), l); err != nil {
		t.Errorf("version 2: %v", err)
	}
	if !strings.Contains(worker.stderr.String(), `"to":2`) {
		t.Errorf("eddy run log does not say it moved to version 2:\n%s", worker.stderr.String())
	}
	replayed := int64(-1)
	if m := regexp.MustCompile(`switched accounts to version 2 in \S+: ([\d,]+) entries replayed`).FindStringSubmatch(text); m != nil {
		replayed, _ = strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
	}
	t.Logf("%d events up front, %d more while eddy rebuild ran and eddy run followed (%d/s); eddy rebuild took %v, replayed %d entries (%.0f entries/s); reads of version 1: %d, of version 2: %d, discarded (version changed during the read): %d, of which ahead of the next read: %d",
		events, live.Load(), rate, took.Round(time.Millisecond), replayed, float64(replayed)/took.Seconds(), rs.reads[1], rs.reads[2], rs.torn, rs.tornAhead)
	t.Logf("eddy rebuild said:\n%s", text)
	_ = worker.cmd.Process.Signal(syscall.SIGTERM)
	if code := worker.wait(t, 20*time.Second); code != 0 {
		t.Errorf("eddy run exit after SIGTERM = %d, want 0; log:\n%s", code, worker.stderr.String())
	}
}

// eddy rebuild refuses what it cannot rebuild and wants --pipeline; a
// rebuild that is interrupted leaves the version as it was and resumes
// when run again.
func TestRebuildRefusesAndResumes(t *testing.T) {
	refusals := []struct {
		name     string
		config   string
		args     []string
		wantCode int // 0: any non-zero
		want     string
	}{
		{
			name: "output step",
			config: `pipelines:
  - name: accounts
    input: {stream: ledger}
    key: account
    steps:
      - state: {hash: 'account:$key', incr: {entries: 1}}
      - output: {stream: "ledger:out"}
`,
			args: []string{"--pipeline", "accounts"},
			want: "steps[1] is output",
		},
		{
			name: "no state hash",
			config: `pipelines:
  - name: accounts
    input: {stream: ledger}
    key: account
    steps:
      - state: {name: counts, incr: {entries: 1}}
`,
			args: []string{"--pipeline", "accounts"},
			want: "no read model to rebuild",
		},
		{
			name: "no --pipeline",
			config: `pipelines:
  - name: accounts
    input: {stream: ledger}
    key: account
    steps:
      - state: {hash: 'account:$key', incr: {entries: 1}}
`,
			wantCode: 2,
			want:     "--pipeline is required",
		},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			// No Redis answers there: the refusal comes before any
			// connection.
			cfg := writeFile(t, "p.yaml", "redis: {url: redis://"+freeAddr(t)+"/0}\n"+tc.config)
			code, out, errOut := eddy(t, "", append([]string{"rebuild", "-c", cfg}, tc.args...)...)
			if code == 0 || tc.wantCode != 0 && code != tc.wantCode || !strings.Contains(errOut, tc.want) {
				t.Errorf("eddy rebuild %v = %d %q %q, want exit %d and %q", tc.args, code, out, errOut, tc.wantCode, tc.want)
			}
		})
	}

	t.Run("interrupted then resumed", func(t *testing.T) {
		const events = 100000
		srv := redistest.Start(t)
		c := srv.Client(t)
		ctx := context.Background()
		cfg := writeFile(t, "accounts.yaml", fmt.Sprintf(rebuildConfig, srv.URL()))
		p := loadPipeline(t, cfg, "accounts")
		l := newLedger(2)
		if err := l.produce(ctx, processor.NewProducer(c, "ledger", 4, 0), events); err != nil {
			t.Fatal(err)
		}
		var out lockedBuffer
		rb := startEddyOut(t, &out, "rebuild", "-c", cfg, "--pipeline", "accounts", "--progress", "lines")
		group := processor.VersionGroup("accounts", 2)
		read := func() (n int64) {
			for part := range 4 {
				gs, _ := c.XInfoGroups(ctx, processor.PartitionStream("ledger", part, 4)).Result()
				for _, g := range gs {
					if g.Name == group {
						n += g.EntriesRead
					}
				}
			}
			return n
		}
		// Interrupted a quarter of the way: the resumed rebuild must not
		// count again what the first one committed.
		waitFor(t, 30*time.Second, "the rebuild to have read a quarter of the entries", func() bool { return read() >= events/4 })
		_ = rb.cmd.Process.Signal(syscall.SIGINT)
		code := rb.wait(t, 20*time.Second)
		if at := read(); at >= events {
			t.Fatalf("the rebuild had read %d entries of %d when interrupted: want a larger backlog", at, events)
		}
		if code != 130 || !strings.Contains(out.String(), "stopped: version 2 is not switched to") {
			t.Errorf("eddy rebuild after SIGINT = exit %d, output:\n%s\nwant exit 130 and to say it stopped; log:\n%s", code, out.String(), rb.stderr.String())
		}
		if v, err := processor.ReadVersion(ctx, c, "accounts"); err != nil || v != 1 {
			t.Errorf("version after an interrupted rebuild = %d %v, want 1", v, err)
		}
		if got := c.Get(ctx, processor.RebuildKey("accounts")).Val(); got != "2" {
			t.Errorf("%s after an interrupted rebuild = %q, want 2", processor.RebuildKey("accounts"), got)
		}
		interrupted := read()

		var out2 lockedBuffer
		rb2 := startEddyOut(t, &out2, "rebuild", "-c", cfg, "--pipeline", "accounts", "--progress", "off")
		if code := rb2.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("second eddy rebuild exit = %d, want 0; output:\n%s\nlog:\n%s", code, out2.String(), rb2.stderr.String())
		}
		for _, want := range []string{"resuming the rebuild of accounts version 2", "switched accounts to version 2"} {
			if !strings.Contains(out2.String(), want) {
				t.Errorf("second eddy rebuild output lacks %q:\n%s", want, out2.String())
			}
		}
		if v, err := processor.ReadVersion(ctx, c, "accounts"); err != nil || v != 2 {
			t.Errorf("version after the resumed rebuild = %d %v, want 2", v, err)
		}
		if !caughtUp(ctx, t, c, p, 2) {
			t.Errorf("version 2's group has entries unread or pending after the switch")
		}
		if err := checkReadModel(ctx, c, processor.VersionPrefix(2), l); err != nil {
			t.Errorf("version 2: %v", err)
		}
		t.Logf("interrupted (exit %d) after %d of %d entries read; resumed:\n%s", code, interrupted, events, out2.String())
	})
}
