package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Done-when 3: a plain URL of a Cluster node. eddy status, produce and run
// use it as a Cluster seed and say so; run processes every event (no idle
// worker getting MOVED). A URL with a database other than 0, which a
// Cluster lacks, fails with the ?addr= form to use; so does a node that
// answers only after eddy run set up its client (checkCluster).
func TestClusterNodeURL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a 3-master Redis Cluster")
	}
	cl := redistest.StartCluster(t, 3)
	addrs := cl.Addrs()
	node := "redis://" + addrs[0] + "/0"
	cfg := writeFile(t, "p.yaml", `http: {addr: off}
pipelines:
  - name: detect
    input: {stream: din, partitions: 4, payload: data}
    key: k
    steps:
      - output: {stream: "dout"}
`)
	inConfig := writeFile(t, "c.yaml", "redis: {url: '"+node+"'}\n"+`http: {addr: off}
pipelines:
  - name: detect
    input: {stream: din, partitions: 4, payload: data}
    key: k
    steps:
      - output: {stream: "dout"}
`)
	const detected = `"msg":"redis_cluster_detected"`

	t.Run("status", func(t *testing.T) {
		for _, args := range [][]string{{"--redis", node, "status", "-c", cfg}, {"status", "-c", inConfig}} {
			code, out, errOut := binRun(t, nil, "", 30*time.Second, args...)
			if code != 0 || !strings.Contains(out, "pipeline detect") || !strings.Contains(errOut, detected) || strings.Contains(errOut, "MOVED") {
				t.Errorf("eddy %v = %d %q %q, want 0, the status and redis_cluster_detected", args, code, out, errOut)
			}
		}
	})

	t.Run("produce and run", func(t *testing.T) {
		const n = 400
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, `{"k":"k%d","n":%d}`+"\n", i%40, i)
		}
		code, out, errOut := binRun(t, nil, in.String(), 30*time.Second, "--redis", node, "produce", "-c", cfg)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("produced %d events", n)) {
			t.Fatalf("eddy produce to a node URL = %d %q %q", code, out, errOut)
		}
		p := startEddy(t, "--redis", node, "run", "-c", cfg, "--consumer", "w1")
		c := cl.Client(t)
		waitFor(t, 60*time.Second, "every output", func() bool { return c.XLen(t.Context(), "dout").Val() >= n })
		stopEddy(t, p)
		log := p.stderr.String()
		if !strings.Contains(log, detected) || strings.Contains(log, "MOVED") {
			t.Errorf("eddy run log lacks redis_cluster_detected or has MOVED:\n%s", log)
		}
		if got := c.XLen(t.Context(), "dout").Val(); got != n {
			t.Errorf("outputs = %d, want %d", got, n)
		}
	})

	others := append([]string(nil), addrs[1:]...)
	sort.Strings(others)
	form := "redis://" + addrs[0] + "?addr=" + others[0] + "&addr=" + others[1]

	t.Run("database other than 0", func(t *testing.T) {
		for _, command := range []string{"status", "run"} {
			code, _, errOut := binRun(t, nil, "", 30*time.Second, "--redis", "redis://"+addrs[0]+"/1", command, "-c", cfg)
			if code != 2 || !strings.Contains(errOut, "database 0 only") || !strings.Contains(errOut, form) {
				t.Errorf("eddy %s with /1 on a Cluster node = %d %q, want 2 and %s", command, code, errOut, form)
			}
		}
	})

	t.Run("answers late", func(t *testing.T) {
		for _, db := range []int{0, 1} {
			opt := &redis.Options{Addr: addrs[0], DB: db, MaxRetries: -1}
			c := redis.NewClient(opt)
			t.Cleanup(func() { _ = c.Close() })
			for _, check := range []func(*redisConn) error{
				func(conn *redisConn) error { return conn.ping(t.Context()) },
				func(conn *redisConn) error { return conn.wait(t.Context(), redisWait{}) },
			} {
				conn := &redisConn{client: c, where: addrs[0], unchecked: opt, url: fmt.Sprintf("redis://%s/%d", addrs[0], db)}
				err := check(conn)
				if err == nil || !strings.Contains(err.Error(), "Redis Cluster node") || !strings.Contains(err.Error(), form) || redisWaitable(err) {
					t.Errorf("db %d: ping or wait on a Cluster node found late = %v, want a permanent error with %s", db, err, form)
				}
			}
		}
	})
}
