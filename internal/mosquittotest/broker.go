package mosquittotest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

const (
	// DefaultAutosave is Options.Autosave's default.
	DefaultAutosave = time.Second
	// DefaultMaxQueued is Options.MaxQueued's default: per client, far
	// above what a test publishes, so that a broker never drops a QoS 1
	// message queued for a subscriber that is away.
	DefaultMaxQueued = 10_000_000
	// readyTimeout bounds the wait until a started broker answers CONNECT.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long Stop gives the broker after SIGTERM before
	// SIGKILL.
	stopTimeout = 5 * time.Second
	// readyPoll is how often the ready wait tries to connect.
	readyPoll = 20 * time.Millisecond
	// portAttempts is how many free ports Start tries when another process
	// takes the chosen one before the broker binds it.
	portAttempts = 5
	// LogFile is the broker's log, in its directory.
	LogFile = "mosquitto.log"
)

// Options say how StartWith runs mosquitto. The zero value is what Start
// uses.
type Options struct {
	// Users, when set, turns anonymous access off: only these user names,
	// with their passwords, may connect (a password file made with
	// mosquitto_passwd). Default (nil): allow_anonymous true.
	Users map[string]string
	// TLS, when set, makes the listener speak TLS only. Default: plain TCP.
	TLS *TLS
	// Autosave is how often the broker writes its in-memory database
	// (sessions, subscriptions, queued messages) to its persistence
	// directory. A Stop saves it too; a Kill loses what changed since the
	// last save. Default (0): DefaultAutosave.
	Autosave time.Duration
	// MaxQueued is max_queued_messages: QoS 1 messages held per client
	// above those in flight. Default (0): DefaultMaxQueued.
	MaxQueued int
	// Conf holds more lines for the configuration file, appended last.
	Conf []string
}

// TLS is a TLS listener's files (PEM), such as redistest.NewCerts makes.
type TLS struct {
	// CertFile and KeyFile are the broker's certificate and key. Required.
	CertFile, KeyFile string
	// CAFile holds the CAs that client certificates must chain to; with
	// RequireClientCert, clients must show one. Required by mosquitto.
	CAFile            string
	RequireClientCert bool
	// Client is what the ready probe dials with: it must trust the
	// broker's certificate (and carry a client certificate when one is
	// required). Required.
	Client *tls.Config
}

// Broker is one mosquitto started by Start or StartWith. Its methods may be
// called from any goroutine; Restart calls tb.Fatal, so call it from the
// test's goroutine.
type Broker struct {
	o    Options
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *process // nil while the broker is not running
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a mosquitto with anonymous access on a free loopback port,
// with persistence in a directory of its own (tb.TempDir), and returns
// once it answers CONNECT. It is stopped when the test ends. The test is
// skipped when mosquitto is not on PATH, and fails when the broker does
// not come up (quoting the end of its log).
func Start(tb testing.TB) *Broker {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith starts a mosquitto as o says; see Start.
func StartWith(tb testing.TB, o Options) *Broker {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		// Also where Debian puts it, outside a non-root user's PATH.
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			tb.Skip("mosquittotest: mosquitto not found on PATH, so this test cannot run; install it (apt-get install -y mosquitto), as scripts/test.sh does in CI")
		}
		bin = "/usr/sbin/mosquitto"
	}
	if o.Autosave <= 0 {
		o.Autosave = DefaultAutosave
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = DefaultMaxQueued
	}
	if t := o.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" || t.Client == nil) {
		tb.Fatal("mosquittotest: Options.TLS needs CertFile, KeyFile, CAFile and Client")
	}
	b := &Broker{o: o, bin: bin, dir: tb.TempDir()}
	if len(o.Users) > 0 {
		if err := b.writePasswords(tb.Context()); err != nil {
			tb.Fatalf("mosquittotest: %v", err)
		}
	}
	for attempt := 1; ; attempt++ {
		port, err := redisserver.FreePort(tb.Context())
		if err != nil {
			tb.Fatalf("mosquittotest: find a free port: %v", err)
		}
		b.port = port
		err = b.start(tb.Context())
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			tb.Fatalf("mosquittotest: start mosquitto: %v", err)
		}
	}
	tb.Cleanup(func() { _ = b.Stop() })
	return b
}

var errPortInUse = errors.New("port already in use")

// Addr is the broker's "127.0.0.1:port".
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port is the broker's port.
func (b *Broker) Port() int { return b.port }

// URL is mqtt://127.0.0.1:port, or mqtts:// with TLS.
func (b *Broker) URL() string {
	if b.o.TLS != nil {
		return "mqtts://" + b.Addr()
	}
	return "mqtt://" + b.Addr()
}

// Dir is the broker's directory: its configuration, persistence database
// and log.
func (b *Broker) Dir() string { return b.dir }

// LogTail returns the last n lines of the broker's log.
func (b *Broker) LogTail(n int) string {
	data, err := os.ReadFile(filepath.Join(b.dir, LogFile))
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop ends the broker with SIGTERM, which makes it save its database,
// and waits for it to exit; after 5s it is killed and Stop says so. Stop
// does nothing if the broker is not running.
func (b *Broker) Stop() error {
	p := b.take()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("mosquitto on %s did not exit within %v of SIGTERM; killed it", b.Addr(), stopTimeout)
}

// Kill ends the broker with SIGKILL, as a crash would: what changed since
// the last autosave is lost. It returns once the broker has exited.
func (b *Broker) Kill() {
	p := b.take()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart stops the broker (as Stop does) if it runs and starts it again
// on the same port with the same directory: persistent sessions, their
// subscriptions and queued messages are there again. It fails the test if
// the broker does not come back.
func (b *Broker) Restart(tb testing.TB) {
	tb.Helper()
	if err := b.Stop(); err != nil {
		tb.Logf("mosquittotest: %v", err)
	}
	if err := b.start(tb.Context()); err != nil {
		tb.Fatalf("mosquittotest: restart mosquitto on %s: %v", b.Addr(), err)
	}
}

func (b *Broker) take() *process {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.proc
	b.proc = nil
	return p
}

// conf is the broker's configuration file.
func (b *Broker) conf() string {
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", b.port)
	if len(b.o.Users) > 0 {
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", filepath.Join(b.dir, "passwords"))
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if t := b.o.TLS; t != nil {
		fmt.Fprintf(&c, "certfile %s\nkeyfile %s\ncafile %s\nrequire_certificate %t\n", t.CertFile, t.KeyFile, t.CAFile, t.RequireClientCert)
	}
	secs := max(int(b.o.Autosave/time.Second), 1)
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\npersistence_file mosquitto.db\nautosave_interval %d\n", b.dir, secs)
	fmt.Fprintf(&c, "max_queued_messages %d\nmax_queued_bytes 0\n", b.o.MaxQueued)
	fmt.Fprintf(&c, "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n",
		filepath.Join(b.dir, LogFile))
	if os.Geteuid() == 0 {
		// As root mosquitto would switch to the user "mosquitto", who
		// cannot write the test's temp dir.
		c.WriteString("user root\n")
	}
	for _, l := range b.o.Conf {
		c.WriteString(l + "\n")
	}
	return c.String()
}

// writePasswords writes the password file with mosquitto_passwd, which
// hashes them as the broker wants.
func (b *Broker) writePasswords(ctx context.Context) error {
	path := filepath.Join(b.dir, "passwords")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return err
	}
	names := make([]string, 0, len(b.o.Users))
	for u := range b.o.Users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		out, err := exec.CommandContext(ctx, "mosquitto_passwd", "-b", path, u, b.o.Users[u]).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mosquitto_passwd for user %q: %w: %s", u, err, out)
		}
	}
	return nil
}

// start runs the broker on b.port and waits until it answers CONNECT.
func (b *Broker) start(ctx context.Context) error {
	confPath := filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(b.conf()), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(b.dir, LogFile)
	var logStart int64
	if fi, err := os.Stat(logPath); err == nil {
		logStart = fi.Size()
	}
	var out bytes.Buffer                       // what it prints before its log is open
	cmd := exec.Command(b.bin, "-c", confPath) //nolint:noctx // the broker outlives ctx; Stop and Kill end it
	cmd.Dir = b.dir
	cmd.Stdout = &out
	cmd.Stderr = &out
	redisserver.Detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()
	if err := b.waitReady(ctx, p); err != nil {
		b.Kill()
		log := readFrom(logPath, logStart) + out.String()
		if strings.Contains(log, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("%w\n--- end of %s ---\n%s", err, logPath, lastLines(log, 30))
	}
	return nil
}

// waitReady connects until the broker answers CONNECT with a CONNACK.
func (b *Broker) waitReady(parent context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(parent, readyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var last error
	for {
		if last = b.probe(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("mosquitto on %s exited before answering CONNECT (%v)", b.Addr(), p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("mosquitto on %s did not answer CONNECT within %v: %w", b.Addr(), readyTimeout, last)
		case <-tick.C:
		}
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT: clean session, keep-alive 10s,
// an empty client id (the broker assigns one).
var connectPacket = []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, 0}

// probe sends CONNECT and wants a CONNACK (accepted or refused: a broker
// with users refuses an anonymous client, and is up all the same).
func (b *Broker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if t := b.o.TLS; t != nil {
		cfg := t.Client.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = "127.0.0.1"
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	if _, err := conn.Write(connectPacket); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 {
		return fmt.Errorf("want CONNACK, got packet type %#x", ack[0])
	}
	_, _ = conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return nil
}

func readFrom(path string, off int64) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if off > int64(len(data)) {
		off = 0
	}
	return string(data[off:])
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
