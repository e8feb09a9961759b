//go:build linux

package bench

import (
	"time"

	"github.com/prometheus/procfs"
)

// procCPU returns the user plus system CPU time pid has used so far, from
// /proc/<pid>/stat (10ms resolution).
func procCPU(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}

// procPeakRSS returns the peak resident set size of pid in bytes, VmHWM
// from /proc/<pid>/status.
func procPeakRSS(pid int) (int64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, err
	}
	return int64(st.VmHWM), nil //nolint:gosec // a process's RSS fits in int64
}
