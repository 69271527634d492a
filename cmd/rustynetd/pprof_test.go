package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: --debug-pprof-listen refuses an address that is
// not loopback, before anything starts.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.0.0.1:6060", "[::]:6060", "example.com:6060", "localhost:6060", "6060"} {
		var stderr bytes.Buffer
		args := []string{"--state-dir", t.TempDir(), "--controller", "https://a.example:8443", "--controller-ca", "/nonexistent/ca.pem", "--debug-pprof-listen", addr}
		if code := run(args, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--debug-pprof-listen") {
			t.Errorf("--debug-pprof-listen %s: exit %d, %q; want exit 2 refusing it", addr, code, stderr.String())
		}
	}
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "127.0.0.2:0"} {
		if err := loopbackOnly(addr); err != nil {
			t.Errorf("loopbackOnly(%q) = %v, want nil", addr, err)
		}
	}
}
