package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/internal/bundledoc"
)

// TestDocs renders the deliverables from a real partial bundle of a clean
// clone: what its gates prove is rendered, each with its provenance, the
// rest is skipped and said so (exit 4); a tree at another commit is
// refused.
func TestDocs(t *testing.T) {
	keys := t.TempDir()
	if out, code := gate(t, "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	key, pub := filepath.Join(keys, "gate.key"), filepath.Join(keys, "gate.pub")
	src := cleanClone(t)
	pol := writePolicy(t, "build, architecture, crypto-policy")
	bundle := filepath.Join(t.TempDir(), "b")
	if out, code := gateIn(t, src, "run", "--policy", pol, "--channel", "nightly", "--gates", "crypto-policy", "--out", bundle, "--key", key); code != exitPartialPass {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	commit, _ := manifestCommit(t, bundle)
	docs := filepath.Join(t.TempDir(), "documents")
	out, code := gateIn(t, src, "docs", bundle, "--pubkey", pub, "--out", docs)
	if code != exitPartialPass || !strings.Contains(out, "2 of 7 deliverables rendered") ||
		!strings.Contains(out, "skipped compatibility and support policy: the bundle has no evidence of compat") {
		t.Fatalf("docs from a partial bundle: exit %d, want %d rendering 2 of 7\n%s", code, exitPartialPass, out)
	}
	got, err := os.ReadFile(filepath.Join(docs, "security", "crypto-deprecation-schedule.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte(bundledoc.ProvenanceStart)) || !bytes.Contains(got, []byte(commit)) || !bytes.Contains(got, []byte("manifest sha256 `")) {
		t.Errorf("the rendered schedule does not start with its provenance naming commit %s and the manifest digest:\n%.400s", commit, got)
	}
	committed, err := os.ReadFile(filepath.Join(src, "documents", "security", "crypto-deprecation-schedule.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The committed copy may itself have been rendered from a bundle.
	if !bytes.Equal(bundledoc.StripProvenance(got), bundledoc.StripProvenance(committed)) {
		t.Error("the rendered schedule, past its provenance, differs from the one the policies generate")
	}
	index, err := os.ReadFile(filepath.Join(docs, "operations", "measured-evidence-index.md"))
	if err != nil || !bytes.Contains(index, []byte("| crypto-policy | pass |")) {
		t.Errorf("the measured-evidence index does not list the crypto-policy gate (%v):\n%.600s", err, index)
	}

	// A tree at another commit: refused, naming both.
	if out, err := exec.Command("git", "-C", src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "later").CombinedOutput(); err != nil {
		t.Fatalf("git commit: %v\n%s", err, out)
	}
	if out, code := gateIn(t, src, "docs", bundle, "--pubkey", pub, "--out", t.TempDir()); code != exitUsage || !strings.Contains(out, "check out "+commit[:12]) {
		t.Errorf("docs on a tree at another commit: exit %d, want 2\n%s", code, out)
	}
}
