package pipelines

import (
	"net"
	"path/filepath"
	"testing"
)

// Any two files under configs/ run side by side on one machine: no two
// listen on the same HTTP port. Ports are compared whatever the host, as
// one file on 0.0.0.0 and another on 127.0.0.1 clash as well.
func TestConfigsHaveDistinctHTTPPorts(t *testing.T) {
	files := shippedConfigs(t)
	if len(files) < 2 {
		t.Fatalf("found %d files in configs/, want at least 2", len(files))
	}
	first := map[string]string{} // port → file
	for _, name := range files {
		f, err := Load(name, nil)
		if err != nil {
			t.Fatalf("Load(%s):\n%v", name, err)
		}
		if f.HTTP.Addr == "" { // off
			continue
		}
		_, port, err := net.SplitHostPort(f.HTTP.Addr)
		if err != nil {
			t.Fatalf("%s: http.addr %q: %v", name, f.HTTP.Addr, err)
		}
		if other, dup := first[port]; dup {
			t.Errorf("%s and %s both listen on port %s: give one of them another http.addr", other, filepath.Base(name), port)
			continue
		}
		first[port] = filepath.Base(name)
	}
}
