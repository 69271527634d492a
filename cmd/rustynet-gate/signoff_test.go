package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/policies"
)

// cleanClone clones the repository's HEAD into a temporary directory: a
// beta or GA run refuses a tree with uncommitted changes, and the tree
// this test runs in may have some.
func cleanClone(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", root, dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	return dir
}

// gateIn runs the binary in dir.
func gateIn(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

const testChecklist = `version: 1
roles:
  security:
    - {id: layering, what: the layering holds, gate: architecture, field: status, want: pass}
    - {id: reviewed, what: the changes were reviewed, manual: true}
  compliance:
    - {id: release-key, what: a release key, gate: bundle, field: development_key, want: "false"}
  operations:
    - {id: built, what: the daemons build, gate: build, field: status, want: pass}
  engineering:
    - {id: notes, what: release notes written, manual: true}
`

// TestGASignoffs makes a GA-channel bundle under a test policy whose GA
// channel needs only cheap gates (build, architecture) and all four
// sign-offs, and checks what verify says of it: awaiting sign-off (exit
// 5) without them, passed (0) with all four, and invalid (3) with a
// sign-off by a key listed for another role, of another bundle, or dated
// before the evaluation.
func TestGASignoffs(t *testing.T) {
	keys := t.TempDir()
	key := func(name string) (priv, pub string) {
		dir := filepath.Join(keys, name)
		if out, code := gate(t, "keygen", "--out", dir); code != 0 {
			t.Fatalf("keygen %s: %s", name, out)
		}
		return filepath.Join(dir, "gate.key"), filepath.Join(dir, "gate.pub")
	}
	releaseKey, releasePub := key("release")
	roleKey := map[string]string{}
	var signers strings.Builder
	signers.WriteString("signers:\n")
	for _, role := range policies.Roles {
		priv, pub := key(role)
		roleKey[role] = priv
		pem, _ := os.ReadFile(pub)
		signers.WriteString("  " + role + ":\n    - name: " + role + "-lead\n      key: |\n")
		for _, l := range strings.Split(strings.TrimSpace(string(pem)), "\n") {
			signers.WriteString("        " + l + "\n")
		}
	}
	outsider, _ := key("outsider")
	pdir := t.TempDir()
	pol := filepath.Join(pdir, "release.yaml")
	os.WriteFile(pol, []byte("version: 1\nchecklist: checklist.yaml\nchannels:\n  ga:\n    gates: [build, architecture]\n    signoffs: [security, compliance, operations, engineering]\n"+signers.String()), 0o644)
	os.WriteFile(filepath.Join(pdir, "checklist.yaml"), []byte(testChecklist), 0o644)

	src := cleanClone(t)
	runGA := func() string {
		b := filepath.Join(t.TempDir(), "ga")
		out, code := gateIn(t, src, "run", "--policy", pol, "--channel", "ga", "--out", b, "--key", releaseKey)
		if code != exitAwaitingSignoff || !strings.Contains(out, "AWAITING SIGN-OFF") || !strings.Contains(out, "awaiting sign-off by security, compliance, operations, engineering") {
			t.Fatalf("run --channel ga: exit %d, want %d awaiting all four sign-offs\n%s", code, exitAwaitingSignoff, out)
		}
		return b
	}
	bundle := runGA()
	verify := func(dir string) (string, int) { return gate(t, "verify", dir, "--pubkey", releasePub) }
	if out, code := verify(bundle); code != exitAwaitingSignoff || !strings.Contains(out, "AWAITING SIGN-OFF") {
		t.Fatalf("verify without sign-offs: exit %d, want %d\n%s", code, exitAwaitingSignoff, out)
	}
	if out, code := gateStdout(t, "verify", bundle, "--pubkey", releasePub, "--json"); code != exitAwaitingSignoff ||
		!strings.Contains(out, `"outcome": "awaiting-signoff"`) || !strings.Contains(out, `"awaiting_signoff": [`) {
		t.Errorf("verify --json without sign-offs: exit %d\n%s", code, out)
	}

	signoff := func(dir, role, keyFile string, extra ...string) (string, int) {
		return gate(t, append([]string{"signoff", dir, "--role", role, "--key", keyFile, "--pubkey", releasePub}, extra...)...)
	}
	// Refusals, each before anything is written.
	for _, c := range []struct {
		what, role, key string
		extra           []string
		want            string
	}{
		{"an unknown role", "legal", roleKey["security"], nil, `role "legal"`},
		{"another role's key", "security", roleKey["operations"], []string{"--attest", "reviewed"}, "listed for operations in the bundle's policy, not for security"},
		{"a key not listed", "security", outsider, []string{"--attest", "reviewed"}, "is not listed for security"},
		{"a manual item not attested", "security", roleKey["security"], nil, "reviewed (manual: attest it with --attest reviewed"},
		{"an attestation of an automated item", "security", roleKey["security"], []string{"--attest", "layering"}, "--attest layering: not a manual item"},
	} {
		if out, code := signoff(bundle, c.role, c.key, c.extra...); code != exitUsage || !strings.Contains(out, c.want) {
			t.Errorf("signoff with %s: exit %d, want 2 saying %q\n%s", c.what, code, c.want, out)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(bundle, evidence.SignoffsDir)); len(ents) != 0 {
		t.Fatalf("refused sign-offs wrote %d files", len(ents))
	}

	// Three of four: still awaiting, naming the one missing.
	for _, role := range []string{"security", "compliance", "operations"} {
		var extra []string
		if role == "security" {
			extra = []string{"--attest", "reviewed"}
		}
		if out, code := signoff(bundle, role, roleKey[role], append(extra, "--note", "checked")...); code != 0 ||
			!strings.Contains(out, "signed off "+bundle+" for "+role) {
			t.Fatalf("signoff %s: exit %d\n%s", role, code, out)
		}
	}
	if out, code := verify(bundle); code != exitAwaitingSignoff || !strings.Contains(out, "awaiting sign-off by engineering") ||
		!strings.Contains(out, "signed off: security") {
		t.Errorf("verify with three sign-offs: exit %d, want %d awaiting engineering\n%s", code, exitAwaitingSignoff, out)
	}
	if out, code := signoff(bundle, "engineering", roleKey["engineering"], "--attest", "notes"); code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("signoff engineering: exit %d, want the verdict PASSED\n%s", code, out)
	}
	out, code := verify(bundle)
	if code != 0 || !strings.Contains(out, "PASSED") || strings.Count(out, "signed off: ") != 4 {
		t.Fatalf("verify with all four sign-offs: exit %d, want 0\n%s", code, out)
	}
	if out, code := signoff(bundle, "engineering", roleKey["engineering"], "--attest", "notes"); code == 0 || !strings.Contains(out, "has signed engineering off already") {
		t.Errorf("a second sign-off by one key: exit %d\n%s", code, out)
	}
	// An auditor's check with standard tools alone (tools/audit-bundle.sh:
	// jq, base64, openssl, sha256sum) agrees, and refuses a changed byte.
	require.Command(t, "jq")
	require.Command(t, "openssl")
	root, _ := repoRoot()
	audit := func(dir string) (string, error) {
		args := []string{filepath.Join(root, "tools", "audit-bundle.sh"), dir, releasePub}
		for _, role := range policies.Roles {
			args = append(args, role+"="+filepath.Join(keys, role, "gate.pub"))
		}
		out, err := exec.Command("sh", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := audit(bundle); err != nil || strings.Count(out, "sign-off: ") != 4 || !strings.Contains(out, "recorded verdict: PASSED for RUSTYNET_GATES_OF_CHANNEL_GA") {
		t.Errorf("tools/audit-bundle.sh: %v, want every signature valid and four sign-offs\n%s", err, out)
	}
	tampered := filepath.Join(t.TempDir(), "tampered")
	copyDir(t, bundle, tampered)
	art := filepath.Join(tampered, "artifacts", "architecture", "violations.json")
	data, _ := os.ReadFile(art)
	os.WriteFile(art, append(data, ' '), 0o644)
	if out, err := audit(tampered); err == nil || !strings.Contains(out, "violations.json: not") {
		t.Errorf("tools/audit-bundle.sh on a changed artifact: %v, want a refusal naming it\n%s", err, out)
	}
	md, err := os.ReadFile(filepath.Join(bundle, evidence.ReportMD))
	if err != nil || !bytes.Contains(md, []byte("security-lead")) || !bytes.Contains(md, []byte("Launch checklist")) {
		t.Errorf("report.md does not show the checklist with who signed (%v)", err)
	}

	// Invalid: a sign-off by a key listed for another role, written as
	// signoff would never write it.
	v, err := evidence.Verify(bundle, mustVerifier(t, releasePub), "")
	if err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged")
	copyDir(t, bundle, forged)
	os.RemoveAll(filepath.Join(forged, evidence.SignoffsDir))
	st, err := evidence.NewStatement(v.Subjects, gates.PredicateSignoff, gates.SignoffPredicate{Role: "security", Channel: "ga", Commit: v.Manifest.Commit,
		ManifestSHA256: v.ManifestDigest, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.AddSignoff(forged, "security", st, mustSigner(t, roleKey["operations"])); err != nil {
		t.Fatal(err)
	}
	if out, code := verify(forged); code != exitInvalid || !strings.Contains(out, "which the policy lists for operations, not for security") {
		t.Errorf("verify with a sign-off by another role's key: exit %d, want 3\n%s", code, out)
	}

	// Invalid: a sign-off of another bundle (a second run of the same
	// commit), and one dated before the bundle's evaluation.
	other := runGA()
	copyDir(t, filepath.Join(bundle, evidence.SignoffsDir), filepath.Join(other, evidence.SignoffsDir))
	if out, code := verify(other); code != exitInvalid || !strings.Contains(out, "signs off another bundle") {
		t.Errorf("verify with sign-offs of another bundle: exit %d, want 3\n%s", code, out)
	}
	os.RemoveAll(filepath.Join(other, evidence.SignoffsDir))
	early := func() time.Time { return v.Verdict.GetTimeVerified().AsTime().Add(-time.Hour) }
	if _, _, err := gates.SignOff(gates.SignoffOptions{Dir: other, Release: mustVerifier(t, releasePub), Registry: registry(), Role: "operations",
		Signer: mustSigner(t, roleKey["operations"]), Now: early}); err != nil {
		t.Fatal(err)
	}
	if out, code := verify(other); code != exitInvalid || !strings.Contains(out, "before the bundle's evaluation") {
		t.Errorf("verify with a sign-off dated before the evaluation: exit %d, want 3\n%s", code, out)
	}
}

func mustVerifier(t *testing.T, path string) *evidence.Verifier {
	t.Helper()
	v, err := evidence.LoadVerifier(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSigner(t *testing.T, path string) *evidence.Signer {
	t.Helper()
	s, err := evidence.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
