package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	return gateEnv(t, nil, args...)
}

// gateEnv runs the binary with env added to this process's environment.
func gateEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
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

	// A partial run (--gates): it passes on the gates it ran, says what
	// the channel also requires, verifies as partial, and cannot be
	// published as a verdict on the channel.
	partial := filepath.Join(t.TempDir(), "b2")
	out, code = gate(t, "run", "--policy", writePolicy(t, "build, architecture, crypto-policy"), "--channel", "nightly",
		"--gates", "architecture", "--out", partial, "--key", key)
	if code != 0 || !strings.Contains(out, "PASSED (partial run)") || !strings.Contains(out, "also requires crypto-policy") {
		t.Errorf("a partial run: exit %d, want 0, saying it is partial and what else the channel requires\n%s", code, out)
	}
	if out, code := gate(t, "verify", partial, "--pubkey", pub); code != 0 || !strings.Contains(out, "partial") ||
		!regexp.MustCompile(`crypto-policy +out-of-scope`).MatchString(out) {
		t.Errorf("verify of a partial bundle: exit %d, want 0, saying partial with crypto-policy out of scope\n%s", code, out)
	}
	if md, err := os.ReadFile(filepath.Join(partial, "report.md")); err != nil || !strings.Contains(string(md), "PASSED (partial run)") {
		t.Errorf("the partial run's report does not say it is partial (%v)", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	pubOut, pubCode := gateEnv(t, []string{"GITHUB_TOKEN=unused"}, "publish", partial, "--pubkey", pub, "--repo", "rustynet/rustynet", "--sha", strings.TrimSpace(string(head)))
	if pubCode != 2 || !strings.Contains(pubOut, "partial run") {
		t.Errorf("publish of a partial run: exit %d, want 2 refusing it\n%s", pubCode, pubOut)
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
