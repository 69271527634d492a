package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/evidence"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rustynet-gate-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rustynet-gate")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func gate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func writePolicy(t *testing.T, gates string) string {
	p := filepath.Join(t.TempDir(), "release.yaml")
	os.WriteFile(p, []byte("version: 1\nchannels:\n  nightly:\n    gates: ["+gates+"]\n"), 0o644)
	return p
}

// TestRunVerifyTamper runs the build and architecture gates for real,
// verifies the bundle, and checks every exit status: pass, blocked,
// invalid (tampered, wrong key) and usage.
func TestRunVerifyTamper(t *testing.T) {
	keys := t.TempDir()
	if out, code := gate(t, "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	if fi, _ := os.Stat(filepath.Join(keys, "gate.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("gate.key mode %o, want 600", fi.Mode().Perm())
	}
	key, pub := filepath.Join(keys, "gate.key"), filepath.Join(keys, "gate.pub")

	bundle := filepath.Join(t.TempDir(), "b")
	out, code := gate(t, "run", "--policy", writePolicy(t, "build, architecture"), "--channel", "nightly", "--out", bundle, "--key", key)
	if code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	if out, code := gate(t, "verify", bundle, "--pubkey", pub); code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	html, err := os.ReadFile(filepath.Join(bundle, evidence.ReportHTML))
	if err != nil || !bytes.Contains(html, []byte("PASSED")) {
		t.Errorf("report.html: %v", err)
	}
	if out, code := gate(t, "report", bundle, "--format", "md", "--pubkey", pub); code != 0 || !strings.Contains(out, "architecture") {
		t.Errorf("report --format md: exit %d\n%s", code, out)
	}

	// Wrong key: invalid.
	other := t.TempDir()
	gate(t, "keygen", "--out", other)
	if out, code := gate(t, "verify", bundle, "--pubkey", filepath.Join(other, "gate.pub")); code != 3 {
		t.Errorf("verify with the wrong key: exit %d, want 3\n%s", code, out)
	}
	// A changed artifact: invalid.
	res := filepath.Join(bundle, "artifacts", "architecture", "violations.json")
	data, _ := os.ReadFile(res)
	os.WriteFile(res, append(data, ' '), 0o644)
	if out, code := gate(t, "verify", bundle, "--pubkey", pub); code != 3 || !strings.Contains(out, "changed") {
		t.Errorf("verify of a changed artifact: exit %d, want 3\n%s", code, out)
	}
	os.WriteFile(res, data, 0o644)

	// A channel whose gates did not all run: valid evidence, blocked.
	blocked := filepath.Join(t.TempDir(), "b2")
	out, code = gate(t, "run", "--policy", writePolicy(t, "build, architecture, crypto-policy"), "--channel", "nightly",
		"--gates", "architecture", "--out", blocked, "--key", key)
	if code != 1 || !strings.Contains(out, "BLOCKED") || !strings.Contains(out, "crypto-policy") {
		t.Errorf("run with a required gate left out: exit %d, want 1\n%s", code, out)
	}
	if out, code := gate(t, "verify", blocked, "--pubkey", pub); code != 1 {
		t.Errorf("verify of a blocked bundle: exit %d, want 1\n%s", code, out)
	}

	// Usage errors.
	if out, code := gate(t, "run", "--policy", writePolicy(t, "build, fuzzing"), "--channel", "nightly", "--out", t.TempDir(), "--key", key); code != 2 || !strings.Contains(out, "not registered") {
		t.Errorf("a policy naming an unknown gate: exit %d, want 2\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nchannels: [\n"), 0o644)
	if out, code := gate(t, "run", "--policy", bad, "--channel", "nightly", "--out", t.TempDir(), "--key", key); code != 2 || !strings.Contains(out, "bad.yaml:") {
		t.Errorf("malformed YAML: exit %d, want 2 with the file and line\n%s", code, out)
	}
	if _, code := gate(t, "verify", bundle); code != 2 {
		t.Errorf("verify without --pubkey: exit %d, want 2", code)
	}
}
