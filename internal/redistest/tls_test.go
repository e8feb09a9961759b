package redistest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

func TestStartWithTLS(t *testing.T) {
	t.Parallel()
	certs := NewCerts(t)
	s := StartWith(t, redisserver.Options{TLS: certs.ServerTLS(t, true)})
	mustPing(t, testCtx(t), s.Client(t))
	if !strings.HasPrefix(s.URL(), "rediss://") {
		t.Errorf("URL() = %q, want rediss://", s.URL())
	}
}

func TestIssueOptions(t *testing.T) {
	t.Parallel()
	certs := NewCerts(t)
	past := time.Now().Add(-48 * time.Hour)
	certFile, keyFile := certs.Issue(t, CertOptions{Name: "old", Hosts: []string{"elsewhere.example"}, NotBefore: past, NotAfter: past.Add(time.Hour)})
	if certFile == "" || keyFile == "" || certFile == certs.ServerCertFile {
		t.Errorf("Issue = %q, %q, want new files", certFile, keyFile)
	}
}

// A cluster whose nodes speak only TLS, the cluster bus included, and
// require client certificates: a client with TLS writes and reads keys of
// every master.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a 3-master Redis Cluster")
	}
	ctx := testCtx(t)
	c := StartClusterWith(t, ClusterOptions{Masters: 3, TLS: NewCerts(t), AuthClients: true})
	rdb := c.Client(t)
	for i := range 20 {
		key := fmt.Sprintf("tls:%d", i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s over TLS = %v", key, err)
		}
		if got, err := rdb.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s over TLS = %d, %v, want %d", key, got, err, i)
		}
	}
	for _, s := range c.Nodes() {
		if !strings.HasPrefix(s.URL(), "rediss://") {
			t.Errorf("node URL %q, want rediss://", s.URL())
		}
		mustPing(t, ctx, s.Client(t))
	}
}
