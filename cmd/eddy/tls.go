package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
)

// tlsFlags are the TLS flags every command takes, each defaulting to its
// environment variable.
type tlsFlags struct {
	ca, cert, key, serverName string
	insecure                  bool
	// insecureEnvErr is set when EDDY_REDIS_INSECURE_SKIP_VERIFY holds no
	// boolean; openRedis reports it.
	insecureEnvErr error
}

// Names of the TLS flags and their environment variables.
const (
	flagRedisCA       = "redis-ca"
	flagRedisCert     = "redis-cert"
	flagRedisKey      = "redis-key"
	flagRedisName     = "redis-server-name"
	flagRedisInsecure = "redis-insecure-skip-verify"
	envRedisInsecure  = "EDDY_REDIS_INSECURE_SKIP_VERIFY"
)

// envBool reads a boolean environment variable: false when unset or
// empty, an error when it holds no boolean.
func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}

// setting is one TLS setting and where it was given, for messages.
type setting struct {
	value string
	from  string // "--redis-ca" or "redis.tls.ca_file"
}

// tlsSettings are the TLS settings in force: the config's redis.tls
// section (when the config's redis section is used), each field
// overridden by its flag.
type tlsSettings struct {
	on                        bool // some setting asks for TLS (a rediss:// URL does too)
	ca, cert, key, serverName setting
	insecure                  bool
}

// resolveTLS merges the config's tls section (nil when there is none, or
// when --redis replaces the config's redis section) with the flags.
func resolveTLS(file *pipelines.RedisTLS, fl tlsFlags) tlsSettings {
	var s tlsSettings
	if file != nil {
		s.on = true
		s.ca = setting{file.CAFile, "redis.tls.ca_file"}
		s.cert = setting{file.CertFile, "redis.tls.cert_file"}
		s.key = setting{file.KeyFile, "redis.tls.key_file"}
		s.serverName = setting{file.ServerName, "redis.tls.server_name"}
		s.insecure = file.InsecureSkipVerify
	}
	over := func(dst *setting, v, flag string) {
		if v != "" {
			*dst = setting{v, "--" + flag}
			s.on = true
		}
	}
	over(&s.ca, fl.ca, flagRedisCA)
	over(&s.cert, fl.cert, flagRedisCert)
	over(&s.key, fl.key, flagRedisKey)
	over(&s.serverName, fl.serverName, flagRedisName)
	if fl.insecure {
		s.insecure, s.on = true, true
	}
	return s
}

// config returns the client TLS configuration: base (go-redis's, from a
// rediss:// URL, or nil) with the settings applied. serverName is the
// name to verify when none is set: the URL's host for one server, "" for
// a Cluster, where each node is then verified by its own address.
func (s tlsSettings) config(base *tls.Config, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
	}
	cfg.ServerName = serverName
	if s.serverName.value != "" {
		cfg.ServerName = s.serverName.value
	}
	if s.ca.value != "" {
		pem, err := os.ReadFile(s.ca.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.ca.from, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in it", s.ca.from, s.ca.value)
		}
		cfg.RootCAs = pool
	}
	switch {
	case s.cert.value != "" && s.key.value != "":
		pair, err := tls.LoadX509KeyPair(s.cert.value, s.key.value)
		if err != nil {
			return nil, fmt.Errorf("%s %s and %s %s: %w", s.cert.from, s.cert.value, s.key.from, s.key.value, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case s.cert.value != "":
		return nil, fmt.Errorf("%s without a key: give %s too", s.cert.from, keyFlagFor(s.cert.from))
	case s.key.value != "":
		return nil, fmt.Errorf("%s without a certificate: give %s too", s.key.from, certFlagFor(s.key.from))
	}
	if s.insecure {
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

func keyFlagFor(from string) string {
	if from == "--"+flagRedisCert {
		return "--" + flagRedisKey
	}
	return "redis.tls.key_file"
}

func certFlagFor(from string) string {
	if from == "--"+flagRedisKey {
		return "--" + flagRedisCert
	}
	return "redis.tls.cert_file"
}

// insecureNote is logged (redis_tls_verify_off) when certificates are not
// checked.
const insecureNote = "TLS certificate verification is off (--redis-insecure-skip-verify, redis.tls.insecure_skip_verify or skip_verify=true): " +
	"the connection is encrypted but the server is not authenticated, so anyone on the path can read and change the traffic; for tests only"

// hintError is an error of Redis with a hint at its cause and cure (or
// none), and whether waiting can cure it.
type hintError struct {
	err       error
	hint      string
	permanent bool // waiting will not cure it (see redisWaitable)
}

func (e *hintError) Error() string {
	if e.hint == "" {
		return e.err.Error()
	}
	return e.err.Error() + " (" + e.hint + ")"
}
func (e *hintError) Unwrap() error { return e.err }

// tlsHint says what a failed TLS handshake means, or "" if err is none.
func tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is signed by an authority this machine does not trust: give that CA with --redis-ca or redis.tls.ca_file"
	case errors.As(err, &host):
		return "the server's certificate is not valid for the name connected to: connect by a name it carries, or set --redis-server-name or redis.tls.server_name"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate has expired or is not valid yet: renew it, or check this machine's clock"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid for a TLS server"
	case errors.As(err, &op) && op.Op == "remote error":
		return "the server refused the TLS handshake: it may want a client certificate (--redis-cert and --redis-key, or redis.tls.cert_file and key_file) signed by a CA it trusts"
	case errors.As(err, &record):
		return plainHint
	}
	return ""
}

// plainHint is the hint for a TLS connection to a server without TLS.
const plainHint = "the server does not speak TLS: use redis:// without TLS settings, or enable TLS on the server"

// expectTLSHint is the hint for a plain connection that a TLS port closed.
const expectTLSHint = "the server may expect TLS: use rediss:// and --redis-ca"

// tlsProbeTimeout bounds speaksTLS.
const tlsProbeTimeout = 2 * time.Second

// speaksTLS reports whether the server at addr answers a TLS handshake:
// it completes, or the server refuses it with a TLS alert. It is asked
// only after a plain connection was closed on us (EOF), to tell a TLS port
// from a server that hangs up. It sends nothing but the handshake.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // only asks whether the port speaks TLS; no data is sent
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = conn.Close()
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// tlsRefusal connects to addr with cfg, the client's own TLS
// configuration, and waits up to a second for the server to send
// something: a server that accepted us sends nothing before a command, one
// that refused our certificate (or its absence) sends a TLS alert, which
// tlsRefusal returns. It is asked only after a TLS connection was closed
// on us, which is what that alert looks like when it is lost.
func tlsRefusal(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// speaksRESP reports whether the server at addr answers an inline PING in
// plain RESP (+PONG, or an error such as -NOAUTH). It is asked only after
// a TLS handshake timed out, which is what a plain Redis does to one: it
// waits for the end of a command that never comes.
func speaksRESP(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close() }()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		return false
	}
	return b[0] == '+' || b[0] == '-'
}
