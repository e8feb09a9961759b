package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/internal/redisurl"
	"github.com/eddy-streams/eddy/internal/secret"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// redisConn is the client every command uses, and what closes it.
type redisConn struct {
	client   redis.UniversalClient
	where    string // for logs: the address(es), or "embedded"; never a URL
	embedded bool
	close    func()

	// redact masks secrets in every error and log line of ping and wait;
	// nil masks URLs only.
	redact *redactor
	// tls says whether connections use TLS, with tlsConfig (nil for the
	// embedded Redis and in tests that build a redisConn by hand).
	tls       bool
	tlsConfig *tls.Config
	// probeAddr is the address explain asks when a connection is closed on
	// us or a handshake times out; "" asks nothing.
	probeAddr string
	// probed is set once explain asked; probeHint is what it learnt ("" for
	// nothing).
	probed    bool
	probeHint string
	// unchecked, when not nil, are the options of a URL whose server did
	// not answer at open: once it answers, ping and wait ask whether it is
	// a Cluster node (see checkCluster) and fail if so.
	unchecked *redis.Options
	// url is the URL given for one server, for the Cluster URL form.
	url string
}

// openRedis connects to --redis if given, else to the config's redis
// section; with neither, it starts an embedded in-memory Redis (miniredis)
// so that Eddy can be tried without a server. minReadTimeout keeps blocking
// reads (XREADGROUP BLOCK) from hitting the client's read timeout;
// partitions is how many partitions the process reads: each holds a
// connection during its blocking read, so the pool gets that many on top of
// the default. It is where every command opens Redis, so it is also where
// go-redis's own messages are sent to log (useRedisLogger).
//
// The TLS flags apply to either source, each overriding its field of the
// config's redis.tls (which --redis replaces with the rest of the section).
// A URL of one server that turns out to be a Redis Cluster node (CLUSTER
// INFO) is used as a Cluster seed, with the same credentials and TLS,
// and logged (redis_cluster_detected); if it cannot be (a database other
// than 0), openRedis fails with the URL form to use. A server that does not
// answer yet is asked by ping and wait once it does.
//
// No error, and no log line, holds a password: URLs are quoted redacted
// (redisurl), and every password eddy knows of is masked (redactor).
func openRedis(ctx context.Context, g *globals, f *pipelines.File, minReadTimeout time.Duration, partitions int, log *zap.Logger) (*redisConn, error) {
	red := &redactor{}
	t, err := resolveRedis(g, f, red)
	if err != nil {
		return nil, red.err(err)
	}
	useRedisLogger(log, red) // red knows every password now
	readTimeout := max(5*time.Second, minReadTimeout)
	poolSize := 10*runtime.GOMAXPROCS(0) + 2*partitions
	if t == nil {
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
	if t.insecure() {
		log.Warn("redis_tls_verify_off", zap.String("note", insecureNote))
	}
	if t.cluster != nil {
		opt := t.cluster
		opt.ReadTimeout, opt.PoolSize, opt.ContextTimeoutEnabled = readTimeout, poolSize, true
		c := redis.NewClusterClient(opt)
		return &redisConn{client: c, where: fmt.Sprint(opt.Addrs), close: func() { _ = c.Close() },
			redact: red, tls: opt.TLSConfig != nil, tlsConfig: opt.TLSConfig, probeAddr: opt.Addrs[0]}, nil
	}
	opt := t.single
	opt.ReadTimeout, opt.PoolSize = readTimeout, poolSize
	opt.ContextTimeoutEnabled = true // lets the engine's hard stop bound calls to a hung Redis
	pc := probeClient(opt)
	defer func() { _ = pc.Close() }()
	pctx, cancel := context.WithTimeout(ctx, clusterProbeTimeout)
	isCluster, err := clusterEnabled(pctx, pc)
	cancel()
	if err == nil && isCluster {
		cc, err := clusterFromNode(ctx, pc, opt, t.url)
		if err != nil {
			return nil, red.err(err)
		}
		log.Info("redis_cluster_detected", zap.String("redis", opt.Addr),
			zap.String("note", "the URL names a Redis Cluster node: using it as a Cluster seed with the same credentials and TLS"))
		return &redisConn{client: cc, where: fmt.Sprint(cc.Options().Addrs), close: func() { _ = cc.Close() },
			redact: red, tls: opt.TLSConfig != nil, tlsConfig: cc.Options().TLSConfig, probeAddr: opt.Addr}, nil
	}
	c := redis.NewClient(opt)
	conn := &redisConn{client: c, where: opt.Addr, close: func() { _ = c.Close() },
		redact: red, tls: opt.TLSConfig != nil, tlsConfig: opt.TLSConfig, probeAddr: opt.Addr, url: t.url}
	switch {
	case err == nil:
	case redis.HasErrorPrefix(err, "NOPERM"):
		log.Warn("redis_cluster_check_failed", zap.String("redis", opt.Addr), zap.Error(red.err(err)),
			zap.String("note", "could not ask whether the server is a Redis Cluster node (the user may run neither CLUSTER INFO nor INFO); going on as if it is not"))
	default:
		conn.unchecked = opt // no answer yet (or not ready): asked again once it answers
	}
	return conn, nil
}

// redisTarget is the Redis to connect to, from --redis or the config: the
// options of one server or of a Cluster, credentials and TLS applied.
type redisTarget struct {
	single  *redis.Options
	cluster *redis.ClusterOptions
	url     string // the URL of one server, if one was given
}

func (t *redisTarget) insecure() bool {
	if t.cluster != nil {
		return t.cluster.TLSConfig != nil && t.cluster.TLSConfig.InsecureSkipVerify
	}
	return t.single.TLSConfig != nil && t.single.TLSConfig.InsecureSkipVerify
}

// resolveRedis says which Redis to connect to: --redis (or
// EDDY_REDIS_URL), else the config's redis section, else none (nil: the
// embedded one). It adds every password it finds to red.
func resolveRedis(g *globals, f *pipelines.File, red *redactor) (*redisTarget, error) {
	if g.tls.insecureEnvErr != nil {
		return nil, usageError{g.tls.insecureEnvErr}
	}
	var fileTLS *pipelines.RedisTLS
	var rawURL, username, password string
	var addrs []string
	switch {
	case g.redisURL != "":
		rawURL = g.redisURL
	case f.Redis != nil:
		r := f.Redis
		rawURL, addrs, username, fileTLS = r.URL, r.Addrs, r.Username, r.TLS
		var err error
		if password, err = configPassword(r); err != nil {
			return nil, err
		}
		red.add(password)
	default:
		if s := resolveTLS(nil, g.tls); s.on {
			return nil, usageError{errors.New("TLS flags given but no Redis to connect to: give --redis URL or a redis section in the config")}
		}
		return nil, nil
	}
	tlsSet := resolveTLS(fileTLS, g.tls)
	t := &redisTarget{}
	switch {
	case rawURL != "" && redisurl.IsCluster(rawURL):
		opt, err := redisurl.ParseClusterURL(rawURL)
		if err != nil {
			return nil, usageError{err}
		}
		red.add(opt.Password)
		t.cluster = opt
	case rawURL != "":
		opt, err := redisurl.ParseURL(rawURL)
		if err != nil {
			return nil, usageError{err}
		}
		red.add(opt.Password)
		t.single, t.url = opt, rawURL
	default:
		t.cluster = &redis.ClusterOptions{Addrs: addrs}
	}
	if t.cluster != nil {
		if username != "" {
			t.cluster.Username = username
		}
		if password != "" {
			t.cluster.Password = password
		}
		if tlsSet.on || t.cluster.TLSConfig != nil {
			cfg, err := tlsSet.config(t.cluster.TLSConfig, "") // each node verified by its own address
			if err != nil {
				return nil, err
			}
			t.cluster.TLSConfig = cfg
		}
		return t, nil
	}
	if username != "" {
		t.single.Username = username
	}
	if password != "" {
		t.single.Password = password
	}
	if tlsSet.on || t.single.TLSConfig != nil {
		host, _, _ := net.SplitHostPort(t.single.Addr)
		cfg, err := tlsSet.config(t.single.TLSConfig, host)
		if err != nil {
			return nil, err
		}
		t.single.TLSConfig = cfg
	}
	return t, nil
}

// configPassword reads the password of the config's redis section: from
// password, the variable password_env names or password_file (one at most;
// validation checks that), or "" for none.
func configPassword(r *pipelines.Redis) (string, error) {
	switch {
	case r.PasswordEnv != "":
		v, err := secret.Read(r.PasswordEnv, "")
		if err != nil {
			return "", fmt.Errorf("redis.password_env: %w", err)
		}
		return v, nil
	case r.PasswordFile != "":
		v, err := secret.Read("", r.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("redis.password_file: %w", err)
		}
		return v, nil
	}
	return r.Password, nil
}

// pingTimeout bounds one PING of ping and of each attempt of wait.
const pingTimeout = 5 * time.Second

// ping checks once that Redis answers, so that a wrong address fails fast
// with a clear error instead of a stream of retries.
func (r *redisConn) ping(ctx context.Context) error {
	if err := r.pingOnce(ctx); err != nil {
		return r.redact.err(fmt.Errorf("redis at %s does not answer: %w", r.where, r.explain(ctx, err)))
	}
	return r.redact.err(r.checkCluster(ctx))
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
			if err := r.checkCluster(ctx); err != nil {
				return r.redact.err(err)
			}
			if attempt > 1 {
				log.Info("redis_available", zap.String("redis", r.where), zap.Int("attempt", attempt), zap.Duration("waited", waited))
			}
			return nil
		}
		err = r.redact.err(r.explain(ctx, err))
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
// a TLS handshake that fails: a certificate that does not verify, a server
// that refuses ours (a TLS alert), a server that does not speak TLS, or a
// TLS port that a plain connection reached (see redisConn.explain).
func redisWaitable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return redis.IsLoadingError(err) || redis.HasErrorPrefix(err, "BUSY ") || redis.IsMasterDownError(err) ||
			redis.IsClusterDownError(err) || redis.IsTryAgainError(err) || redis.IsMaxClientsError(err)
	}
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var hint *hintError
	var op *net.OpError
	switch {
	case errors.As(err, &certErr), errors.As(err, &recordErr),
		errors.As(err, &hint) && hint.permanent,
		errors.As(err, &op) && op.Op == "remote error":
		return false
	}
	return true
}

// explain adds a hint to an error of PING when it can tell its cause: a
// TLS handshake that failed (tlsHint); a plain connection that the server
// closed (EOF, a reset) because it expects TLS; a TLS connection that the
// server closed because it refused our side of the handshake (no client
// certificate, or one it does not trust: with TLS 1.3 that shows only
// after the handshake, and as a reset when the alert is lost); or a TLS
// handshake that timed out because the server speaks plain RESP. It learns
// the last three by asking the port (speaksTLS, tlsRefusal, speaksRESP),
// once. A hint found so makes the error permanent.
func (r *redisConn) explain(ctx context.Context, err error) error {
	if hint := tlsHint(err); hint != "" {
		return &hintError{err: err, hint: hint, permanent: true}
	}
	if r.unchecked != nil && !isNoAnswer(err) {
		// A reply of Redis: a Cluster node may be refusing our database.
		if cerr := r.checkCluster(ctx); cerr != nil {
			return cerr
		}
	}
	if r.probeAddr == "" {
		return err
	}
	closed := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	var ne net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	if !r.probed {
		switch {
		case !r.tls && closed:
			r.probed = true
			if speaksTLS(ctx, r.probeAddr) {
				r.probeHint = expectTLSHint
			}
		case r.tlsConfig != nil && closed:
			r.probed = true
			r.probeHint = tlsHint(tlsRefusal(ctx, r.probeAddr, r.tlsConfig))
		case r.tls && timedOut:
			r.probed = true
			if speaksRESP(ctx, r.probeAddr) {
				r.probeHint = plainHint
			}
		}
	}
	if r.probeHint != "" && (closed || timedOut) {
		return &hintError{err: err, hint: r.probeHint, permanent: true}
	}
	return err
}
