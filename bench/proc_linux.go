//go:build linux

package bench

import "syscall"

// childAttr has the kernel kill a child (a side, a redis-server) if the
// bench process dies without stopping it, so that none outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
