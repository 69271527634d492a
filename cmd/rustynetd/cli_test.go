package main

import (
	"testing"

	"github.com/rustynet/rustynet/internal/clitest"
)

// binary is rustynetd, built once for the tests that run it as a user
// does; testVersion is the version its -ldflags set, as the Makefile's do.
var binary string

const testVersion = clitest.Version

func TestMain(m *testing.M) {
	clitest.Main(m, "rustynetd", &binary, nil)
}

// TestCommandLine: what the binary accepts and refuses, and how it exits,
// before the node starts: a refused command line exits 2 with nothing on
// stdout, and says what was wrong in the user's words.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	ok := []string{"--state-dir", dir, "--controller", "https://a.example:8443", "--controller-ca", "/nonexistent/ca.pem"}
	with := func(args ...string) []string { return append(append([]string{}, ok...), args...) }
	clitest.Table(t, binary, []struct {
		Name        string
		Args        []string
		Code        int
		Want, Never []string // Want in stdout or stderr; Never in neither
	}{
		{"no flags", nil, 2, []string{"--controller and --controller-ca are required"}, nil},
		{"unknown flag", with("--bogus"), 2, []string{"unknown flag: --bogus", "rustynetd --help"}, nil},
		{"single-dash long flag", []string{"-state-dir", dir}, 2, []string{"rustynetd: unknown shorthand flag"}, nil},
		{"extra argument", with("extra"), 2, []string{`want no arguments (every setting is a flag), got 1 arguments: ["extra"]`}, nil},
		{"bad --mtu", with("--mtu", "big"), 2, []string{`invalid value "big" for --mtu: want a whole number`}, []string{"strconv"}},
		{"bad --listen-port", with("--listen-port", "-1"), 2, []string{`invalid value "-1" for --listen-port: want a whole number, 0 or more`}, []string{"strconv"}},
		{"port out of range", with("--listen-port", "70000"), 2, []string{"--listen-port 70000 is not a port"}, nil},
		{"bad --probe-interval", with("--probe-interval", "10"), 2, []string{`invalid value "10" for --probe-interval: want a duration with its unit`}, []string{"missing unit"}},
		{"bad --pq", with("--pq=maybe"), 2, []string{`invalid value "maybe" for --pq: want true or false`}, nil},
		{"bad --log-format", with("--log-format", "xml"), 2, []string{`invalid value "xml" for --log-format: want text or json`}, nil},
		{"bad --log-level", with("--log-level", "loud"), 2, []string{`--log-level "loud": want debug, info, warn or error`}, []string{"slog: level string"}},
		{"flag value missing", []string{"--state-dir"}, 2, []string{"flag needs an argument: --state-dir"}, nil},
		{"--version", []string{"--version"}, 0, []string{"rustynetd " + testVersion + "\n"}, nil},
		{"--list-backends", []string{"--list-backends"}, 0, []string{"wireguard preshared-keys\n", "quic post-quantum\n"}, nil},
		{"help", []string{"--help"}, 0, []string{"Exit status:", "2  usage error", "--controller", "--config", "--netstack", "--log-format text|json", "--pq", "rustynetd completion bash|zsh|fish"}, nil},
		{"help -h", []string{"-h"}, 0, []string{"Exit status:", "--state-dir"}, nil},
		{"completion bash", []string{"completion", "bash"}, 0, []string{"bash completion V2 for rustynetd"}, nil},
		{"completion zsh", []string{"completion", "zsh"}, 0, []string{"#compdef rustynetd"}, nil},
		{"completion fish", []string{"completion", "fish"}, 0, []string{"complete -c rustynetd"}, nil},
		{"help of completion", []string{"completion", "bash", "--help"}, 0, []string{"bash"}, nil},
	})
}
