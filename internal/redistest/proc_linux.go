//go:build linux

package redistest

import (
	"os/exec"
	"syscall"
)

// detach puts the command in a process group of its own, so that signal can
// reach all of it, and has the kernel kill it if the test binary dies without
// running its cleanups (a -timeout panic, a SIGKILL), so that no server
// outlives the test run.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signal sends sig to the process group led by pid.
func signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
