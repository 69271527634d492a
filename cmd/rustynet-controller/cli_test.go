package main

import (
	"testing"

	"github.com/rustynet/rustynet/internal/clitest"
)

// TestCommandLine: what the binary accepts and refuses, and how it exits,
// with no controller running: a refused command line exits 2 with
// nothing on stdout, before anything asks the admin socket, and says what
// was wrong in the user's words.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir() // no controller: only a command that runs reaches it
	clitest.Table(t, binary, []struct {
		Name        string
		Args        []string
		Code        int
		Want, Never []string // Want in stdout or stderr; Never in neither
	}{
		{"no command", nil, 2, []string{"Available Commands:", "give a command"}, nil},
		{"unknown command", []string{"serv"}, 2, []string{`unknown command "serv"`, "Did you mean this?"}, nil},
		{"unknown subcommand", []string{"node", "lst"}, 2, []string{`unknown command "lst": the commands are list, remove, rename; did you mean list?`}, nil},
		{"group without a command", []string{"authkey"}, 2, []string{"give a command: create, list, revoke"}, nil},
		{"unknown flag", []string{"node", "list", "--bogus", "--data-dir", dir}, 2, []string{"unknown flag: --bogus", "rustynet-controller node list --help"}, nil},
		{"single-dash long flag", []string{"node", "list", "-data-dir", dir}, 2, []string{"rustynet-controller node list:"}, nil},
		{"extra argument", []string{"node", "list", "extra", "--data-dir", dir}, 2, []string{`takes no arguments, got ["extra"]`}, nil},
		{"extra argument of serve", []string{"serve", "extra", "--data-dir", dir}, 2, []string{`takes no arguments, got ["extra"]`}, nil},
		{"missing argument", []string{"authkey", "revoke", "--data-dir", dir}, 2, []string{"want one ID"}, nil},
		{"rename with one name", []string{"node", "rename", "web1", "--data-dir", dir}, 2, []string{"want ID-OR-NAME NEW-NAME"}, nil},
		{"flag of serve given to node list", []string{"node", "list", "--listen", ":1", "--data-dir", dir}, 2, []string{"--listen is a flag of rustynet-controller serve, not of rustynet-controller node list"}, nil},
		{"flag of authkey create given to backup", []string{"backup", "--ttl", "1h", "--data-dir", dir}, 2, []string{"--ttl is a flag of rustynet-controller authkey create, not of rustynet-controller backup"}, nil},
		{"ttl without unit", []string{"authkey", "create", "--ttl", "3600", "--data-dir", dir}, 2, []string{`invalid value "3600" for --ttl: want a duration with its unit`}, []string{"time: missing unit"}},
		{"ttl too short", []string{"authkey", "create", "--ttl", "10ms", "--data-dir", dir}, 2, []string{"--ttl must be at least 1s"}, nil},
		{"max-conns not a number", []string{"serve", "--max-conns", "many", "--data-dir", dir}, 2, []string{`invalid value "many" for --max-conns: want a whole number`}, []string{"strconv"}},
		{"bad --ipv4-prefix", []string{"serve", "--ipv4-prefix", "100.64.0.0", "--data-dir", dir}, 2, []string{`--ipv4-prefix "100.64.0.0": want an IPv4 prefix such as 100.64.0.0/10`}, []string{"netip.ParsePrefix"}},
		{"bad --log-level", []string{"serve", "--log-level", "loud", "--data-dir", dir}, 2, []string{`--log-level "loud": want debug, info, warn or error`}, []string{"slog: level string"}},
		{"bad --log-format", []string{"serve", "--log-format", "xml", "--data-dir", dir}, 2, []string{`invalid value "xml" for --log-format: want text or json`}, nil},
		{"bad --format", []string{"backup", "--out", dir + "/b", "--format", "tar", "--data-dir", dir}, 2, []string{`invalid value "tar" for --format: want native or logical`}, nil},
		{"bad --json", []string{"node", "list", "--json=yes", "--data-dir", dir}, 2, []string{`invalid value "yes" for --json: want true or false`}, nil},
		{"backup without --out", []string{"backup", "--data-dir", dir}, 2, []string{"--out FILE is required"}, nil},
		{"--version", []string{"--version"}, 0, []string{"rustynet-controller " + testVersion + " (capability version"}, nil},
		{"version", []string{"version"}, 0, []string{"rustynet-controller " + testVersion + " (capability version"}, nil},
		{"help", []string{"--help"}, 0, []string{"Exit status:", "2  usage error", "serve", "authkey", "restore", "completion"}, nil},
		{"help of serve", []string{"serve", "--help"}, 0, []string{"Exit status:", "--config", "--listen", "--store bolt|etcd", "--tls-san", "--policy-file"}, nil},
		{"help of authkey create", []string{"authkey", "create", "--help"}, 0, []string{"Exit status:", "--reusable", "--ttl", "--tags", "--name", "--data-dir"}, nil},
		{"help of authkey list", []string{"authkey", "list", "--help"}, 0, []string{"Exit status:", "--json"}, nil},
		{"help of authkey revoke", []string{"help", "authkey", "revoke"}, 0, []string{"Exit status:", "revoke ID"}, nil},
		{"help of node list", []string{"node", "list", "-h"}, 0, []string{"Exit status:", "--json"}, nil},
		{"help of node remove", []string{"node", "remove", "--help"}, 0, []string{"Exit status:", "remove ID-OR-NAME"}, nil},
		{"help of node rename", []string{"node", "rename", "--help"}, 0, []string{"Exit status:", "rename ID-OR-NAME NEW-NAME"}, nil},
		{"help of policy set", []string{"policy", "set", "--help"}, 0, []string{"Exit status:", "set FILE"}, nil},
		{"help of policy get", []string{"policy", "get", "--help"}, 0, []string{"Exit status:", "--json"}, nil},
		{"help of backup", []string{"backup", "--help"}, 0, []string{"Exit status:", "--out", "--format native|logical"}, nil},
		{"help of restore", []string{"restore", "--help"}, 0, []string{"Exit status:", "--force", "--store bolt|etcd", "--etcd-prefix"}, nil},
		{"completion bash", []string{"completion", "bash"}, 0, []string{"bash completion V2 for rustynet-controller"}, nil},
		{"completion zsh", []string{"completion", "zsh"}, 0, []string{"#compdef rustynet-controller"}, nil},
		{"completion fish", []string{"completion", "fish"}, 0, []string{"complete -c rustynet-controller"}, nil},
		{"no controller", []string{"node", "list", "--data-dir", dir}, 1, []string{"no controller is running"}, []string{"--help"}},
	})
}
