package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redistest"
)

// binRun runs the eddy binary with env on top of an environment free of
// EDDY_ variables, stdin as its input, and returns its exit code, stdout
// and stderr. It fails the test if the process runs longer than d.
func binRun(t *testing.T, env []string, stdin string, d time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDDY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("eddy %s: still running after %v; stderr:\n%s", strings.Join(args, " "), d, errb.String())
	}
	if cmd.ProcessState == nil {
		t.Fatalf("eddy %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// tlsPipeline is a config without a redis section: one small pipeline.
const tlsPipeline = `http: {addr: off}
pipelines:
  - name: a
    input: {stream: s}
    key: k
`

// startTLS starts a redis-server that speaks only TLS, with a server
// certificate of certs or the files given.
func startTLS(t *testing.T, certs *redistest.Certs, authClients bool, certKey ...string) *redistest.Server {
	t.Helper()
	o := certs.ServerTLS(t, authClients)
	if len(certKey) == 2 {
		o.CertFile, o.KeyFile = certKey[0], certKey[1]
		o.Client = o.Client.Clone()
		o.Client.InsecureSkipVerify = true // the ready wait only; these certificates are meant to fail
	}
	return redistest.StartWith(t, redisserver.Options{TLS: o})
}

// Done-when 1: server-only TLS, the CA from the config, the flags or the
// environment; rediss:// or a CA file (which implies TLS); a server name.
func TestTLSServerOnly(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	srv := startTLS(t, certs, false)
	port := srv.Addr()[strings.LastIndexByte(srv.Addr(), ':')+1:]
	cfg := func(redisSection string) string {
		return writeFile(t, "p.yaml", redisSection+tlsPipeline)
	}
	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"config rediss and ca_file", nil, []string{"-c", cfg("redis: {url: 'rediss://" + srv.Addr() + "/0', tls: {ca_file: '" + certs.CAFile + "'}}\n")}},
		{"config redis and ca_file", nil, []string{"-c", cfg("redis: {url: 'redis://" + srv.Addr() + "/0', tls: {ca_file: '" + certs.CAFile + "'}}\n")}},
		{"config server_name", nil, []string{"-c", cfg("redis: {url: 'rediss://" + srv.Addr() + "/0', tls: {ca_file: '" + certs.CAFile + "', server_name: localhost}}\n")}},
		{"flags", nil, []string{"--redis", "redis://" + srv.Addr() + "/0", "--redis-ca", certs.CAFile, "-c", cfg("")}},
		{"flags localhost", nil, []string{"--redis", "rediss://localhost:" + port + "/0", "--redis-ca", certs.CAFile, "-c", cfg("")}},
		{"environment", []string{"EDDY_REDIS_URL=rediss://" + srv.Addr() + "/0", "EDDY_REDIS_CA=" + certs.CAFile}, []string{"-c", cfg("")}},
	}
	for _, tt := range tests {
		code, out, errOut := binRun(t, tt.env, "", 30*time.Second, append([]string{"status"}, tt.args...)...)
		if code != 0 || !strings.Contains(out, "pipeline a") {
			t.Errorf("%s: eddy status = %d %q %q, want 0 and the pipeline", tt.name, code, out, errOut)
		}
	}
}

// Done-when 1: mutual TLS. Without a client certificate the server refuses
// us, and eddy says a client certificate may be wanted, at once (eddy run
// does not wait); with one, from the flags or the config, it works.
func TestTLSMutual(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	srv := startTLS(t, certs, true)
	url := "rediss://" + srv.Addr() + "/0"
	cfg := writeFile(t, "p.yaml", tlsPipeline)

	code, _, errOut := binRun(t, nil, "", 30*time.Second, "--redis", url, "--redis-ca", certs.CAFile, "status", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "client certificate") {
		t.Errorf("eddy status without a client certificate = %d %q, want 1 and a hint at the client certificate", code, errOut)
	}
	start := time.Now()
	code, _, errOut = binRun(t, nil, "", 30*time.Second, "--redis", url, "--redis-ca", certs.CAFile, "run", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "not waiting") || time.Since(start) > 20*time.Second {
		t.Errorf("eddy run without a client certificate = %d after %v, %q; want 1 at once (not waiting)", code, time.Since(start), errOut)
	}

	code, out, errOut := binRun(t, nil, "", 30*time.Second, "--redis", url, "--redis-ca", certs.CAFile,
		"--redis-cert", certs.ClientCertFile, "--redis-key", certs.ClientKeyFile, "status", "-c", cfg)
	if code != 0 || !strings.Contains(out, "pipeline a") {
		t.Errorf("eddy status with a client certificate from the flags = %d %q %q, want 0", code, out, errOut)
	}
	withCert := writeFile(t, "c.yaml", fmt.Sprintf("redis:\n  url: %s\n  tls: {ca_file: '%s', cert_file: '%s', key_file: '%s'}\n%s",
		url, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile, tlsPipeline))
	code, out, errOut = binRun(t, nil, "", 30*time.Second, "status", "-c", withCert)
	if code != 0 || !strings.Contains(out, "pipeline a") {
		t.Errorf("eddy status with a client certificate from the config = %d %q %q, want 0", code, out, errOut)
	}
}

// Done-when 1: a certificate that does not verify gives an error naming
// the problem (unknown authority, name mismatch, expired) and the cure,
// and eddy run fails at once rather than wait.
func TestTLSUntrustedCertificate(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	other := redistest.NewCerts(t) // an authority the client does not trust
	past := time.Now().Add(-72 * time.Hour)
	wrongName, wrongNameKey := certs.Issue(t, redistest.CertOptions{Name: "elsewhere", Hosts: []string{"elsewhere.example", "127.0.0.2"}})
	expired, expiredKey := certs.Issue(t, redistest.CertOptions{Name: "expired", NotBefore: past, NotAfter: past.Add(24 * time.Hour)})
	cfg := writeFile(t, "p.yaml", tlsPipeline)
	tests := []struct {
		name  string
		srv   *redistest.Server
		flags []string
		want  []string
	}{
		{"unknown authority", startTLS(t, other, false, other.ServerCertFile, other.ServerKeyFile), []string{"--redis-ca", certs.CAFile},
			[]string{"certificate signed by unknown authority", "an authority this machine does not trust", "--redis-ca"}},
		{"system roots", startTLS(t, certs, false), nil,
			[]string{"certificate signed by unknown authority", "--redis-ca"}},
		{"name mismatch", startTLS(t, certs, false, wrongName, wrongNameKey), []string{"--redis-ca", certs.CAFile},
			[]string{"certificate is valid for 127.0.0.2, not 127.0.0.1", "not valid for the name connected to", "--redis-server-name"}},
		{"expired", startTLS(t, certs, false, expired, expiredKey), []string{"--redis-ca", certs.CAFile},
			[]string{"certificate has expired", "renew it"}},
	}
	for _, tt := range tests {
		for _, command := range []string{"status", "run"} {
			args := append([]string{"--redis", "rediss://" + tt.srv.Addr() + "/0"}, tt.flags...)
			args = append(args, command, "-c", cfg)
			code, _, errOut := binRun(t, nil, "", 30*time.Second, args...)
			if code != 1 {
				t.Errorf("%s: eddy %s = %d, want 1; stderr:\n%s", tt.name, command, code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%s: eddy %s stderr lacks %q:\n%s", tt.name, command, w, errOut)
				}
			}
		}
	}
}

// Done-when 1: a plain redis:// URL against a TLS port says the server may
// expect TLS, at once; rediss:// against a plain port says it does not
// speak TLS.
func TestTLSPlainURLAgainstTLSPort(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	srv := startTLS(t, certs, false)
	cfg := writeFile(t, "p.yaml", tlsPipeline)
	for _, command := range []string{"status", "run"} {
		code, _, errOut := binRun(t, nil, "", 30*time.Second, "--redis", "redis://"+srv.Addr()+"/0", command, "-c", cfg)
		if code != 1 || !strings.Contains(errOut, "the server may expect TLS: use rediss:// and --redis-ca") {
			t.Errorf("eddy %s with redis:// against a TLS port = %d, want 1 and the TLS hint; stderr:\n%s", command, code, errOut)
		}
	}
	plain := redistest.Start(t)
	code, _, errOut := binRun(t, nil, "", 30*time.Second, "--redis", "rediss://"+plain.Addr()+"/0", "--redis-ca", certs.CAFile, "status", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "the server does not speak TLS") {
		t.Errorf("eddy status with rediss:// against a plain port = %d, want 1 saying it does not speak TLS; stderr:\n%s", code, errOut)
	}
}

// --redis-insecure-skip-verify connects to any certificate, and says so
// loudly in the log.
func TestTLSInsecureSkipVerify(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	srv := startTLS(t, certs, false)
	cfg := writeFile(t, "p.yaml", tlsPipeline)
	code, out, errOut := binRun(t, nil, "", 30*time.Second, "--redis", "rediss://"+srv.Addr()+"/0", "--redis-insecure-skip-verify", "status", "-c", cfg)
	if code != 0 || !strings.Contains(out, "pipeline a") || !strings.Contains(errOut, `"msg":"redis_tls_verify_off"`) {
		t.Errorf("eddy status --redis-insecure-skip-verify = %d %q %q, want 0 and a redis_tls_verify_off warning", code, out, errOut)
	}
	code, out, errOut = binRun(t, []string{"EDDY_REDIS_INSECURE_SKIP_VERIFY=true"}, "", 30*time.Second, "--redis", "rediss://"+srv.Addr()+"/0", "status", "-c", cfg)
	if code != 0 || !strings.Contains(errOut, "redis_tls_verify_off") {
		t.Errorf("eddy status with EDDY_REDIS_INSECURE_SKIP_VERIFY=true = %d %q %q, want 0 and the warning", code, out, errOut)
	}
}

// Settings that cannot work fail before any connection, naming the flag
// or the config path.
func TestTLSSettingErrors(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	cfg := writeFile(t, "p.yaml", tlsPipeline)
	missing := writeFile(t, "m.yaml", "redis: {url: 'rediss://127.0.0.1:1/0', tls: {ca_file: /nonexistent/ca.pem}}\n"+tlsPipeline)
	notPEM := writeFile(t, "ca.pem", "not a certificate\n")
	tests := []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"status", "-c", missing}, 1, "redis.tls.ca_file: open /nonexistent/ca.pem"},
		{nil, []string{"--redis", "rediss://127.0.0.1:1/0", "--redis-ca", notPEM, "status", "-c", cfg}, 1, "--redis-ca " + notPEM + ": no PEM certificate in it"},
		{nil, []string{"--redis", "rediss://127.0.0.1:1/0", "--redis-cert", certs.ClientCertFile, "status", "-c", cfg}, 1, "--redis-cert without a key: give --redis-key too"},
		{[]string{"EDDY_REDIS_INSECURE_SKIP_VERIFY=maybe"}, []string{"--redis", "rediss://127.0.0.1:1/0", "status", "-c", cfg}, 2, `EDDY_REDIS_INSECURE_SKIP_VERIFY="maybe": want true or false`},
		{nil, []string{"--redis-ca", certs.CAFile, "run", "-c", cfg}, 2, "TLS flags given but no Redis to connect to"},
	}
	for _, tt := range tests {
		code, _, errOut := binRun(t, tt.env, "", 30*time.Second, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("eddy %v = %d %q, want %d and %q", tt.args, code, errOut, tt.code, tt.want)
		}
	}
}

// Done-when 1: a TLS Cluster of 3 masters that wants client certificates.
// Events of many keys go in with eddy produce (the ?addr= URL and the TLS
// flags) and through eddy run (redis.addrs and redis.tls in the config);
// every event has one output, in order per key.
func TestTLSClusterOrder(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a 3-master Redis Cluster")
	}
	certs := redistest.NewCerts(t)
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Masters: 3, TLS: certs, AuthClients: true})
	addrs := cl.Addrs()
	pipeline := `http: {addr: off}
pipelines:
  - name: tlsorder
    input: {stream: tin, partitions: 6, payload: data}
    key: k
    dedupe: {id: id, window: 1h}
    steps:
      - output: {stream: "tout"}
`
	cfg := writeFile(t, "p.yaml", fmt.Sprintf("redis:\n  addrs: [%s]\n  tls: {ca_file: '%s', cert_file: '%s', key_file: '%s'}\n%s",
		strings.Join(addrs, ", "), certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile, pipeline))
	const keys, perKey = 60, 50
	var in strings.Builder
	for i := range perKey {
		for k := range keys {
			fmt.Fprintf(&in, `{"id":"e%d-%d","k":"k%d","n":%d}`+"\n", k, i, k, i)
		}
	}
	url := "rediss://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	tlsFlags := []string{"--redis-ca", certs.CAFile, "--redis-cert", certs.ClientCertFile, "--redis-key", certs.ClientKeyFile}
	code, out, errOut := binRun(t, nil, in.String(), 60*time.Second, append(append([]string{"--redis", url}, tlsFlags...), "produce", "-c", cfg)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("produced %d events", keys*perKey)) {
		t.Fatalf("eddy produce over TLS to the cluster = %d %q %q", code, out, errOut)
	}

	p := startEddy(t, "run", "-c", cfg, "--consumer", "w1")
	c := cl.Client(t)
	ctx := t.Context()
	waitFor(t, 60*time.Second, "every output", func() bool { return c.XLen(ctx, "tout").Val() >= keys*perKey })
	stopEddy(t, p)

	es, err := c.XRange(ctx, "tout", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != keys*perKey {
		t.Errorf("outputs = %d, want %d (once each)", len(es), keys*perKey)
	}
	next := map[string]int{}
	for _, e := range es {
		var ev struct {
			K string `json:"k"`
			N int    `json:"n"`
		}
		if data, _ := e.Values["data"].(string); json.Unmarshal([]byte(data), &ev) != nil || ev.K == "" {
			t.Fatalf("output %v: want data with k and n", e.Values)
		}
		if ev.N != next[ev.K] {
			t.Fatalf("output of key %s: n = %d, want %d (in order, once each)", ev.K, ev.N, next[ev.K])
		}
		next[ev.K]++
	}
	if len(next) != keys {
		t.Errorf("keys seen = %d, want %d", len(next), keys)
	}
	if !strings.Contains(p.stderr.String(), `"msg":"eddy_started"`) {
		t.Errorf("log lacks eddy_started:\n%s", p.stderr.String())
	}

	// The URL of one node, over TLS, is used as a Cluster seed with the
	// same TLS settings.
	code, out, errOut = binRun(t, nil, "", 30*time.Second, append(append([]string{"--redis", "rediss://" + addrs[1] + "/0"}, tlsFlags...), "status", "-c", cfg)...)
	if code != 0 || !strings.Contains(out, "pipeline tlsorder") || !strings.Contains(errOut, `"msg":"redis_cluster_detected"`) {
		t.Errorf("eddy status with the rediss:// URL of one node = %d %q %q, want 0 and redis_cluster_detected", code, out, errOut)
	}
}

// stopEddy sends SIGINT and wants exit 0.
func stopEddy(t *testing.T, p *process) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("eddy run exit code after SIGINT = %d; log:\n%s", code, p.stderr.String())
	}
}

// explain tells what a connection closed on us (EOF, a reset) means, by
// asking the port: a plain client on a TLS port, or a TLS client whose
// certificate (or its absence) the server refused, which TLS 1.3 shows
// only after the handshake and as a reset when the alert is lost. A server
// that merely hung up stays waitable.
func TestTLSExplainClosedConnection(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	mutual := startTLS(t, certs, true)
	plain := redistest.Start(t)
	noCert := certs.ClientTLS(t)
	noCert.Certificates = nil
	tests := []struct {
		name string
		conn *redisConn
		want string // in the hint; "" for none
	}{
		{"plain client, TLS port", &redisConn{probeAddr: mutual.Addr()}, expectTLSHint},
		{"no client certificate", &redisConn{tls: true, tlsConfig: noCert, probeAddr: mutual.Addr()}, "client certificate"},
		{"client certificate", &redisConn{tls: true, tlsConfig: certs.ClientTLS(t), probeAddr: mutual.Addr()}, ""},
		{"plain client, plain port", &redisConn{probeAddr: plain.Addr()}, ""},
	}
	for _, tt := range tests {
		for _, closed := range []error{io.EOF, syscall.ECONNRESET} {
			tt.conn.probed, tt.conn.probeHint = false, ""
			err := tt.conn.explain(t.Context(), closed)
			switch {
			case tt.want == "" && (!errors.Is(err, closed) || err.Error() != closed.Error() || !redisWaitable(err)):
				t.Errorf("%s: explain(%v) = %v, want it as it is, waitable", tt.name, closed, err)
			case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || redisWaitable(err)):
				t.Errorf("%s: explain(%v) = %v, want a permanent error with %q", tt.name, closed, err, tt.want)
			}
		}
	}
}
