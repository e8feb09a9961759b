//go:build unix && !linux

package redisserver

import (
	"os/exec"
	"syscall"
)

// Detach puts cmd, not yet started, in a process group of its own, so that
// a stop can signal all of it and a Ctrl-C at a terminal does not reach it.
// There is no parent-death signal here: a server outlives our process if
// that dies without stopping it.
func Detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signal sends sig to the process group led by pid.
func signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
