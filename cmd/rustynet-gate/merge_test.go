package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// exitOf is the exit status run gives a command's error.
func exitOf(err error) int {
	var ee *exitError
	var ie *evidence.InvalidError
	switch {
	case err == nil:
		return exitPass
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ie):
		return exitInvalid
	}
	return exitUsage
}

// TestMerge merges partial bundles, made as run makes them (its reports
// too) by cheap gates, through the command: every exit status, the
// merged bundle verifies and its reports are what it renders to.
func TestMerge(t *testing.T) {
	var reg gates.Registry
	fail := map[string]bool{}
	bin := filepath.Join(t.TempDir(), "rustynetd")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"build", "a", "b"} {
		reg.Register(gates.Spec{Name: name, Owner: "sre", Timeout: 5 * time.Second, Run: func(_ context.Context, r *gates.Run) error {
			if name == "build" {
				r.Built(map[string]string{"rustynetd": bin})
			}
			if err := r.Artifact("data.txt", []byte(name)); err != nil {
				return err
			}
			if fail[name] {
				return gates.Fail("%s failed", name)
			}
			return nil
		}})
	}
	pol, err := policies.ParseRelease("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [a, b]\n"), reg.Has)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if _, err := evidence.Keygen(keys, evidence.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(keys, evidence.PrivateKeyFile)
	signer, err := evidence.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := evidence.VerifierFromKey(signer.Public())
	partial := func(names ...string) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "partial")
		if _, err := gates.Execute(context.Background(), gates.Options{Registry: &reg, Policy: pol, Channel: "nightly", Gates: names, Out: out,
			Signer: signer, Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := writeReports(out, pub, &reg); err != nil {
			t.Fatal(err)
		}
		return out
	}
	merge := func(args ...string) (string, int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := mergeWith(&reg, args, &stdout, &stderr)
		if err != nil {
			stderr.WriteString(err.Error())
		}
		return stdout.String() + stderr.String(), exitOf(err)
	}
	pa, pb := partial("a"), partial("b")

	out := filepath.Join(t.TempDir(), "merged")
	if got, code := merge("--out", out, "--key", key, pa, pb); code != exitPass || !strings.Contains(got, "PASSED: channel nightly") ||
		!strings.Contains(got, "merged from 2 partial bundles") {
		t.Fatalf("merge: exit %d, want %d\n%s", code, exitPass, got)
	}
	res, err := gates.VerifyBundle(out, pub, gates.VerifyOptions{Registry: &reg})
	if err != nil || !res.Verdict.Passed || res.Verdict.Partial() {
		t.Fatalf("VerifyBundle(merged) = %+v, %v; want a pass of the whole channel", res, err)
	}
	if reports, err := checkReports(res); err != nil || len(reports) != 2 {
		t.Errorf("the merged bundle's reports: %v, %v; want both what its evidence renders to", reports, err)
	}

	// One partial: a partial pass, exit 4; as JSON too.
	if got, code := merge("--out", filepath.Join(t.TempDir(), "m"), "--key", key, pa); code != exitPartialPass || !strings.Contains(got, "partial run") {
		t.Errorf("merge of one partial: exit %d, want %d\n%s", code, exitPartialPass, got)
	}
	var stdout bytes.Buffer
	err = mergeWith(&reg, []string{"--json", "--out", filepath.Join(t.TempDir(), "m"), "--key", key, pa}, &stdout, &bytes.Buffer{})
	var vj verdictJSON
	if jerr := json.Unmarshal(stdout.Bytes(), &vj); jerr != nil || exitOf(err) != exitPartialPass || vj.Outcome != outcomePartialPass || !vj.Partial {
		t.Errorf("merge --json: exit %d, %+v (%v)", exitOf(err), vj, jerr)
	}

	// A failed gate in a partial: blocked, exit 1.
	fail["b"] = true
	failed := partial("b")
	if got, code := merge("--out", filepath.Join(t.TempDir(), "m"), "--key", key, pa, failed); code != exitBlocked || !strings.Contains(got, "blocking: b") {
		t.Errorf("merge with a failed gate: exit %d, want %d\n%s", code, exitBlocked, got)
	}

	// A changed report in a partial: invalid, as verify says, exit 3.
	tampered := filepath.Join(t.TempDir(), "tampered")
	if err := os.CopyFS(tampered, os.DirFS(pb)); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(tampered, evidence.ReportMD)
	data, _ := os.ReadFile(md)
	data[len(data)/2] ^= 1
	os.WriteFile(md, data, 0o644)
	if got, code := merge("--out", filepath.Join(t.TempDir(), "m"), "--key", key, pa, tampered); code != exitInvalid || !strings.Contains(got, "report.md") {
		t.Errorf("merge with a changed report: exit %d, want %d\n%s", code, exitInvalid, got)
	}

	// Signed with another key: invalid, exit 3.
	other := t.TempDir()
	evidence.Keygen(other, evidence.ECDSAP256)
	if got, code := merge("--out", filepath.Join(t.TempDir(), "m"), "--key", filepath.Join(other, evidence.PrivateKeyFile), pa, pb); code != exitInvalid {
		t.Errorf("merge with another key: exit %d, want %d\n%s", code, exitInvalid, got)
	}

	// Usage, and bundles that do not merge: exit 2.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", key, pa}, "--out DIR is required"},
		{[]string{"--out", filepath.Join(t.TempDir(), "m"), "--key", key}, "want PARTIAL..."},
		{[]string{"--out", out, "--key", key, pa}, "is not empty"},
		{[]string{"--out", filepath.Join(t.TempDir(), "m"), "--key", key, pa, partial("a")}, "gate a ran in both"},
	} {
		if got, code := merge(c.args...); code != exitUsage || !strings.Contains(got, c.want) {
			t.Errorf("merge %s: exit %d, want %d saying %q\n%s", strings.Join(c.args, " "), code, exitUsage, c.want, got)
		}
	}
}

// TestMergeRealPartials runs two partial runs of real gates with the
// binary, as two CI runners would (each with the build gate first), merges
// them, verifies the merged bundle, and refuses the merge once one byte
// of either partial is changed.
func TestMergeRealPartials(t *testing.T) {
	keys := t.TempDir()
	if out, code := gate(t, "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	key, pub := filepath.Join(keys, "gate.key"), filepath.Join(keys, "gate.pub")
	pol := writePolicy(t, "build, architecture, crypto-policy")
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for dir, g := range map[string]string{a: "architecture", b: "crypto-policy"} {
		if out, code := gate(t, "run", "--policy", pol, "--channel", "nightly", "--gates", g, "--out", dir, "--key", key); code != exitPartialPass {
			t.Fatalf("run --gates %s: exit %d, want %d\n%s", g, code, exitPartialPass, out)
		}
	}
	merged := filepath.Join(t.TempDir(), "merged")
	if out, code := gate(t, "merge", "--out", merged, "--key", key, a, b); code != exitPass || !strings.Contains(out, "PASSED") {
		t.Fatalf("merge: exit %d, want 0\n%s", code, out)
	}
	if out, code := gate(t, "verify", merged, "--pubkey", pub); code != exitPass || !strings.Contains(out, "PASSED: channel nightly") || strings.Contains(out, "partial") {
		t.Fatalf("verify of the merged bundle: exit %d, want 0, a verdict on the whole channel\n%s", code, out)
	}
	for _, c := range []struct{ dir, file string }{
		{a, "artifacts/architecture/violations.json"},
		{b, "statements/crypto-policy.dsse.json"},
		{b, "manifest.dsse.json"},
	} {
		p := filepath.Join(c.dir, c.file)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		changed := bytes.Clone(data)
		changed[len(changed)/2] ^= 1
		os.WriteFile(p, changed, 0o644)
		out, code := gate(t, "merge", "--out", filepath.Join(t.TempDir(), "m"), "--key", key, a, b)
		if code != exitInvalid || !strings.Contains(out, "invalid evidence") {
			t.Errorf("merge with one byte of %s changed: exit %d, want 3\n%s", c.file, code, out)
		}
		os.WriteFile(p, data, 0o644)
	}
}
