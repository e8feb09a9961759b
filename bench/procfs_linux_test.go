//go:build linux

package bench

import (
	"os"
	"testing"
)

func TestProcOfSelf(t *testing.T) {
	x := 0
	for i := range 20_000_000 { // some CPU time to see
		x += i
	}
	_ = x
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("procCPU(self) = %v, %v; want a time, nil", cpu, err)
	}
	rss, err := procPeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("procPeakRSS(self) = %d, %v; want at least 1 MiB, nil", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU(-1) = nil error, want one")
	}
}
