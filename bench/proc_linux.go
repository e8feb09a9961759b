//go:build linux

package bench

import "syscall"

// childAttr puts a child (a side, a redis-server) in a process group of its
// own, so that a Ctrl-C at the terminal reaches only the bench, which then
// stops it, and has the kernel kill it if the bench process dies without
// stopping it, so that none outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
