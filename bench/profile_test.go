package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// The profiler writes each profile the side serves to a file of its own
// until it is stopped, and says why when the side answers with an error.
func TestProfiler(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/profile" || r.URL.Query().Get("seconds") != "1" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusNotFound)
			return
		}
		if served.Add(1) > 3 {
			http.Error(w, "profiling is off", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("profile"))
	}))
	t.Cleanup(srv.Close)
	dir := filepath.Join(t.TempDir(), "profiles")
	p, err := startProfiler(context.Background(), strings.TrimPrefix(srv.URL, "http://"), dir, "eddy_window-run1")
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Wait() // the fourth answer is an error: it stops on its own
	files, err := p.stop()
	if err == nil || !strings.Contains(err.Error(), "profiling is off") {
		t.Errorf("stop() error = %v, want the side's answer", err)
	}
	if len(files) != 3 {
		t.Fatalf("stop() files = %q, want 3", files)
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if want := filepath.Join(dir, "eddy_window-run1-"+string(rune('1'+i))+".pprof"); f != want || err != nil || string(b) != "profile" {
			t.Errorf("file %d: %s holds %q (%v), want %s with the profile", i, f, b, err, want)
		}
	}
}

// A side not listening yet is tried again until stop.
func TestProfilerNotListening(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProfiler(context.Background(), addr, t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.stop()
	if err != nil || len(files) != 0 {
		t.Errorf("stop() = %q, %v; want no files and no error", files, err)
	}
}
