package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redisurl"
)

// A URL of one server may name a node of a Redis Cluster. A single-server
// client of it gets MOVED for most keys: eddy status fails and eddy run
// idles. So openRedis asks the server first (clusterEnabled) and uses a
// node as a Cluster seed (clusterFromNode); when the server answers only
// later, ping and wait ask then (checkCluster) and fail with the URL form
// to use instead.

// clusterProbeTimeout bounds each question of clusterEnabled and
// clusterMasters.
const clusterProbeTimeout = 2 * time.Second

// clusterEnabled asks the server behind c whether it is a Redis Cluster
// node: CLUSTER INFO answers on a node and fails with ERR on any other
// server ("cluster support disabled", or a proxy's "unknown command"); for
// a user that may not run it, INFO cluster says cluster_enabled:1. (The
// ACL rules of docs/redis-acl.md allow CLUSTER INFO.) Its error, that of
// CLUSTER INFO, says it cannot tell: the server does not answer, refuses
// both (NOPERM), is not ready (LOADING, BUSY) or refuses the credentials.
func clusterEnabled(ctx context.Context, c *redis.Client) (bool, error) {
	err := c.ClusterInfo(ctx).Err()
	switch {
	case err == nil:
		return true, nil
	case isNoAnswer(err):
		return false, err
	case redis.HasErrorPrefix(err, "ERR"):
		return false, nil
	}
	info, ierr := c.Info(ctx, "cluster").Result()
	if ierr != nil {
		return false, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_enabled:"); ok {
			return v == "1", nil
		}
	}
	return false, nil
}

// isNoAnswer reports whether err is something other than a reply of
// Redis: no connection, a timeout, a TLS handshake that failed.
func isNoAnswer(err error) bool {
	var rerr redis.Error
	return !errors.As(err, &rerr)
}

// clusterFromNode returns a client of the Redis Cluster whose node opt
// names (c is a client of that node), with the node as its seed and opt's
// credentials, TLS and timeouts. It fails with the URL form to use when
// opt asks for a database other than 0, which a Cluster does not have.
func clusterFromNode(ctx context.Context, c *redis.Client, opt *redis.Options, rawURL string) (*redis.ClusterClient, error) {
	if opt.DB != 0 {
		return nil, usageError{fmt.Errorf("redis at %s is a Redis Cluster node, which has database 0 only, not %d: use %q "+
			"(--redis or EDDY_REDIS_URL; in the config, redis.addrs)", opt.Addr, opt.DB, redisurl.ClusterForm(rawURL, clusterMasters(ctx, c)))}
	}
	tlsConfig := opt.TLSConfig
	if tlsConfig != nil && !opt.TLSConfig.InsecureSkipVerify {
		// Each node is verified by its own address, unless a server name
		// was set (resolveRedis puts the URL's host there otherwise).
		host, _, _ := net.SplitHostPort(opt.Addr)
		if tlsConfig.ServerName == host {
			tlsConfig = tlsConfig.Clone()
			tlsConfig.ServerName = ""
		}
	}
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{opt.Addr},
		Username:              opt.Username,
		Password:              opt.Password,
		TLSConfig:             tlsConfig,
		ClientName:            opt.ClientName,
		Protocol:              opt.Protocol,
		MaxRetries:            opt.MaxRetries,
		MinRetryBackoff:       opt.MinRetryBackoff,
		MaxRetryBackoff:       opt.MaxRetryBackoff,
		DialTimeout:           opt.DialTimeout,
		ReadTimeout:           opt.ReadTimeout,
		WriteTimeout:          opt.WriteTimeout,
		PoolFIFO:              opt.PoolFIFO,
		PoolSize:              opt.PoolSize,
		PoolTimeout:           opt.PoolTimeout,
		MinIdleConns:          opt.MinIdleConns,
		MaxIdleConns:          opt.MaxIdleConns,
		MaxActiveConns:        opt.MaxActiveConns,
		ConnMaxIdleTime:       opt.ConnMaxIdleTime,
		ConnMaxLifetime:       opt.ConnMaxLifetime,
		ContextTimeoutEnabled: opt.ContextTimeoutEnabled,
	}), nil
}

// clusterMasters returns the addresses of the Cluster's masters other
// than the node c talks to (CLUSTER NODES, which every version answers),
// sorted, for the URL form an error gives; a placeholder when it cannot
// tell.
func clusterMasters(ctx context.Context, c *redis.Client) []string {
	ctx, cancel := context.WithTimeout(ctx, clusterProbeTimeout)
	defer cancel()
	nodes, err := c.ClusterNodes(ctx).Result()
	var out []string
	for line := range strings.Lines(nodes) {
		// <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		flags := strings.Split(f[2], ",")
		if !slices.Contains(flags, "master") || slices.Contains(flags, "myself") || slices.Contains(flags, "fail") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		out = append(out, addr)
	}
	if err != nil || len(out) == 0 {
		return []string{"HOST2:PORT2"}
	}
	slices.Sort(out)
	return out
}

// checkCluster asks the server of a URL that did not answer when openRedis
// asked, now that it does, whether it is a Redis Cluster node. If it is,
// the single-server client the engine already holds would get MOVED for
// most keys, so it fails with the URL form to use. If the server cannot
// tell, it goes on as openRedis does.
func (r *redisConn) checkCluster(ctx context.Context) error {
	opt := r.unchecked
	if opt == nil {
		return nil
	}
	r.unchecked = nil
	c := probeClient(opt)
	defer func() { _ = c.Close() }()
	pctx, cancel := context.WithTimeout(ctx, clusterProbeTimeout)
	defer cancel()
	if on, err := clusterEnabled(pctx, c); err != nil || !on {
		return nil
	}
	again := "run it again (the node is then used as a Cluster seed) or use"
	if opt.DB != 0 {
		again = "a Cluster has database 0 only: use"
	}
	return &hintError{permanent: true, err: fmt.Errorf("redis at %s is a Redis Cluster node, which eddy learnt only once it answered, "+
		"with a single-server client already set up; it stops rather than run workers that would get MOVED for most keys: %s %q "+
		"(--redis or EDDY_REDIS_URL; in the config, redis.addrs)", r.where, again, redisurl.ClusterForm(r.url, clusterMasters(ctx, c)))}
}

// probeClient is a client for the questions openRedis and checkCluster
// ask a server (clusterEnabled, clusterMasters): opt's address,
// credentials and TLS, but database 0 (a Cluster node refuses any other:
// its SELECT fails), one connection, one dial and no retries, so that a
// server that is down costs one failed dial. The caller closes it.
func probeClient(opt *redis.Options) *redis.Client {
	return redis.NewClient(&redis.Options{
		Network:               opt.Network,
		Addr:                  opt.Addr,
		Username:              opt.Username,
		Password:              opt.Password,
		TLSConfig:             opt.TLSConfig,
		Protocol:              opt.Protocol,
		DialTimeout:           opt.DialTimeout,
		DialerRetries:         1,
		MaxRetries:            -1,
		PoolSize:              1,
		ContextTimeoutEnabled: true,
	})
}
