package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

const chaosConfig = `http: {addr: off}
pipelines:
  - name: chaos
    input: {stream: ev, partitions: 8, payload: data}
    key: key
    dedupe: {id: id, window: 1h}
    group: {heartbeat: 250ms, session_timeout: 2s}
    shutdown_timeout: 2s
    steps:
      - output: {stream: "ev:out"}
`

// chaosPool runs and kills eddy worker processes.
type chaosPool struct {
	t       *testing.T
	url     string
	cfg     string
	mu      sync.Mutex
	workers map[string]*process
	next    int
}

func (c *chaosPool) start() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	name := fmt.Sprintf("w%d", c.next)
	c.workers[name] = startEddy(c.t, "--redis", c.url, "run", "-c", c.cfg, "--consumer", name)
	return name
}

func (c *chaosPool) pick(r *rand.Rand) (string, *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.workers))
	for n := range c.workers {
		names = append(names, n)
	}
	sort.Strings(names)
	n := names[r.IntN(len(names))]
	return n, c.workers[n]
}

// leaseOwners returns the owner of each of the 8 partitions' leases.
func leaseOwners(ctx context.Context, c *redis.Client) []string {
	out := make([]string, 8)
	for p := range out {
		v, _ := c.Get(ctx, fmt.Sprintf("{ev:%d}:eddy:lease:chaos", p)).Result()
		out[p], _, _ = strings.Cut(v, "/")
	}
	return out
}

// Issue 3's chaos test: 4 worker processes, 200,000 events over 2,000 keys
// with dedupe and one output, produced while every ~1.5s one worker is
// killed with SIGKILL (and a new one started), and once a worker is paused
// with SIGSTOP past its lease. An independent check of the output and
// dead-letter streams finds no event lost, none with two outputs and no key
// out of order; the paused worker's late work is fenced; every partition
// of a killed worker has a new owner within session_timeout + 2s.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: real processes, about a minute")
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	pool := &chaosPool{t: t, url: srv.URL(), cfg: writeFile(t, "chaos.yaml", chaosConfig), workers: map[string]*process{}}
	for i := 0; i < 4; i++ {
		pool.start()
	}

	const events, keys = 200000, 2000
	produced := make(chan error, 1)
	go func() { // about 10,000 events/s for 20s, while the chaos goes on
		prod := processor.NewProducer(c, "ev", 8, 0)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < events; {
			<-tick.C
			var recs []processor.Record
			for j := 0; j < 100 && i < events; j, i = j+1, i+1 {
				key := fmt.Sprintf("k%d", i%keys)
				data := fmt.Sprintf(`{"id":"e%d","key":%q,"seq":%d}`, i, key, i/keys)
				recs = append(recs, processor.Record{Key: key, Fields: []string{"data", data}})
			}
			if _, err := prod.Send(ctx, recs); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()

	r := rand.New(rand.NewPCG(1, 2))
	var (
		rmu       sync.Mutex
		rebalance []time.Duration
		measuring sync.WaitGroup
	)
	kills, paused := 0, ""
	var zombie *process
	status := ""
	deadline := time.Now().Add(3 * time.Minute)
	done := func() bool { return c.XLen(ctx, "ev:out").Val()+c.XLen(ctx, "ev:dlq").Val() >= events }
	for round := 0; !done(); round++ {
		if time.Now().After(deadline) {
			t.Fatalf("not done after 3 minutes: %d outputs", c.XLen(ctx, "ev:out").Val())
		}
		time.Sleep(1500 * time.Millisecond)
		if round == 2 && paused == "" { // once: a pause past the lease
			paused, zombie = pool.pick(r)
			_ = zombie.cmd.Process.Signal(syscall.SIGSTOP)
			go func(p *process) {
				time.Sleep(3500 * time.Millisecond) // session_timeout 2s + margin
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
			}(zombie)
			continue
		}
		if round == 1 {
			code, out, errOut := eddy(t, "", "--redis", srv.URL(), "status", "-c", pool.cfg, "--json")
			var st statusJSON
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Pipelines) != 1 || len(st.Pipelines[0].Partitions) != 8 {
				t.Errorf("eddy status --json = %d %q %q, want 8 partitions", code, out, errOut)
			}
			_, status, _ = eddy(t, "", "--redis", srv.URL(), "status", "-c", pool.cfg)
		}
		name, victim := pool.pick(r)
		if name == paused {
			continue
		}
		held := map[int]bool{}
		for p, o := range leaseOwners(ctx, c) {
			if o == name {
				held[p] = true
			}
		}
		killed := time.Now()
		_ = victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.wait(t, 5*time.Second)
		kills++
		pool.mu.Lock()
		delete(pool.workers, name)
		pool.mu.Unlock()
		pool.start() // a new worker, under a new name, as a restarted pod would be
		// Rebalance: until every partition the dead worker held has another owner.
		measuring.Add(1)
		go func() {
			defer measuring.Done()
			for len(held) > 0 && time.Since(killed) < 15*time.Second {
				own := leaseOwners(ctx, c)
				for p := range held {
					if own[p] != "" && own[p] != name {
						delete(held, p)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			rmu.Lock()
			rebalance = append(rebalance, time.Since(killed))
			rmu.Unlock()
		}()
	}
	measuring.Wait()
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	for _, p := range pool.workers {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for name, p := range pool.workers {
		if code := p.wait(t, 15*time.Second); code != 0 {
			t.Errorf("worker %s exit code %d after SIGTERM", name, code)
		}
	}

	// The independent check.
	seen := map[string]int{}
	seqs := map[string][]int{}
	start := "-"
	for {
		es := c.XRangeN(ctx, "ev:out", start, "+", 10000).Val()
		for _, e := range es {
			var v struct {
				Key string `json:"key"`
				Seq int    `json:"seq"`
			}
			_ = json.Unmarshal([]byte(e.Values["data"].(string)), &v)
			seen[e.Values["id"].(string)]++
			seqs[v.Key] = append(seqs[v.Key], v.Seq)
		}
		if len(es) < 10000 {
			break
		}
		start = "(" + es[len(es)-1].ID
	}
	dead := c.XLen(ctx, "ev:dlq").Val()
	lost, doubled, reordered := 0, 0, 0
	for i := 0; i < events; i++ {
		switch n := seen[fmt.Sprintf("e%d", i)]; {
		case n == 0:
			lost++
		case n > 1:
			doubled++
		}
	}
	for _, s := range seqs {
		for i := 1; i < len(s); i++ {
			if s[i] <= s[i-1] {
				reordered++
			}
		}
	}
	sort.Slice(rebalance, func(i, j int) bool { return rebalance[i] < rebalance[j] })
	var median, worst time.Duration
	if len(rebalance) > 0 {
		median, worst = rebalance[len(rebalance)/2], rebalance[len(rebalance)-1]
	}
	zlog := zombie.stderr.String()
	fenced := strings.Count(zlog, "commit_fenced")
	t.Logf("chaos: %d events, %d kills, 1 pause; rebalance median %v max %v; lost %d, doubled %d, reordered %d, dead letters %d; paused worker %s: lease lost %v, fenced commits %d",
		events, kills, median.Round(time.Millisecond), worst.Round(time.Millisecond), lost-int(dead), doubled, reordered, dead,
		paused, strings.Contains(zlog, "partition_lease_lost"), fenced)
	t.Logf("eddy status during the chaos:\n%s", status)
	if lost-int(dead) != 0 || doubled != 0 || reordered != 0 || dead != 0 {
		t.Errorf("lost %d, doubled %d, reordered %d, dead letters %d; want all 0", lost-int(dead), doubled, reordered, dead)
	}
	if kills < 5 {
		t.Errorf("only %d kills happened", kills)
	}
	if worst > 4*time.Second {
		t.Errorf("rebalance max %v, want within session_timeout (2s) + 2s", worst)
	}
	if !strings.Contains(zlog, "partition_lease_lost") {
		t.Errorf("the paused worker never found its lease lost; log:\n%s", zlog)
	}
}
