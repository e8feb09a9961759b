package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// setPairScript sets two keys, which must share a slot in a cluster.
//
//	KEYS[1], KEYS[2]: the keys
//	ARGV[1], ARGV[2]: their values
//	returns: 2
var setPairScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 2
`)

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("StartCluster(t, 3) took %v", time.Since(start).Round(time.Millisecond))

	addrs := c.Addrs()
	if len(addrs) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("Addrs() = %v, %d Nodes(), want 3 of each", addrs, len(c.Nodes()))
	}
	nodes := make(map[string]*redis.Client) // by address
	for i, s := range c.Nodes() {
		if s.Addr() != addrs[i] {
			t.Errorf("Nodes()[%d].Addr() = %s, want Addrs()[%d] = %s", i, s.Addr(), i, addrs[i])
		}
		port := s.Addr()[strings.LastIndexByte(s.Addr(), ':')+1:]
		if p, _ := strconv.Atoi(port); p > maxClusterPort {
			t.Errorf("node port %d > %d: its cluster bus port would be out of range", p, maxClusterPort)
		}
		nodes[s.Addr()] = s.Client(t)
	}
	if len(nodes) != 3 {
		t.Fatalf("Addrs() = %v, want 3 different addresses", addrs)
	}
	rdb := c.Client(t)

	t.Run("keys spread over masters", func(t *testing.T) {
		holders := make(map[string]int) // node address -> keys it holds
		for i := range 20 {
			key := fmt.Sprintf("spread:%d", i)
			if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
				t.Fatalf("SET %s = %v", key, err)
			}
			if got, err := rdb.Get(ctx, key).Int(); err != nil || got != i {
				t.Fatalf("GET %s = %d, %v, want %d, nil", key, got, err, i)
			}
			slot, err := rdb.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT %s = %v", key, err)
			}
			var holder []string // nodes that store a key in slot: exactly one, its master
			for addr, node := range nodes {
				n, err := node.ClusterCountKeysInSlot(ctx, int(slot)).Result()
				if err != nil {
					t.Fatalf("CLUSTER COUNTKEYSINSLOT %d on %s = %v", slot, addr, err)
				}
				if n > 0 {
					holder = append(holder, addr)
				}
			}
			if len(holder) != 1 {
				t.Fatalf("nodes holding slot %d of %s = %v, want exactly one", slot, key, holder)
			}
			holders[holder[0]]++
		}
		if len(holders) < 2 {
			t.Errorf("20 keys landed on nodes %v, want at least 2 different ones", holders)
		}
	})

	t.Run("script on one slot", func(t *testing.T) {
		keys := []string{"{pair}a", "{pair}b"}
		if err := setPairScript.Run(ctx, rdb, keys, "1", "2").Err(); err != nil {
			t.Fatalf("script on %v = %v, want nil", keys, err)
		}
		for i, key := range keys {
			if got, err := rdb.Get(ctx, key).Result(); err != nil || got != strconv.Itoa(i+1) {
				t.Errorf("GET %s after the script = %q, %v, want %q", key, got, err, strconv.Itoa(i+1))
			}
		}
	})

	t.Run("script across slots", func(t *testing.T) {
		keys := []string{"cross:a", "cross:b"}
		a, errA := rdb.ClusterKeySlot(ctx, keys[0]).Result()
		b, errB := rdb.ClusterKeySlot(ctx, keys[1]).Result()
		if errA != nil || errB != nil || a == b {
			t.Fatalf("slots of %v = %d, %d (%v, %v), want two different slots", keys, a, b, errA, errB)
		}
		err := setPairScript.Run(ctx, rdb, keys, "1", "2").Err()
		if !redis.HasErrorPrefix(err, "CROSSSLOT") {
			t.Fatalf("script on %v = %v, want a CROSSSLOT error", keys, err)
		}
		if err := rdb.Get(ctx, keys[0]).Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET %s after the rejected script = %v, want redis.Nil", keys[0], err)
		}
	})

	t.Run("stream consumer group", func(t *testing.T) {
		const stream, group = "{orders}stream", "workers"
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"n", "1"}}).Result()
		if err != nil {
			t.Fatalf("XADD = %v", err)
		}
		if err := rdb.XGroupCreate(ctx, stream, group, "0").Err(); err != nil {
			t.Fatalf("XGROUP CREATE = %v", err)
		}
		if err := rdb.XGroupCreate(ctx, stream, group, "0").Err(); !redis.HasErrorPrefix(err, "BUSYGROUP") {
			t.Errorf("second XGROUP CREATE = %v, want BUSYGROUP", err)
		}
		got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    group,
			Consumer: "c1",
			Streams:  []string{stream, ">"},
			Count:    10,
			Block:    time.Second,
		}).Result()
		if err != nil {
			t.Fatalf("XREADGROUP = %v", err)
		}
		if len(got) != 1 || len(got[0].Messages) != 1 || got[0].Messages[0].ID != id || got[0].Messages[0].Values["n"] != "1" {
			t.Fatalf("XREADGROUP = %+v, want the one entry %s with n=1", got, id)
		}
		if n, err := rdb.XAck(ctx, stream, group, id).Result(); err != nil || n != 1 {
			t.Errorf("XACK %s = %d, %v, want 1, nil", id, n, err)
		}
	})

	t.Run("restarted node rejoins", func(t *testing.T) { // last: it loses the node's keys
		node := c.Nodes()[0]
		node.Kill()
		node.Restart(t)
		if err := c.waitReady(ctx); err != nil {
			t.Fatalf("cluster after Kill and Restart of %s: %v", node.Addr(), err)
		}
	})
}

func TestFreeClusterPort(t *testing.T) {
	t.Parallel()
	for range 20 {
		port, err := freeClusterPort()
		if err != nil {
			t.Fatalf("freeClusterPort() = %v", err)
		}
		if port > maxClusterPort {
			t.Fatalf("freeClusterPort() = %d, want at most %d", port, maxClusterPort)
		}
	}
}

func TestClusterHealthy(t *testing.T) {
	t.Parallel()
	ok := "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:3\r\n"
	tests := []struct {
		info string
		want string // in the error; "" for none
	}{
		{ok, ""},
		{strings.Replace(ok, "state:ok", "state:fail", 1), "cluster_state:fail"},
		{strings.Replace(ok, "16384", "10923", 1), "cluster_slots_assigned:10923"},
		{strings.Replace(ok, "nodes:3", "nodes:2", 1), "cluster_known_nodes:2"},
		{"", "cluster_state:,"},
	}
	for _, tt := range tests {
		err := clusterHealthy(tt.info, 3)
		if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want))) {
			t.Errorf("clusterHealthy(%q, 3) = %v, want an error containing %q", tt.info, err, tt.want)
		}
	}
}

func TestClusterInfoWithoutClusterSupport(t *testing.T) {
	t.Parallel()
	s := Start(t)
	info, err := clusterInfo(testCtx(t), s.Addr(), nil)
	if err == nil || !strings.Contains(err.Error(), "cluster support disabled") {
		t.Errorf("clusterInfo on a server without --cluster-enabled = %q, %v, want the server's error", info, err)
	}
}

func TestStartClusterTooFewMasters(t *testing.T) {
	t.Parallel()
	msg := fatalOf(t, func(tb testing.TB) { StartCluster(tb, 2) })
	if !strings.Contains(msg, "at least 3 masters") {
		t.Errorf("StartCluster(t, 2) failed with %q, want it to ask for at least 3 masters", msg)
	}
}

func TestStartClusterWithoutRedisCli(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH")
	}
	dir := t.TempDir()
	if err := os.Symlink(server, filepath.Join(dir, "redis-server")); err != nil {
		t.Fatalf("symlink redis-server = %v", err)
	}
	t.Setenv("PATH", dir) // not parallel: Setenv changes the whole process
	msg := fatalOf(t, func(tb testing.TB) { StartCluster(tb, 3) })
	if !strings.Contains(msg, "redis-cli not found") || !strings.Contains(msg, "apt-get install") {
		t.Errorf("StartCluster without redis-cli on PATH failed with %q, want it to say how to install it", msg)
	}
}

func TestClusterCreateFailureQuotesOutput(t *testing.T) {
	t.Parallel()
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(unusedPort(t)))
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not on PATH")
	}
	err = createCluster(testCtx(t), cli, addrs)
	if err == nil || !strings.Contains(err.Error(), "--- output ---") || !strings.Contains(err.Error(), addrs[0]) {
		t.Errorf("create on nodes that are not running = %v, want an error quoting redis-cli's output", err)
	}
}

// unusedPort returns a loopback port that nothing listens on (as far as the
// test can tell: it was free a moment ago).
func unusedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen = %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// fatalOf runs f with a TB whose Fatal is recorded, and returns the message
// f failed with ("" if it did not fail).
func fatalOf(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // fatalRecorder panics to stop f, as FailNow would
		f(ft)
	}()
	<-done
	return ft.msg
}
