package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is one side's process: the eddy binary running `run` or
// `bench-baseline`.
type child struct {
	name    string // the side, for errors
	cmd     *exec.Cmd
	stderr  *tailBuffer
	started time.Time
	done    chan struct{} // closed once the process has exited and been reaped
}

// usage is what a child used up to the moment it was sampled.
type usage struct {
	cpu     time.Duration // user + system
	peakRSS int64         // bytes; 0 when unknown
	fromRun bool          // cpu was read while running (not from the exit status)
}

// startChild starts exe with args and EDDY_REDIS_URL=redisURL; its stderr is kept (the last 64 KiB)
// for error messages. The caller ends it with stop, or kill.
func startChild(name, exe, redisURL string, args []string) (*child, error) {
	c := &child{name: name, stderr: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	c.cmd = exec.Command(exe, args...) //nolint:noctx // stopped by stop or kill, with a signal of our choice
	c.cmd.Env = append(os.Environ(), "EDDY_REDIS_URL="+redisURL)
	c.cmd.Stderr = c.stderr
	c.cmd.SysProcAttr = childAttr()
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, exe, err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// sample reads the CPU time and peak RSS of the running process from /proc.
// Where there is no /proc it returns zeros, and stop fills in the CPU time
// from the exit status.
func (c *child) sample() usage {
	var u usage
	if cpu, err := procCPU(c.cmd.Process.Pid); err == nil {
		u.cpu, u.fromRun = cpu, true
	}
	if rss, err := procPeakRSS(c.cmd.Process.Pid); err == nil {
		u.peakRSS = rss
	}
	return u
}

// stop sends SIGTERM and waits for the process to exit, at most timeout; it
// then kills it. It returns an error, with the end of the process's stderr,
// unless the process exited 0 on its own. u, if not nil and not read while
// running, gets the CPU time from the exit status.
func (c *child) stop(ctx context.Context, timeout time.Duration, u *usage) error {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed it%s", c.name, timeout, c.log())
	case <-ctx.Done():
		c.kill()
		return ctx.Err()
	}
	if u != nil && !u.fromRun {
		u.cpu = c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()
	}
	if !c.cmd.ProcessState.Success() {
		return fmt.Errorf("%s exited with %v after SIGTERM%s", c.name, c.cmd.ProcessState, c.log())
	}
	return nil
}

// kill ends the process with SIGKILL, if it is still running, and waits.
func (c *child) kill() {
	if !c.exited() {
		_ = c.cmd.Process.Kill()
	}
	<-c.done
}

// failure is the error for a process that exited when it should not have.
func (c *child) failure() error {
	<-c.done
	return fmt.Errorf("%s exited early with %v%s", c.name, c.cmd.ProcessState, c.log())
}

// log is the end of the process's stderr, for an error message.
func (c *child) log() string {
	s := strings.TrimSpace(c.stderr.String())
	if s == "" {
		return " (stderr empty)"
	}
	return "; its stderr ends:\n" + s
}

// tailBuffer is an io.Writer that keeps the last max bytes written, safe
// for one writer and concurrent readers.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = t.b[over:]
		if i := bytes.IndexByte(t.b, '\n'); i >= 0 {
			t.b = t.b[i+1:] // start at a whole line
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
