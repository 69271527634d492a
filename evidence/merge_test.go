package evidence

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestMergeCopies: a verified bundle's statement and artifact copy byte
// for byte into another bundle; changed after the verification, either is
// refused as invalid evidence and nothing is written.
func TestMergeCopies(t *testing.T) {
	s, v := newSigner(t, ECDSAP256)
	src := writeBundle(t, s)
	ver, err := Verify(src, v, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(filepath.Join(t.TempDir(), "merged"), s)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := w.CopyArtifact(ver, testArtifact)
	if err != nil {
		t.Fatalf("CopyArtifact: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(w.Dir(), testArtifact)); string(got) != testArtifactData || ref.Path != testArtifact {
		t.Errorf("CopyArtifact wrote %q as %s, want %q as %s", got, ref.Path, testArtifactData, testArtifact)
	}
	if _, err := w.CopyArtifact(ver, testArtifact); err == nil {
		t.Error("an artifact copied twice was accepted")
	}
	if _, err := w.CopyArtifact(ver, "policy/release.yaml"); err == nil {
		t.Error("CopyArtifact copied a path outside artifacts/")
	}
	sref, err := w.CopyStatement(ver, "build")
	if err != nil {
		t.Fatalf("CopyStatement: %v", err)
	}
	a, _ := os.ReadFile(filepath.Join(src, "statements", "build.dsse.json"))
	b, _ := os.ReadFile(filepath.Join(w.Dir(), "statements", "build.dsse.json"))
	if !bytes.Equal(a, b) || sref != ver.Gates["build"].File {
		t.Errorf("CopyStatement: %+v, the copy the same bytes: %v; want the verified envelope as it is", sref, bytes.Equal(a, b))
	}
	if _, err := w.CopyStatement(ver, "build"); err == nil {
		t.Error("a statement copied twice was accepted")
	}

	// Changed after Verify, the same size: the digests catch it.
	art := filepath.Join(src, filepath.FromSlash(testArtifact))
	data, _ := os.ReadFile(art)
	data[0] ^= 1
	os.WriteFile(art, data, 0o644)
	st := filepath.Join(src, "statements", "unit.dsse.json")
	data, _ = os.ReadFile(st)
	data[len(data)/2] ^= 1
	os.WriteFile(st, data, 0o644)
	w2, err := NewWriter(filepath.Join(t.TempDir(), "merged"), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.CopyArtifact(ver, testArtifact); !isInvalid(err) {
		t.Errorf("CopyArtifact of an artifact changed after verification = %v, want invalid", err)
	}
	if _, err := w2.CopyStatement(ver, "unit"); !isInvalid(err) {
		t.Errorf("CopyStatement of a statement changed after verification = %v, want invalid", err)
	}
	for _, rel := range []string{testArtifact, "statements/unit.dsse.json"} {
		if _, err := os.Stat(filepath.Join(w2.Dir(), filepath.FromSlash(rel))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was written from a changed source", rel)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(w2.Dir(), "artifacts", "build")); len(ents) != 0 {
		t.Errorf("a refused copy left %d files behind", len(ents))
	}
}
