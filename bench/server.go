package bench

import (
	"context"
	"errors"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

// ErrNoRedisServer is returned by StartServer when redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server not found: install it (apt-get install -y redis-server) or pass --redis URL")

// StartServer starts the benchmark's own redis-server through the one
// launcher, internal/redisserver: on a free 127.0.0.1 port, with dir as its
// data directory (and its log there) and persistence off. It returns once
// the server answers PING. The caller stops it with Stop (SIGTERM, then
// SIGKILL after 3s), or Kill on an error path.
func StartServer(ctx context.Context, dir string) (*redisserver.Server, error) {
	s, err := redisserver.Start(ctx, redisserver.Options{Dir: dir})
	if errors.Is(err, redisserver.ErrNotFound) {
		return nil, ErrNoRedisServer
	}
	return s, err
}
