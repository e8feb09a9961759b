package redisserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// pingTimeout bounds one Ping.
const pingTimeout = 250 * time.Millisecond

// Ping sends one PING to addr over a new connection and wants +PONG back,
// within 250ms or ctx's deadline if sooner. It speaks RESP itself rather
// than through go-redis, whose pool retries and logs each refused dial while
// a server is still coming up. A server that is loading its dataset answers
// "-LOADING …", which Ping returns as an error quoting it.
func Ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
