//go:build !linux

package bench

import (
	"errors"
	"time"
)

var errNoProcfs = errors.New("no /proc on this system")

// procCPU is not available without /proc: the caller falls back to the
// CPU times of the exited process (which include its shutdown).
func procCPU(int) (time.Duration, error) { return 0, errNoProcfs }

// procPeakRSS is not available without /proc: peak RSS is reported as 0.
func procPeakRSS(int) (int64, error) { return 0, errNoProcfs }
