//go:build unix && !linux

package redistest

import (
	"os/exec"
	"syscall"
)

// detach puts the command in a process group of its own, so that signal can
// reach all of it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signal sends sig to the process group led by pid.
func signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
