package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
)

// redisConn is the client every command uses, and what closes it.
type redisConn struct {
	client   redis.UniversalClient
	where    string // for logs: the address, or "embedded"
	embedded bool
	close    func()
}

// openRedis connects to --redis if given, else to the config's redis
// section; with neither, it starts an embedded in-memory Redis (miniredis)
// so that Eddy can be tried without a server. minReadTimeout keeps blocking
// reads (XREADGROUP BLOCK) from hitting the client's read timeout;
// partitions is how many partitions the process reads: each holds a
// connection during its blocking read, so the pool gets that many on top of
// the default. It is where every command opens Redis, so it is also where
// go-redis's own messages are sent to log (useRedisLogger).
func openRedis(ctx context.Context, g *globals, f *pipelines.File, minReadTimeout time.Duration, partitions int, log *zap.Logger) (*redisConn, error) {
	useRedisLogger(log)
	readTimeout := max(5*time.Second, minReadTimeout)
	poolSize := 10*runtime.GOMAXPROCS(0) + 2*partitions
	switch {
	case strings.Contains(g.redisURL, "addr="):
		// redis://host:port?addr=host2:port2&addr=…: Redis Cluster seeds.
		opt, err := redis.ParseClusterURL(g.redisURL)
		if err != nil {
			return nil, usageError{fmt.Errorf("redis cluster url %q: %w", g.redisURL, err)}
		}
		opt.ReadTimeout, opt.PoolSize, opt.ContextTimeoutEnabled = readTimeout, poolSize, true
		c := redis.NewClusterClient(opt)
		return &redisConn{client: c, where: fmt.Sprint(opt.Addrs), close: func() { _ = c.Close() }}, nil
	case g.redisURL != "" || (f.Redis != nil && f.Redis.URL != ""):
		url := g.redisURL
		if url == "" {
			url = f.Redis.URL
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, usageError{fmt.Errorf("redis url %q: %w", url, err)}
		}
		opt.ReadTimeout, opt.PoolSize = readTimeout, poolSize
		opt.ContextTimeoutEnabled = true // lets the engine's hard stop bound calls to a hung Redis
		c := redis.NewClient(opt)
		return &redisConn{client: c, where: opt.Addr, close: func() { _ = c.Close() }}, nil
	case f.Redis != nil && len(f.Redis.Addrs) > 0:
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: f.Redis.Addrs, ReadTimeout: readTimeout, PoolSize: poolSize, ContextTimeoutEnabled: true})
		return &redisConn{client: c, where: fmt.Sprint(f.Redis.Addrs), close: func() { _ = c.Close() }}, nil
	default:
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return nil, fmt.Errorf("start embedded redis: %w", err)
		}
		c := redis.NewClient(&redis.Options{Addr: mr.Addr(), ReadTimeout: readTimeout, PoolSize: poolSize, ContextTimeoutEnabled: true})
		log.Warn("embedded_redis_in_memory_only",
			zap.String("note", "no redis in the config and no --redis flag: using an embedded in-memory Redis; all data is lost when eddy exits"),
			zap.String("addr", mr.Addr()))
		return &redisConn{client: c, where: "embedded", embedded: true, close: func() { _ = c.Close(); mr.Close() }}, nil
	}
}

// ping waits until Redis answers, so that a wrong address fails fast with a
// clear error instead of a stream of retries.
func (r *redisConn) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s does not answer: %w", r.where, err)
	}
	return nil
}
