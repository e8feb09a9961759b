package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisLogger sends go-redis's own messages (connection pool trouble) to
// the structured log, at most one every 5 seconds.
type redisLogger struct {
	log    *zap.Logger
	redact *redactor // masks secrets in each message
	mu     sync.Mutex
	last   time.Time
	n      int
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < 5*time.Second {
		l.n++
		return
	}
	l.log.Warn("redis_client", zap.String("message", l.redact.text(fmt.Sprintf(format, v...))), zap.Int("suppressed", l.n))
	l.last, l.n = time.Now(), 0
}

// useRedisLogger makes go-redis log through log instead of raw lines on
// stderr. It is a process-wide setting of go-redis, so it is made in main's
// package only, by openRedis, which every command that talks to Redis
// calls before it creates a client. red masks secrets in the messages.
func useRedisLogger(log *zap.Logger, red *redactor) {
	redis.SetLogger(&redisLogger{log: log, redact: red})
}
