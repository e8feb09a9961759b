package redisserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
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
// a server is still coming up. Any reply but +PONG is an error that wraps
// the reply as a ReplyError: a server that is loading its dataset answers
// "-LOADING …", one with a password "-NOAUTH …".
func Ping(ctx context.Context, addr string) error {
	return PingTLS(ctx, addr, nil)
}

// PingTLS is Ping over TLS with the client configuration cfg (nil: no
// TLS), for a server started with Options.TLS.
func PingTLS(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	conn, err := Dial(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return fmt.Errorf("PING answered %q: %w", line, ReplyError(strings.TrimPrefix(line, "-")))
	}
	return nil
}

// ReplyError is a reply of the server other than +PONG, as Ping returns
// it, without the leading "-" of an error reply: "LOADING Redis is loading
// the dataset in memory", say.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// answers reports whether err, from Ping, shows a server ready for clients:
// none, or NOAUTH (it answers, but wants a password Ping does not send).
func answers(err error) bool {
	var re ReplyError
	return err == nil || (errors.As(err, &re) && strings.HasPrefix(string(re), "NOAUTH "))
}

// Dial connects to addr, over TLS with cfg when it is not nil, with ctx's
// deadline (if any) on the connection, for a test's own RESP exchanges.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	return conn, nil
}
