package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// profileEvery is the length of each CPU profile taken of a profiled side
// (the seconds of /debug/pprof/profile); the run's profiles together cover
// it, less the gaps between two requests.
const profileEvery = time.Second

// profileRetry is the pause between tries while the side's HTTP listener
// is not up yet.
const profileRetry = 20 * time.Millisecond

// freeAddr returns a loopback address with a port free a moment ago, for
// a side's HTTP listener.
func freeAddr() (string, error) {
	l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port for the profiled side: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port for the profiled side: %w", err)
	}
	return addr, nil
}

// profiler takes back-to-back CPU profiles of a side served by `eddy run
// --pprof` at addr, writing each to dir as "<name>-<n>.pprof", until it
// is stopped.
type profiler struct {
	addr, dir, name string
	client          *http.Client
	cancel          context.CancelFunc
	stopping        chan struct{} // closed by stop: no profile after the current one
	once            sync.Once
	wg              sync.WaitGroup
	mu              sync.Mutex
	files           []string
	err             error // the first failure other than the stop
}

// startProfiler starts taking profiles; stop ends it.
func startProfiler(ctx context.Context, addr, dir, name string) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("profile directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &profiler{addr: addr, dir: dir, name: name, client: &http.Client{}, cancel: cancel, stopping: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.loop(ctx)
	}()
	return p, nil
}

// loop takes one profile after the other until ctx is done.
func (p *profiler) loop(ctx context.Context) {
	url := "http://" + p.addr + "/debug/pprof/profile?seconds=" + strconv.Itoa(int(profileEvery/time.Second))
	for n := 1; ctx.Err() == nil; {
		body, err := p.fetch(ctx, url)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && len(p.files) == 0 && isRefused(err):
			// not listening yet: try again shortly
			t := time.NewTimer(profileRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-p.stopping:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		case err != nil:
			p.fail(err)
			return
		}
		file := filepath.Join(p.dir, p.name+"-"+strconv.Itoa(n)+".pprof")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			p.fail(fmt.Errorf("write the profile: %w", err))
			return
		}
		p.mu.Lock()
		p.files = append(p.files, file)
		p.mu.Unlock()
		n++
		select {
		case <-p.stopping:
			return
		default:
		}
	}
}

// fetch returns one profile.
func (p *profiler) fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end below
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the profile from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, nil
}

// isRefused reports whether err is a refused connection.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (p *profiler) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// stop ends the profiling once the profile being taken is written (or
// after twice its length) and returns the files written and the first
// failure.
func (p *profiler) stop() ([]string, error) {
	p.once.Do(func() {
		close(p.stopping)
		t := time.AfterFunc(2*profileEvery, p.cancel)
		p.wg.Wait()
		t.Stop()
		p.cancel()
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.files, p.err
}
