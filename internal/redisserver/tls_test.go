package redisserver_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redistest"
)

// A server with TLS listens on one port, TLS only: PingTLS answers, a
// plain Ping does not, and URL says rediss://. With AuthClients a client
// without a certificate is refused.
func TestStartTLS(t *testing.T) {
	t.Parallel()
	certs := redistest.NewCerts(t)
	for _, auth := range []bool{false, true} {
		o := redisserver.Options{Dir: t.TempDir(), TLS: certs.ServerTLS(t, auth)}
		s, err := redisserver.Start(t.Context(), o)
		if err != nil {
			t.Fatalf("Start with TLS (auth clients %v) = %v", auth, err)
		}
		t.Cleanup(func() { _ = s.Stop(context.WithoutCancel(t.Context())) })
		if err := redisserver.PingTLS(t.Context(), s.Addr(), o.TLS.Client); err != nil {
			t.Errorf("PingTLS = %v, want nil", err)
		}
		if err := redisserver.Ping(t.Context(), s.Addr()); err == nil {
			t.Errorf("plain Ping of a TLS-only server = nil, want an error")
		}
		if want := "rediss://" + s.Addr() + "/0"; s.URL() != want {
			t.Errorf("URL() = %q, want %q", s.URL(), want)
		}
		noCert := o.TLS.Client.Clone()
		noCert.Certificates = nil
		err = redisserver.PingTLS(t.Context(), s.Addr(), noCert)
		if auth && err == nil { // the alert, or a reset when the server closes before our PING is written
			t.Errorf("PingTLS without a client certificate, tls-auth-clients yes = nil, want an error")
		}
		if !auth && err != nil {
			t.Errorf("PingTLS without a client certificate, tls-auth-clients no = %v, want nil", err)
		}
	}
}

func TestStartTLSNeedsFiles(t *testing.T) {
	t.Parallel()
	_, err := redisserver.Start(t.Context(), redisserver.Options{Dir: t.TempDir(), TLS: &redisserver.TLS{Client: &tls.Config{MinVersion: tls.VersionTLS12}}})
	if err == nil || !strings.Contains(err.Error(), "CertFile") {
		t.Errorf("Start with an empty TLS = %v, want an error naming what is missing", err)
	}
}
