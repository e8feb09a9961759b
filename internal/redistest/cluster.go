package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

const (
	// minClusterMasters is the fewest masters redis-cli --cluster create accepts.
	minClusterMasters = 3
	// clusterSlots is the number of hash slots of a Redis Cluster.
	clusterSlots = 16384
	// clusterNodeTimeout is each node's --cluster-node-timeout, in milliseconds.
	clusterNodeTimeout = "2000"
	// clusterBusOffset is how far above its data port a node's cluster bus
	// listens; Redis fixes it.
	clusterBusOffset = 10000
	// maxClusterPort is the highest data port whose bus port is a valid port.
	maxClusterPort = 65535 - clusterBusOffset
	// clusterPortProbes bounds the search for a data port whose bus port is
	// free too.
	clusterPortProbes = 100
	// clusterPortAttempts is how many such ports startClusterNode tries when
	// another process takes the one picked before the node binds it.
	clusterPortAttempts = 5
	// createTimeout bounds redis-cli --cluster create.
	createTimeout = 30 * time.Second
	// clusterReadyTimeout bounds the wait, after create, until every node
	// reports a healthy cluster and a client can use it.
	clusterReadyTimeout = 20 * time.Second
	// clusterLogTailLines is how much of each node's log a cluster error quotes.
	clusterLogTailLines = 15
)

// readyKeys are written and read back through a ClusterClient before
// StartCluster returns; their hash tags put them in different slots.
var readyKeys = []string{"{a}x", "{b}x", "{c}x"}

// Cluster is a Redis Cluster of masters without replicas, started by
// StartCluster. Each node is a Server, so a test can Kill or Restart one;
// a restarted node keeps its cluster config file and rejoins with its slots
// but without its keys (persistence is off).
type Cluster struct {
	nodes []*Server
	tls   *tls.Config // clients' TLS configuration; nil without TLS
}

// ClusterOptions say how StartClusterWith starts a cluster.
type ClusterOptions struct {
	// Masters is the number of masters, at least 3.
	Masters int
	// TLS, when set, makes every node speak TLS only, the cluster bus
	// included (--tls-cluster yes), with the server certificate of these
	// Certs; redis-cli, the readiness checks and Client use TLS with their
	// client certificate. Default (nil): no TLS.
	TLS *Certs
	// AuthClients makes the nodes require client certificates
	// (--tls-auth-clients yes); only with TLS.
	AuthClients bool
}

// StartCluster starts a Redis Cluster of n masters (no replicas) on free
// loopback ports. Each node is a redis-server with --cluster-enabled yes,
// --cluster-node-timeout 2000 and a cluster config file in its own data
// directory; the nodes are joined with redis-cli --cluster create (bounded
// by 30s). StartCluster returns once, within 20s, every node's CLUSTER INFO
// says cluster_state:ok with all 16384 slots assigned and every node known,
// and a ClusterClient can SET and GET keys in several slots; the cluster
// holds no keys then. The nodes are stopped when the test ends, as Start's
// servers are.
//
// StartCluster fails the test if n is less than 3, if redis-server or
// redis-cli is not on PATH, or if the cluster does not form in time; the
// failure quotes redis-cli's output or the end of each node's log.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, ClusterOptions{Masters: n})
}

// StartClusterWith starts a Redis Cluster as StartCluster does, with TLS
// if o.TLS says so; then Client speaks TLS, and so must every client of
// the nodes (rediss://, trusting o.TLS.CAFile).
func StartClusterWith(tb testing.TB, o ClusterOptions) *Cluster {
	tb.Helper()
	n := o.Masters
	if n < minClusterMasters {
		tb.Fatalf("redistest: StartCluster(%d): a Redis Cluster needs at least %d masters", n, minClusterMasters)
	}
	var serverTLS *redisserver.TLS
	var cliTLS []string
	if o.TLS != nil {
		serverTLS = o.TLS.ServerTLS(tb, o.AuthClients)
		cliTLS = []string{"--tls", "--cacert", o.TLS.CAFile, "--cert", o.TLS.ClientCertFile, "--key", o.TLS.ClientKeyFile}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redistest: %v — .ci/run does", redisserver.ErrNotFound)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatal("redistest: redis-cli not found; install it (apt-get install -y redis-tools, which redis-server pulls in) — .ci/run does")
	}
	c := &Cluster{nodes: make([]*Server, n)}
	if serverTLS != nil {
		c.tls = serverTLS.Client
	}
	for i := range c.nodes {
		c.nodes[i] = startClusterNode(tb, bin, serverTLS)
	}
	if err := createCluster(tb.Context(), cli, c.Addrs(), cliTLS...); err != nil {
		tb.Fatalf("redistest: create cluster: %v", err)
	}
	if err := c.waitReady(tb.Context()); err != nil {
		tb.Fatalf("redistest: cluster not ready: %v", err)
	}
	return c
}

// Addrs is the "host:port" of each master, in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes are the cluster's redis-server processes, one per master.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Client returns a new client of the cluster, closed when the test ends.
// Its commands honour their context's deadline (ContextTimeoutEnabled).
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rdb := c.newClient()
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newClient returns a client of the cluster that the caller closes.
func (c *Cluster) newClient() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		TLSConfig:             c.tls,
		ContextTimeoutEnabled: true,
	})
}

// startClusterNode starts one cluster node as Start starts a server, but on
// a port low enough for its cluster bus (port+10000) and with that bus port
// free too: Start's kernel-chosen port may be neither. Like Start, it tries
// another port when the one picked is taken before the node binds it (a
// taken bus port is logged as "Address already in use" too).
func startClusterNode(tb testing.TB, bin string, tlsOpt *redisserver.TLS) *Server {
	tb.Helper()
	dir := tb.TempDir() // removed after the node is stopped: cleanups run last-in first-out
	for attempt := 1; ; attempt++ {
		port, err := freeClusterPort()
		if err != nil {
			tb.Fatalf("redistest: find a free port: %v", err)
		}
		srv, err := redisserver.Start(tb.Context(), redisserver.Options{
			Bin:  bin,
			Dir:  dir,
			Port: port,
			Args: []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", clusterNodeTimeout,
			},
			TLS: tlsOpt,
		})
		if err == nil {
			s := &Server{srv: srv}
			tb.Cleanup(s.stop)
			return s
		}
		if !errors.Is(err, redisserver.ErrPortInUse) || attempt == clusterPortAttempts {
			tb.Fatalf("redistest: start cluster node: %v", err)
		}
	}
}

// freeClusterPort asks the kernel for free loopback ports until it gets one,
// p, with p <= 55535 and p+10000 free as well. As with freePort, another
// process may take either before redis-server binds them.
func freeClusterPort() (int, error) {
	var held []net.Listener // kept open so that the kernel offers a new port each time
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range clusterPortProbes {
		l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe, closed on return
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
		}
		if addr.Port > maxClusterPort {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port+clusterBusOffset))) //nolint:noctx // a port probe
		if err != nil {
			continue
		}
		_ = bus.Close()
		return addr.Port, nil
	}
	return 0, fmt.Errorf("no free port p <= %d with p+%d free in %d tries", maxClusterPort, clusterBusOffset, clusterPortProbes)
}

// createCluster joins the nodes at addrs into a cluster with redis-cli
// --cluster create, spreading the slots over them. tlsArgs are redis-cli's
// TLS options (--tls --cacert …) for nodes with TLS.
func createCluster(ctx context.Context, cli string, addrs []string, tlsArgs ...string) error {
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	args := append(append(slices.Clone(tlsArgs), "--cluster", "create"), addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = append(os.Environ(), "TERM=dumb") // no colour escapes in the output we quote
	redisserver.Detach(cmd)                     // dies with the test binary; CommandContext kills the process itself on timeout
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (after %v)", ctx.Err(), createTimeout)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w\n--- output ---\n%s", cli, strings.Join(args, " "), err, bytes.TrimRight(out, "\n"))
	}
	return nil
}

// waitReady polls until every node reports a healthy cluster that knows all
// nodes and a ClusterClient can write and read keys in several slots, or
// until clusterReadyTimeout passes. Its error quotes what each node last
// said and the end of its log.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	rdb := c.newClient()
	defer func() { _ = rdb.Close() }()

	start := time.Now()
	infos := make([]string, len(c.nodes)) // the latest CLUSTER INFO of each node, for the error
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.ready(ctx, rdb, infos)
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil { // not the deadline cutting a check short
			last = err
		}
		select {
		case <-ctx.Done():
			return c.notReadyError(time.Since(start), last, infos)
		case <-tick.C:
		}
	}
}

// ready makes one check of the whole cluster. It asks every node for
// CLUSTER INFO, recording each answer in infos, before it returns the first
// problem.
func (c *Cluster) ready(ctx context.Context, rdb *redis.ClusterClient, infos []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second) // one slow node must not use up the whole wait
	defer cancel()
	var first error
	for i, s := range c.nodes {
		info, err := clusterInfo(ctx, s.Addr(), c.tls)
		if err == nil {
			infos[i] = info
			err = clusterHealthy(info, len(c.nodes))
		} else if ctx.Err() == nil {
			infos[i] = "(CLUSTER INFO failed: " + err.Error() + ")"
		}
		if err != nil && first == nil {
			first = fmt.Errorf("node %s: %w", s.Addr(), err)
		}
	}
	if first != nil {
		return first
	}
	for _, key := range readyKeys {
		if err := rdb.Set(ctx, key, key, 0).Err(); err != nil {
			return fmt.Errorf("SET %s through a cluster client: %w", key, err)
		}
		got, err := rdb.Get(ctx, key).Result()
		if err != nil {
			return fmt.Errorf("GET %s through a cluster client: %w", key, err)
		}
		if got != key {
			return fmt.Errorf("GET %s through a cluster client = %q, want %q", key, got, key)
		}
		if err := rdb.Del(ctx, key).Err(); err != nil {
			return fmt.Errorf("DEL %s through a cluster client: %w", key, err)
		}
	}
	return nil
}

// clusterInfo sends CLUSTER INFO over a new connection (TLS with cfg,
// when not nil) and returns the reply. Like ping, it speaks RESP itself, so
// that a node that is down gives an error rather than a stream of go-redis
// pool logs while we poll.
func clusterInfo(ctx context.Context, addr string, cfg *tls.Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	conn, err := redisserver.Dial(ctx, addr, cfg)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte("*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	n, err := strconv.Atoi(strings.TrimPrefix(line, "$"))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return "", fmt.Errorf("CLUSTER INFO answered %q", line) // e.g. -ERR This instance has cluster support disabled
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body), nil
}

// clusterHealthy checks a node's CLUSTER INFO: state ok, all slots assigned
// and n nodes known.
func clusterHealthy(info string, n int) error {
	fields := make(map[string]string)
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	want := [][2]string{
		{"cluster_state", "ok"},
		{"cluster_slots_assigned", strconv.Itoa(clusterSlots)},
		{"cluster_known_nodes", strconv.Itoa(n)},
	}
	for _, kv := range want {
		if got := fields[kv[0]]; got != kv[1] {
			return fmt.Errorf("CLUSTER INFO says %s:%s, want %s", kv[0], got, kv[1])
		}
	}
	return nil
}

// notReadyError describes a cluster that did not become ready: the last
// check's error, then each node's last CLUSTER INFO and the end of its log.
func (c *Cluster) notReadyError(waited time.Duration, last error, infos []string) error {
	var b strings.Builder
	for i, s := range c.nodes {
		fmt.Fprintf(&b, "\n--- %s: CLUSTER INFO ---\n%s", s.Addr(), strings.TrimSpace(infos[i]))
		fmt.Fprintf(&b, "\n--- end of %s ---\n%s", s.srv.LogPath(), s.srv.LogTail(clusterLogTailLines))
	}
	return fmt.Errorf("not ready after %v: %w%s", waited.Round(time.Millisecond), last, b.String())
}
