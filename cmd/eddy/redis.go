package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
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

// pingTimeout bounds one PING of ping and of each attempt of wait.
const pingTimeout = 5 * time.Second

// ping checks once that Redis answers, so that a wrong address fails fast
// with a clear error instead of a stream of retries.
func (r *redisConn) ping(ctx context.Context) error {
	if err := r.pingOnce(ctx); err != nil {
		return fmt.Errorf("redis at %s does not answer: %w", r.where, err)
	}
	return nil
}

func (r *redisConn) pingOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return r.client.Ping(ctx).Err()
}

const (
	// defaultRedisWait is the default of eddy run --redis-wait.
	defaultRedisWait = 2 * time.Minute
	// redisRetryFirst and redisRetryMax bound the pause between attempts
	// of wait: it starts at 100ms and doubles up to 5s.
	redisRetryFirst = 100 * time.Millisecond
	redisRetryMax   = 5 * time.Second
	// redisWaitLogEvery is how often wait logs a failure that says what
	// the last one logged said.
	redisWaitLogEvery = 15 * time.Second
)

// redisWait says how wait waits. The zero value makes one attempt.
type redisWait struct {
	// limit is how long to keep trying, from the first attempt; 0 tries once.
	limit time.Duration
	// log gets redis_unavailable_waiting for the first failure, for each
	// one that says something new, and for the others at most once every
	// 15s; then redis_available. Nil logs nothing.
	log *zap.Logger
	// failed, if not nil, is called with each failure that wait will
	// wait out (for /readyz to say why it is not ready).
	failed func(error)
	// clock times the pauses; nil is the system clock.
	clock processor.Clock
}

// wait pings Redis until it answers, for eddy run, which may start before
// its Redis does (a compose stack, a supervisor) or while Redis is still
// loading its dataset. Between attempts it pauses 100ms, doubling up to 5s,
// for at most w.limit in all (then one last attempt). It returns nil once
// Redis answers; ctx's error, unwrapped, once ctx is done; and at once an
// error that says so for a failure that waiting will not cure (see
// redisWaitable): a wrong password, a user without permission, a TLS
// handshake that fails.
func (r *redisConn) wait(ctx context.Context, w redisWait) error {
	clock := w.clock
	if clock == nil {
		clock = processor.SystemClock()
	}
	log := w.log
	if log == nil {
		log = zap.NewNop()
	}
	start := clock.Now()
	pause := redisRetryFirst
	var lastLogged string
	var lastLogAt time.Time
	for attempt := 1; ; attempt++ {
		err := r.pingOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		waited := clock.Now().Sub(start)
		if err == nil {
			if attempt > 1 {
				log.Info("redis_available", zap.String("redis", r.where), zap.Int("attempt", attempt), zap.Duration("waited", waited))
			}
			return nil
		}
		if !redisWaitable(err) {
			return fmt.Errorf("redis at %s: %w (not waiting: this will not go away by itself)", r.where, err)
		}
		if waited >= w.limit {
			if w.limit == 0 {
				return fmt.Errorf("redis at %s does not answer: %w", r.where, err)
			}
			return fmt.Errorf("redis at %s does not answer after %d attempts in %v (--redis-wait %v): %w",
				r.where, attempt, waited.Round(time.Millisecond), w.limit, err)
		}
		if w.failed != nil {
			w.failed(err)
		}
		if msg := err.Error(); msg != lastLogged || clock.Now().Sub(lastLogAt) >= redisWaitLogEvery {
			log.Warn("redis_unavailable_waiting", zap.String("redis", r.where), zap.Int("attempt", attempt),
				zap.Error(err), zap.Duration("waited", waited), zap.Duration("limit", w.limit))
			lastLogged, lastLogAt = msg, clock.Now()
		}
		t := clock.NewTimer(min(pause, w.limit-waited))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
		pause = min(2*pause, redisRetryMax)
	}
}

// redisWaitable reports whether err, from a PING, is one that waiting can
// cure: no answer at all (a refused or reset connection, a timeout, a host
// name that does not resolve yet) or a server that says it is not ready
// yet (LOADING its dataset, BUSY with a script, MASTERDOWN, CLUSTERDOWN,
// TRYAGAIN, too many clients). Any other reply of Redis is permanent: a
// wrong password (WRONGPASS), none where one is needed (NOAUTH), a user
// without permission (NOPERM), a password where none is configured. So is
// a TLS handshake that fails: a certificate that does not verify, or a
// server that does not speak TLS.
func redisWaitable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return redis.IsLoadingError(err) || redis.HasErrorPrefix(err, "BUSY ") || redis.IsMasterDownError(err) ||
			redis.IsClusterDownError(err) || redis.IsTryAgainError(err) || redis.IsMaxClientsError(err)
	}
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	return !errors.As(err, &certErr) && !errors.As(err, &recordErr)
}
