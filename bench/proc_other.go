//go:build !linux

package bench

import "syscall"

// childAttr is nil where there is no parent-death signal: a child outlives
// the bench process only if that dies without running its cleanups.
func childAttr() *syscall.SysProcAttr { return nil }
