package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

// The Mosquitto broker of eddy bench-ingest. internal/mosquittotest starts
// brokers for tests only (it takes a testing.TB); this is the same
// launcher's few steps for a binary: a free loopback port, a configuration
// file of its own, the wait until the broker answers CONNECT, and the
// stop.

// ErrNoMosquitto is returned by startMosquitto when mosquitto is not found.
var ErrNoMosquitto = errors.New("mosquitto not found on PATH or in /usr/sbin: install it (apt-get install -y mosquitto)")

const (
	// mosquittoReady bounds the wait until a started broker answers.
	mosquittoReady = 10 * time.Second
	// mosquittoStop is how long Stop waits after SIGTERM before SIGKILL.
	mosquittoStop = 5 * time.Second
	// mosquittoLog is the broker's log, in its directory.
	mosquittoLog = "mosquitto.log"
)

// sbinMosquitto is where Debian puts mosquitto, outside a non-root
// user's PATH; a variable for tests.
var sbinMosquitto = "/usr/sbin/mosquitto"

// mosquitto is a broker started by startMosquitto.
type mosquitto struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	addr string        // 127.0.0.1:port
	dir  string
}

// startMosquitto starts a broker on a free 127.0.0.1 port with dir as its
// directory (configuration and log; no persistence: the benchmark needs
// none), with no cap on the QoS 1 messages in flight or queued per client,
// so that it never drops one for a subscriber that is behind, and with
// TCP_NODELAY on its sockets. It returns once the broker answers CONNECT.
func startMosquitto(ctx context.Context, dir string) (*mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat(sbinMosquitto); serr != nil {
			return nil, ErrNoMosquitto
		}
		bin = sbinMosquitto
	}
	var last error
	for range 5 { // another process may take the free port first
		port, err := redisserver.FreePort(ctx)
		if err != nil {
			return nil, fmt.Errorf("find a free port for mosquitto: %w", err)
		}
		m, err := runMosquitto(ctx, bin, dir, port)
		if err == nil {
			return m, nil
		}
		last = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return nil, last
}

func runMosquitto(ctx context.Context, bin, dir string, port int) (*mosquitto, error) {
	conf := filepath.Join(dir, "mosquitto.conf")
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	c.WriteString("max_inflight_messages 0\nmax_queued_messages 0\nmax_queued_bytes 0\n")
	// Without it a PUBACK or a delivery can wait for Nagle's algorithm
	// and the peer's delayed ACK (up to 40ms on Linux).
	c.WriteString("set_tcp_nodelay true\n")
	fmt.Fprintf(&c, "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\n", filepath.Join(dir, mosquittoLog))
	if os.Geteuid() == 0 {
		c.WriteString("user root\n") // else it switches to "mosquitto", who cannot write dir
	}
	if err := os.WriteFile(conf, []byte(c.String()), 0o600); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", conf) //nolint:noctx // the broker outlives ctx; stop ends it
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	redisserver.Detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	m := &mosquitto{cmd: cmd, done: make(chan struct{}), addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	go func() {
		_ = cmd.Wait()
		close(m.done)
	}()
	if err := m.waitReady(ctx); err != nil {
		m.kill()
		logText, _ := os.ReadFile(filepath.Join(dir, mosquittoLog))
		return nil, fmt.Errorf("mosquitto on %s: %w\n%s%s", m.addr, err, out.String(), lastLines(string(logText), 20))
	}
	return m, nil
}

// URL is the broker's mqtt:// URL.
func (m *mosquitto) URL() string { return "mqtt://" + m.addr }

// pid is the broker's process id.
func (m *mosquitto) pid() int { return m.cmd.Process.Pid }

// waitReady connects until the broker answers CONNECT with a CONNACK.
func (m *mosquitto) waitReady(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, mosquittoReady)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = m.probe(ctx); last == nil {
			return nil
		}
		select {
		case <-m.done:
			return fmt.Errorf("exited before answering CONNECT (%v)", m.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("no CONNACK within %v: %w", mosquittoReady, last)
		case <-tick.C:
		}
	}
}

func (m *mosquitto) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	cli := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := cli.Connect(ctx, &paho.Connect{ClientID: "eddy-bench-probe", CleanStart: true, KeepAlive: 10}); err != nil {
		_ = conn.Close()
		return err
	}
	_ = cli.Disconnect(&paho.Disconnect{})
	return nil
}

// stop ends the broker with SIGTERM and waits for it to exit; after
// mosquittoStop it kills it and says so.
func (m *mosquitto) stop() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(mosquittoStop)
	defer t.Stop()
	select {
	case <-m.done:
		return nil
	case <-t.C:
	}
	m.kill()
	return fmt.Errorf("mosquitto on %s did not exit within %v of SIGTERM; killed it", m.addr, mosquittoStop)
}

func (m *mosquitto) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
