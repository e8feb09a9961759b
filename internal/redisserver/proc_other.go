//go:build !unix

package redisserver

import (
	"os"
	"os/exec"
	"syscall"
)

// Detach does nothing where there are no process groups.
func Detach(*exec.Cmd) {}

// signal stops the process pid; without process groups and SIGTERM it can
// only kill the process itself.
func signal(pid int, _ syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
