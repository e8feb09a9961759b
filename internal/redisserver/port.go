package redisserver

import (
	"context"
	"fmt"
	"net"
)

// FreePort asks the kernel for a free 127.0.0.1 port. Another process may
// take it before a server binds it: Start then tries another, and a caller
// that starts a server on a port from FreePort should be ready to do the
// same (Start's error wraps ErrPortInUse).
func FreePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
	}
	return addr.Port, nil
}
