package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redisserver"
)

const (
	// readyTimeout bounds the wait until a started server's /-/ready
	// answers 200.
	readyTimeout = 30 * time.Second
	// readyPoll is how often the ready wait asks.
	readyPoll = 50 * time.Millisecond
	// stopTimeout is how long Stop gives the server after SIGTERM before
	// SIGKILL.
	stopTimeout = 5 * time.Second
	// portAttempts is how many free ports Start tries when another process
	// takes the chosen one before the server binds it.
	portAttempts = 5
	// requestTimeout bounds one HTTP API request.
	requestTimeout = 10 * time.Second
	// ConfigFile is the server's configuration, in its directory.
	ConfigFile = "prometheus.yml"
	// LogFile is the server's log (its stdout and stderr), in its directory.
	LogFile = "prometheus.log"
	// installHint says how to get the binaries.
	installHint = "install it (apt-get install -y prometheus, which brings promtool too), as scripts/test.sh does in CI"
)

// Server is one Prometheus started by Start. Its methods may be called from
// any goroutine.
type Server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	log  *os.File
}

// Binary returns the path of the prometheus binary, failing the test with
// how to install it when there is none.
func Binary(tb testing.TB) string { tb.Helper(); return lookPath(tb, "prometheus") }

// Promtool returns the path of promtool, failing the test with how to
// install it when there is none.
func Promtool(tb testing.TB) string { tb.Helper(); return lookPath(tb, "promtool") }

func lookPath(tb testing.TB, name string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("promtest: %s not found on PATH, so this test cannot run; %s", name, installHint)
	}
	return bin
}

// Start starts Prometheus on a free loopback port with a TSDB of its own
// (tb.TempDir) and returns once /-/ready answers 200. Its configuration
// file is what config returns for the server's own "127.0.0.1:port" (so
// that a job may scrape the server itself); relative paths in it, such as
// rule_files, are taken from the server's directory: give absolute ones.
// It is stopped when the test ends. The test fails when the server does not
// come up, quoting the end of its log.
func Start(tb testing.TB, config func(self string) string) *Server {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	for attempt := 1; ; attempt++ {
		port, err := redisserver.FreePort(tb.Context())
		if err != nil {
			tb.Fatalf("promtest: find a free port: %v", err)
		}
		s := &Server{dir: dir, port: port}
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config(s.Addr())), 0o600); err != nil {
			tb.Fatalf("promtest: write the configuration: %v", err)
		}
		err = s.start(tb.Context(), bin)
		if err == nil {
			tb.Cleanup(func() {
				if err := s.Stop(); err != nil {
					tb.Logf("promtest: %v", err)
				}
			})
			return s
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			tb.Fatalf("promtest: start prometheus: %v", err)
		}
	}
}

var errPortInUse = errors.New("port already in use")

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is http://127.0.0.1:port.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Dir is the server's directory: its configuration, TSDB and log.
func (s *Server) Dir() string { return s.dir }

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(filepath.Join(s.dir, LogFile))
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	return lastLines(string(data), n)
}

// Stop ends the server with SIGTERM and waits for it to exit; after 5s it
// is killed and Stop says so. Stop does nothing once the server has exited.
func (s *Server) Stop() error {
	defer func() { _ = s.log.Close() }()
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-s.done:
		return nil
	case <-t.C:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	return fmt.Errorf("prometheus on %s did not exit within %v of SIGTERM; killed it", s.Addr(), stopTimeout)
}

// start runs the server on s.port and waits until it is ready.
func (s *Server) start(ctx context.Context, bin string) error {
	logFile, err := os.OpenFile(filepath.Join(s.dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	s.log = logFile
	s.cmd = exec.Command(bin, //nolint:noctx // the server outlives ctx; Stop ends it
		"--config.file="+filepath.Join(s.dir, ConfigFile),
		"--storage.tsdb.path="+filepath.Join(s.dir, "data"),
		"--web.listen-address="+s.Addr(),
		"--log.level=info",
	)
	s.cmd.Dir = s.dir
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	redisserver.Detach(s.cmd)
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.done = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = logFile.Close()
		log := s.LogTail(30)
		if strings.Contains(log, "address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("%w\n--- end of %s ---\n%s", err, filepath.Join(s.dir, LogFile), log)
	}
	return nil
}

// waitReady asks /-/ready until it answers 200.
func (s *Server) waitReady(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, readyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var last error
	for {
		if last = s.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("prometheus on %s exited before it was ready (%v)", s.Addr(), s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("prometheus on %s was not ready within %v: %w", s.Addr(), readyTimeout, last)
		case <-tick.C:
		}
	}
}

func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/-/ready", http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /-/ready: %s", resp.Status)
	}
	return nil
}

// Sample is one series of an instant query's result: its labels and its
// value as Prometheus formats it ("1", "0.25", "NaN").
type Sample struct {
	Metric map[string]string
	Value  string
}

// Query runs expr as an instant query at the current time
// (/api/v1/query) and returns its samples. A scalar result is one sample
// without labels. An error names the query and quotes Prometheus's.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := s.get(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return nil, fmt.Errorf("query %q: decode the vector: %w", expr, err)
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			val, _ := v.Value[1].(string)
			out = append(out, Sample{Metric: v.Metric, Value: val})
		}
		return out, nil
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(data.Result, &sc); err != nil {
			return nil, fmt.Errorf("query %q: decode the scalar: %w", expr, err)
		}
		val, _ := sc[1].(string)
		return []Sample{{Value: val}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want vector or scalar", expr, data.ResultType)
	}
}

// LabelValues returns the values of label over the series that match the
// selectors (/api/v1/label/<label>/values?match[]=…): what Grafana's
// label_values(selector, label) lists.
func (s *Server) LabelValues(ctx context.Context, label string, match ...string) ([]string, error) {
	var vals []string
	if err := s.get(ctx, "/api/v1/label/"+url.PathEscape(label)+"/values", url.Values{"match[]": match}, &vals); err != nil {
		return nil, fmt.Errorf("label values of %s for %v: %w", label, match, err)
	}
	return vals, nil
}

// Rule is one rule of /api/v1/rules: its name (an alert's or a recording
// rule's), its health after its last evaluation ("ok", "err", "unknown")
// and that evaluation's error.
type Rule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// Rules returns every rule the server has loaded, from every group.
func (s *Server) Rules(ctx context.Context) ([]Rule, error) {
	var data struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := s.get(ctx, "/api/v1/rules", url.Values{}, &data); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var out []Rule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// get calls an API endpoint and decodes the data of a success into out.
func (s *Server) get(ctx context.Context, path string, q url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path+"?"+q.Encode(), http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: not the API's JSON: %w: %s", resp.Status, err, bytes.TrimSpace(body))
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", resp.Status, env.ErrorType, env.Error)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("decode the data: %w", err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
