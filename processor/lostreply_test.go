package processor

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// lostReplyProxy stands between a client and a redis-server and, once
// armed, loses the reply to the next command that carries match: the
// server runs the command, and the connection is closed before its reply
// reaches the client, as when Redis shuts down right after a script.
// Only the connection that sent match loses a reply, so blocked reads,
// lease renewals and the rest on other pooled connections go through.
type lostReplyProxy struct {
	ln      net.Listener
	target  string
	match   []byte
	armed   atomic.Bool
	dropped atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startLostReplyProxy(tb testing.TB, target string, match []byte) *lostReplyProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &lostReplyProxy{ln: ln, target: target, match: match}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *lostReplyProxy) Addr() string { return p.ln.Addr().String() }

// arm makes the proxy lose the reply to the next command carrying match.
func (p *lostReplyProxy) arm() { p.armed.Store(true) }

func (p *lostReplyProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by the test's cleanup
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		var dropNext atomic.Bool
		p.wg.Add(2)
		go p.toServer(client, server, &dropNext)
		go p.toClient(client, server, &dropNext)
	}
}

// toServer copies the client's commands to the server. A command carrying
// match, sent while the proxy is armed, marks this connection to lose the
// next reply; the mark is set before the command is passed on, so before
// its reply can come back.
func (p *lostReplyProxy) toServer(client, server net.Conn, dropNext *atomic.Bool) {
	defer p.wg.Done()
	defer server.Close()
	buf := make([]byte, 64<<10)
	var tail []byte // the end of the last chunk, for a match cut in two
	for {
		n, err := client.Read(buf)
		if n > 0 {
			window := make([]byte, 0, len(tail)+n)
			window = append(append(window, tail...), buf[:n]...)
			if bytes.Contains(window, p.match) && p.armed.CompareAndSwap(true, false) {
				dropNext.Store(true)
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
			tail = append(tail[:0], window[max(0, len(window)-len(p.match)+1):]...)
		}
		if err != nil {
			return
		}
	}
}

// toClient copies the server's replies to the client, but for a marked
// connection closes both ends instead of passing the next reply on.
func (p *lostReplyProxy) toClient(client, server net.Conn, dropNext *atomic.Bool) {
	defer p.wg.Done()
	defer client.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if dropNext.CompareAndSwap(true, false) {
				p.dropped.Add(1)
				_ = server.Close()
				return
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A commit whose script ran but whose reply was lost is tried again, by
// go-redis (its own retries) or by the committer (once go-redis gives up,
// as when Redis restarts). The retry carries the commit's token and gets
// the lost try's reply back: the entry is processed, its effects stay in
// the key's cached state, and the key's next entry reads them. (It used to
// find the entry acked and take it for stale, dropping its effects from
// the cache while Redis held them: the next entry read a count one short
// and wrote it back.)
func TestCommitReplyLostKeepsState(t *testing.T) {
	cases := []struct {
		name string
		opts func(*Options)
	}{
		{"no dedupe", func(*Options) {}},
		{"dedupe at commit", func(o *Options) { o.DedupeWindow, o.DedupeAtCommit = time.Hour, true }},
		{"dedupe looked up", func(o *Options) { o.DedupeWindow = time.Hour }},
	}
	for _, tc := range cases {
		for _, byClient := range []bool{false, true} {
			name := tc.name + ", tried again by the committer"
			if byClient {
				name = tc.name + ", tried again by go-redis"
			}
			t.Run(name, func(t *testing.T) { testCommitReplyLost(t, tc.opts, byClient) })
		}
	}
}

func testCommitReplyLost(t *testing.T, opt func(*Options), byClient bool) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	// Loaded beforehand, the script runs on the first EVALSHA: a lost
	// NOSCRIPT reply would lose nothing that ran.
	if err := commitScript.Load(ctx, c).Err(); err != nil {
		t.Fatal(err)
	}
	px := startLostReplyProxy(t, srv.Addr(), []byte(commitScript.Hash()))
	// byClient: go-redis's own retries (MaxRetries 3 by default) send the
	// lost try again within one try of the committer. Else none: the
	// committer itself tries again, as when Redis is down for longer than
	// go-redis retries (a restart).
	ro := &redis.Options{Addr: px.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true}
	if byClient {
		ro.MaxRetries = 0
	}
	pc := redis.NewClient(ro)
	t.Cleanup(func() { _ = pc.Close() })

	var mu sync.Mutex
	reads := map[string][]int64{} // by dedupe id: the count each handling read
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		st, err := m.State("count")
		if err != nil {
			return err
		}
		n := st.Int("n")
		m.StateSet("count", "n", strconv.FormatInt(n+1, 10)) // read-modify-write
		mu.Lock()
		reads[m.DedupeID] = append(reads[m.DedupeID], n)
		mu.Unlock()
		return nil
	})
	var tries atomic.Int32 // commit attempts of the batch of k-0
	testHookBeforeCommit = func(batch []*task) {
		for _, tk := range batch {
			if tk.m.DedupeID == "k-0" {
				if tries.Add(1) == 1 {
					px.arm()
				}
				return
			}
		}
	}
	defer func() { testHookBeforeCommit = nil }()

	core, logs := observer.New(zap.InfoLevel)
	obs := &countingObserver{}
	o := Options{Pipeline: "t", Stream: "in", Decoder: jsonDecoder, Handler: h, Observer: obs,
		Logger: zap.New(core), StateNames: []string{"count"}, BatchSize: 1, Block: 50 * time.Millisecond}
	opt(&o)
	p, err := New(pc, o)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		}
	}
	defer stop()

	committed := func() int64 { return obs.processed.Load() + obs.stale.Load() + obs.duplicates.Load() }
	produce(t, c, 1, []Record{{Key: "k", Fields: []string{"data", event("k", 0)}}})
	waitFor(t, 30*time.Second, "k-0 committed", func() bool { return committed() >= 1 })
	// k-1 is read only now: it is handled with the cached state that k-0's
	// commit left.
	produce(t, c, 1, []Record{{Key: "k", Fields: []string{"data", event("k", 1)}}})
	waitFor(t, 30*time.Second, "k-1 committed", func() bool { return committed() >= 2 })
	stop()

	retrying := logs.FilterMessage("commit_failed_retrying").Len()
	mu.Lock()
	got0, got1 := slices.Clone(reads["k-0"]), slices.Clone(reads["k-1"])
	mu.Unlock()
	state, err := c.HGet(ctx, StateKey("in", 0, 1, "t", "count", "k"), "n").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	t.Logf("replies lost %d, tries of k-0's commit %d, commit_failed_retrying logs %d; reads k-0 %v, k-1 %v; state n=%s; processed %d, stale %d, duplicates %d",
		px.dropped.Load(), tries.Load(), retrying, got0, got1, state, obs.processed.Load(), obs.stale.Load(), obs.duplicates.Load())

	// The situation: the reply of k-0's first commit was lost and the
	// committer tried again.
	switch {
	case px.dropped.Load() != 1:
		t.Fatalf("replies lost %d, want 1", px.dropped.Load())
	case byClient && (tries.Load() != 1 || retrying != 0):
		t.Fatalf("tries of k-0's commit %d, retry logs %d; want go-redis to have tried again within the committer's one try", tries.Load(), retrying)
	case !byClient && (tries.Load() < 2 || retrying < 1):
		t.Fatalf("tries of k-0's commit %d, retry logs %d; want the committer to have tried again", tries.Load(), retrying)
	}
	if !slices.Equal(got0, []int64{0}) {
		t.Errorf("k-0 handled with counts %v, want once, with 0", got0)
	}
	if !slices.Equal(got1, []int64{1}) {
		t.Errorf("k-1 handled with counts %v, want once, with 1: k-0's effect, committed, was dropped from the cached state", got1)
	}
	if state != "2" {
		t.Errorf("state n = %q, want 2", state)
	}
	if obs.processed.Load() != 2 || obs.stale.Load() != 0 || obs.duplicates.Load() != 0 {
		t.Errorf("commits saw processed %d, stale %d, duplicates %d; want 2 processed (k-0's lost try was its own), none stale",
			obs.processed.Load(), obs.stale.Load(), obs.duplicates.Load())
	}
	if n := acked(t, c, 1); n != 2 {
		t.Errorf("acked %d entries, want 2", n)
	}
	if n := pendingCount(t, c, "in"); n != 0 {
		t.Errorf("%d entries pending, want none", n)
	}
	if n := xlen(t, c, "in:dlq"); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}
