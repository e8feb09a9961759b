//go:build linux

package redisserver

import (
	"os/exec"
	"syscall"
)

// Detach puts cmd, not yet started, in a process group of its own, so that
// a stop can signal all of it and a Ctrl-C at a terminal does not reach it,
// and has the kernel kill it if our process dies without stopping it (a
// test's -timeout panic, a SIGKILL), so that it does not outlive us. Start
// does this to each server; redistest does it to redis-cli.
func Detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signal sends sig to the process group led by pid.
func signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
