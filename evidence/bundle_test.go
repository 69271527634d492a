package evidence

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var subjects = []Subject{
	{Name: "git+commit", Digest: map[string]string{"gitCommit": "0123456789abcdef0123456789abcdef01234567"}},
	{Name: "rustynetd", Digest: map[string]string{"sha256": strings.Repeat("ab", 32)}},
}

func newSigner(t testing.TB, alg string) (*Signer, *Verifier) {
	dir := t.TempDir()
	if _, err := Keygen(dir, alg); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// writeBundle writes a small, valid bundle: two gates and a verdict.
func writeBundle(t testing.TB, s *Signer) string {
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := NewWriter(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [build, unit]\n"))
	if err != nil {
		t.Fatal(err)
	}
	art, err := w.WriteArtifact("build/digests.json", []byte(`{"rustynetd":"abab"}`))
	if err != nil {
		t.Fatal(err)
	}
	var gateRefs []ArtifactRef
	st, err := NewStatement(subjects, PredicateGateResult, GateResult{Gate: "build", Status: StatusPass, Started: time.Now(), Artifacts: []ArtifactRef{art}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := w.SignStatement("build", st)
	if err != nil {
		t.Fatal(err)
	}
	gateRefs = append(gateRefs, ref)
	pred, err := TestResultPredicate(true, []string{"pkg.TestA"}, nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err = NewStatement(subjects, PredicateTestResult, pred)
	if err != nil {
		t.Fatal(err)
	}
	if ref, err = w.SignStatement("unit", st); err != nil {
		t.Fatal(err)
	}
	gateRefs = append(gateRefs, ref)
	mref, err := w.SignManifest(Manifest{Commit: subjects[0].Digest["gitCommit"], Channel: "nightly", Created: time.Now(), Policy: pol.Path, PolicySHA: pol.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	vst, err := VerdictStatement(VerdictInput{Subjects: subjects, Commit: subjects[0].Digest["gitCommit"], Channel: "nightly",
		Policy: pol, Manifest: mref, Gates: gateRefs, Passed: true, At: time.Now(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SignStatement(VerdictName, vst); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestWriteAndVerify(t *testing.T) {
	for _, alg := range []string{ECDSAP256, Ed25519} {
		t.Run(alg, func(t *testing.T) {
			s, v := newSigner(t, alg)
			dir := writeBundle(t, s)
			got, err := Verify(dir, v, subjects[0].Digest["gitCommit"])
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(got.Gates) != 2 || got.Gates["build"].Result.Status != StatusPass || got.Gates["unit"].Result.Status != StatusPass {
				t.Errorf("gates = %+v", got.Gates)
			}
			if ch, partial := Channel(got.Verdict); ch != "nightly" || partial || got.Verdict.GetVerificationResult() != Passed {
				t.Errorf("verdict = %v", got.Verdict)
			}
			if _, err := Verify(dir, v, "ffffffffffffffffffffffffffffffffffffffff"); !isInvalid(err) {
				t.Errorf("Verify with another commit: %v, want invalid", err)
			}
		})
	}
}

func isInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// TestTamper changes one byte of every file of a bundle in turn, deletes
// each, adds a stray file, and verifies with the wrong key: every one must
// be refused as invalid.
func TestTamper(t *testing.T) {
	s, v := newSigner(t, ECDSAP256)
	good := writeBundle(t, s)
	var files []string
	filepath.WalkDir(good, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(good, p)
			files = append(files, rel)
		}
		return nil
	})
	if len(files) < 6 {
		t.Fatalf("bundle has only %v", files)
	}
	for _, rel := range files {
		data, _ := os.ReadFile(filepath.Join(good, rel))
		for _, pos := range []int{0, len(data) / 2, len(data) - 2} {
			t.Run("flip/"+rel+"/"+string(rune('0'+pos%10)), func(t *testing.T) {
				dir := copyDir(t, good)
				b := append([]byte(nil), data...)
				b[pos] ^= 0x01
				os.WriteFile(filepath.Join(dir, rel), b, 0o644)
				if _, err := Verify(dir, v, ""); !isInvalid(err) {
					t.Errorf("a flipped byte at %d of %s: Verify = %v, want invalid", pos, rel, err)
				}
			})
		}
		t.Run("missing/"+rel, func(t *testing.T) {
			dir := copyDir(t, good)
			os.Remove(filepath.Join(dir, rel))
			_, err := Verify(dir, v, "")
			if !isInvalid(err) || !strings.Contains(err.Error(), "missing") && !strings.Contains(err.Error(), "not among") {
				t.Errorf("without %s: Verify = %v, want invalid saying what is missing", rel, err)
			}
		})
	}
	t.Run("stray file", func(t *testing.T) {
		dir := copyDir(t, good)
		os.WriteFile(filepath.Join(dir, ArtifactsDir, "extra.txt"), []byte("x"), 0o644)
		if _, err := Verify(dir, v, ""); !isInvalid(err) || !strings.Contains(err.Error(), "not accounted for") {
			t.Errorf("a stray file: Verify = %v, want invalid", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		_, other := newSigner(t, ECDSAP256)
		if _, err := Verify(good, other, ""); !isInvalid(err) || !strings.Contains(err.Error(), "signature") {
			t.Errorf("the wrong key: Verify = %v, want invalid", err)
		}
	})
	t.Run("report files are not evidence", func(t *testing.T) {
		dir := copyDir(t, good)
		os.WriteFile(filepath.Join(dir, ReportHTML), []byte("<html>"), 0o644)
		if _, err := Verify(dir, v, ""); err != nil {
			t.Errorf("a report next to the evidence: Verify = %v, want valid", err)
		}
	})
}

func copyDir(t *testing.T, src string) string {
	dst := filepath.Join(t.TempDir(), "copy")
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, _ := os.ReadFile(p)
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	return dst
}

func TestSignerRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	Keygen(dir, ECDSAP256)
	os.Chmod(filepath.Join(dir, PrivateKeyFile), 0o644)
	if _, err := LoadSigner(filepath.Join(dir, PrivateKeyFile)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadSigner of a world-readable key = %v, want a refusal", err)
	}
	if _, err := Keygen(dir, ECDSAP256); err == nil {
		t.Error("Keygen overwrote an existing key")
	}
}

// FuzzVerifyManifest puts arbitrary bytes in place of the manifest and of a
// statement: Verify must refuse them as invalid without panicking.
func FuzzVerifyManifest(f *testing.F) {
	s, v := newSigner(f, ECDSAP256)
	good := writeBundle(f, s)
	data, _ := os.ReadFile(filepath.Join(good, ManifestFile))
	f.Add(data, 0)
	f.Add([]byte(`{"payloadType":"x","payload":"","signatures":[]}`), 1)
	f.Add([]byte(`{}`), 2)
	f.Fuzz(func(t *testing.T, content []byte, which int) {
		dir := copyDir(t, good)
		target := ManifestFile
		if which%2 == 1 {
			target = filepath.Join(StatementsDir, "build.dsse.json")
		}
		os.WriteFile(filepath.Join(dir, target), content, 0o644)
		if _, err := Verify(dir, v, ""); err != nil && !isInvalid(err) {
			t.Fatalf("Verify = %v (%T), want nil or an *InvalidError", err, err)
		}
	})
}
