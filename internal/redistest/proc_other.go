//go:build !unix

package redistest

import (
	"os"
	"os/exec"
	"syscall"
)

func detach(*exec.Cmd) {}

// signal stops the process pid; without process groups and SIGTERM it can
// only kill the process itself.
func signal(pid int, _ syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
