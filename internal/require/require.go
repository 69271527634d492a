// Package require lets a test say what it needs from the machine: root,
// a Docker engine, a command. When a need is not met the test is skipped
// with the reason, unless RUSTYNET_REQUIRE asks for that need ("all", or a
// comma-separated list such as "root,docker"): then it fails, so CI cannot
// pass by skipping.
//
// Kernel features ("kernel:netem") are the exception: no setup script can
// add one to a kernel that lacks it, so "all" does not cover them; name
// them explicitly (RUSTYNET_REQUIRE=all,kernel:netem) on machines that
// have them.
package require

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Env is the variable that turns skips into failures.
const Env = "RUSTYNET_REQUIRE"

// Required reports whether RUSTYNET_REQUIRE demands the named need.
func Required(need string) bool {
	v := os.Getenv(Env)
	if v == "" {
		return false
	}
	parts := strings.Split(v, ",")
	if slices.Contains(parts, need) {
		return true
	}
	return slices.Contains(parts, "all") && !strings.HasPrefix(need, "kernel:")
}

// Need skips or fails the test when ok is false.
func Need(t testing.TB, need string, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if Required(need) {
		t.Fatalf("%s is required (%s=%s) but not available: %s", need, Env, os.Getenv(Env), reason)
	}
	t.Skipf("needs %s: %s (set %s=%s to make this a failure)", need, reason, Env, need)
}

// Root requires running as root, as namespaces, TUN devices and routes do.
func Root(t testing.TB) {
	t.Helper()
	Need(t, "root", os.Geteuid() == 0, "not running as root")
}

// Command requires an executable on PATH and returns its path. need names
// the requirement (usually the command itself).
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, name, err == nil, name+" is not installed")
	return p
}

// Docker requires a reachable Docker engine.
func Docker(t testing.TB) {
	t.Helper()
	sock := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		sock = h
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := hc.Get("http://docker/_ping")
	ok := err == nil && resp.StatusCode == http.StatusOK
	reason := "no Docker engine answers on " + sock
	if err != nil {
		reason += ": " + err.Error()
	} else {
		resp.Body.Close()
	}
	Need(t, "docker", ok, reason)
}
