package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestControllerFlag: --controller takes one URL or a comma-separated list
// of replicas, and refuses an empty entry, a URL that is not
// https://HOST:PORT and a URL listed twice, saying which.
func TestControllerFlag(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"https://a.example:8443,https://A.example:8443/", `"https://a.example:8443" is listed twice`},
		{"https://a.example:8443,", "controller URL 2 of 2 is empty"},
		{"http://a.example:8443", "not https://"},
		{"https://a.example:8443/v1", "only a host and a port"},
	} {
		var stderr bytes.Buffer
		code := run([]string{"--state-dir", t.TempDir(), "--controller", tc.value, "--controller-ca", "/nonexistent/ca.pem"}, &bytes.Buffer{}, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "--controller: ") || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("rustynetd --controller %q: exit %d, %q; want exit 2 and an error about %q", tc.value, code, stderr.String(), tc.want)
		}
	}
	// A good list gets past the flag, to the CA file.
	var stderr bytes.Buffer
	code := run([]string{"--state-dir", t.TempDir(), "--controller", "https://a.example:8443, https://b.example:8443", "--controller-ca", "/nonexistent/ca.pem"}, &bytes.Buffer{}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "controller CA") {
		t.Errorf("rustynetd with two replicas and a missing CA file: exit %d, %q; want exit 2 and an error about the CA", code, stderr.String())
	}
}

func TestMeasureRouteApplyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--measure-route-apply", "-1"}, "--measure-route-apply -1: want 1 to 131072 routes"},
		{[]string{"--measure-route-apply", "200000"}, "--measure-route-apply 200000"},
		{[]string{"--measure-route-apply", "10", "--measure-repetitions", "0"}, "--measure-repetitions 0: want 1 to 100000"},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("rustynetd %q: exit %d, %q; want exit 2 and an error about %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestProbeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--probe-peers", "-1"}, "--probe-peers -1: want 0 (every peer) or more"},
		{[]string{"--probe-log", "/nonexistent/dir/probes.jsonl"}, "--probe-log: open /nonexistent/dir/probes.jsonl"},
		{[]string{"--netmap-log", "/nonexistent/dir/netmaps.jsonl"}, "--netmap-log: open /nonexistent/dir/netmaps.jsonl"},
	} {
		var stderr bytes.Buffer
		args := append([]string{"--state-dir", t.TempDir(), "--controller", "https://a.example:8443", "--controller-ca", "/nonexistent/ca.pem"}, tc.args...)
		if code := run(args, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("rustynetd %q: exit %d, %q; want exit 2 and an error about %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestConfigFile: settings come from --config FILE, the command line wins
// over it, and a file naming an unknown setting or an action is refused
// with its line.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string
	}{
		// From the file alone: past the flags, to the CA file.
		{"settings", "state-dir: " + dir + "\ncontroller: https://a.example:8443\ncontroller-ca: /nonexistent/ca.pem\n", nil, "controller CA"},
		// The command line's --controller wins over the file's bad one.
		{"override", "state-dir: " + dir + "\ncontroller: http://a.example:8443\ncontroller-ca: /nonexistent/ca.pem\n",
			[]string{"--controller", "https://b.example:8443"}, "controller CA"},
		{"unknown", "state-dir: " + dir + "\ncontroler: https://a.example:8443\n", nil, "n.yaml:2: unknown setting \"controler\" (did you mean controller?)"},
		{"action", "version: true\n", nil, "n.yaml:1: unknown setting \"version\""},
		{"bad value", "mtu: big\n", nil, "n.yaml:1: mtu: \"big\": want a whole number"},
	} {
		file := write("n.yaml", tc.file)
		var stderr bytes.Buffer
		code := run(append([]string{"--config", file}, tc.args...), &bytes.Buffer{}, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, %q; want exit 2 saying %q", tc.name, code, stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--config", dir + "/missing.yaml"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--config: open") {
		t.Errorf("a missing config file: exit %d, %q", code, stderr.String())
	}
	if code := run([]string{"--log-level", "loud", "--controller", "https://a.example:8443", "--controller-ca", "x"}, &bytes.Buffer{}, &stderr); code != 2 ||
		strings.Contains(stderr.String(), "slog:") || !strings.Contains(stderr.String(), "want debug, info, warn or error") {
		t.Errorf("--log-level loud: exit %d, %q; want 2 in words, no slog error", code, stderr.String())
	}
}
