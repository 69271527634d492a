package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
)

// TestConfigAndHangup serves from a config file (with the command line
// overriding it), keeps the ACL policy in a policy file, and on SIGHUP
// reloads the file's log level and the policy file: a policy that does not
// parse is refused and the one in force kept.
func TestConfigAndHangup(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	conf := filepath.Join(dir, "controller.yaml")
	first := "acls:\n  - action: accept\n    src: [\"tag:web\"]\n    dst: [\"tag:web\"]\n"
	os.WriteFile(policy, []byte(first), 0o600)
	os.WriteFile(conf, []byte("# the test's controller\nlog-level: info\npolicy-file: "+policy+"\nmax-conns: 50\nlisten: 127.0.0.1:1\n"), 0o600)
	// ServeArgs' --listen (a free port) overrides the file's, which no
	// controller could bind.
	p := controllertest.StartProcess(t, binary, dir, "--config", conf)
	getPolicy := func() string {
		out, stderr, code := ctl(t, "", "policy", "get", "--data-dir", dir)
		if code != 0 {
			t.Fatalf("policy get: %d %s", code, stderr)
		}
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s\n%s", what, p.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the policy file applied at start", func() bool { return getPolicy() == first })

	second := strings.Replace(first, "tag:web", "tag:db", 2)
	os.WriteFile(policy, []byte(second), 0o600)
	os.WriteFile(conf, []byte("log-level: debug\npolicy-file: "+policy+"\n"), 0o600)
	p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the policy file applied on SIGHUP", func() bool { return getPolicy() == second })
	waitFor("the log level reloaded", func() bool { return strings.Contains(p.Logs(), "log_level=DEBUG") })

	// A policy that does not parse: refused, the one in force kept, the
	// controller still serving.
	os.WriteFile(policy, []byte("acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"everyone\"]\n"), 0o600)
	p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the bad policy refused", func() bool {
		return strings.Contains(p.Logs(), "policy file not applied; the policy in force is unchanged")
	})
	if got := getPolicy(); got != second {
		t.Errorf("after a bad policy file, the policy in force is %q, want %q", got, second)
	}
	if err := p.Wait(0); !strings.Contains(fmt.Sprint(err), "still running") {
		t.Fatalf("the controller exited on SIGHUP: %v", err)
	}

	// A config file naming an unknown setting is refused at start, with
	// its line.
	os.WriteFile(conf, []byte("listen: :8443\npolcy-file: x\n"), 0o600)
	_, stderr, code := ctl(t, "", "serve", "--data-dir", t.TempDir(), "--config", conf)
	if code != 2 || !strings.Contains(stderr, "controller.yaml:2: unknown setting \"polcy-file\" (did you mean policy-file?)") {
		t.Errorf("serve with an unknown setting: exit %d, %q", code, stderr)
	}
}
