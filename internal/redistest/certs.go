package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

// Certs are a certificate authority made for one test with crypto/x509 and
// certificates it issued, written as PEM files to a directory of the
// test's own (tb.TempDir): what a server with TLS and its clients need.
// NewCerts makes a new authority each time, so a second Certs is an
// authority the first one's clients do not trust.
type Certs struct {
	// Dir holds the files.
	Dir string
	// CAFile is the authority's certificate.
	CAFile string
	// ServerCertFile and ServerKeyFile are a certificate for 127.0.0.1,
	// ::1 and localhost, valid from an hour ago for a day, for servers and
	// clients both (the nodes of a cluster show it to each other).
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate.
	ClientCertFile, ClientKeyFile string

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// CertOptions say what Issue puts in a certificate.
type CertOptions struct {
	// Name is the stem of the files, NAME.crt and NAME.key. Required.
	Name string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for. Default (nil): 127.0.0.1, ::1 and localhost.
	Hosts []string
	// NotBefore and NotAfter bound its validity. Default (zero): from an
	// hour ago to a day from now.
	NotBefore, NotAfter time.Time
}

// NewCerts makes an authority and issues the server and client
// certificates of Certs. It fails the test if it cannot.
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	c := &Certs{Dir: tb.TempDir()}
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("redistest: make a CA: %v", err)
	}
	if c.ca, err = x509.ParseCertificate(der); err != nil {
		tb.Fatalf("redistest: parse the CA: %v", err)
	}
	c.caKey = key
	c.CAFile = filepath.Join(c.Dir, "ca.crt")
	writePEM(tb, c.CAFile, "CERTIFICATE", der)
	c.ServerCertFile, c.ServerKeyFile = c.Issue(tb, CertOptions{Name: "server"})
	c.ClientCertFile, c.ClientKeyFile = c.Issue(tb, CertOptions{Name: "client", Hosts: []string{"client"}})
	return c
}

// Issue issues a certificate as o says, for servers and clients both,
// and returns its files.
func (c *Certs) Issue(tb testing.TB, o CertOptions) (certFile, keyFile string) {
	tb.Helper()
	if o.Hosts == nil {
		o.Hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: o.Hosts[0]},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		tb.Fatalf("redistest: issue %s: %v", o.Name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("redistest: encode the key of %s: %v", o.Name, err)
	}
	certFile = filepath.Join(c.Dir, o.Name+".crt")
	keyFile = filepath.Join(c.Dir, o.Name+".key")
	writePEM(tb, certFile, "CERTIFICATE", der)
	writePEM(tb, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// ClientTLS is a client configuration that trusts the authority and shows
// the client certificate.
func (c *Certs) ClientTLS(tb testing.TB) *tls.Config {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	pair, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		tb.Fatalf("redistest: load the client certificate: %v", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// ServerTLS is the redisserver.TLS of a server that shows the server
// certificate, trusts client certificates of the authority and, with
// authClients, requires one; its Client is ClientTLS.
func (c *Certs) ServerTLS(tb testing.TB, authClients bool) *redisserver.TLS {
	tb.Helper()
	return &redisserver.TLS{
		CertFile:    c.ServerCertFile,
		KeyFile:     c.ServerKeyFile,
		CAFile:      c.CAFile,
		AuthClients: authClients,
		Client:      c.ClientTLS(tb),
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: make a key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("redistest: make a serial number: %v", err)
	}
	return n
}

func writePEM(tb testing.TB, path, kind string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		tb.Fatalf("redistest: write %s: %v", path, err)
	}
}
