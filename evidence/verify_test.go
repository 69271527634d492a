package evidence

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wantInvalid fails unless err is an *InvalidError whose reason says all
// of want.
func wantInvalid(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if !isInvalid(err) {
		t.Fatalf("Verify of %s = %v, want an *InvalidError", what, err)
	}
	t.Logf("%s: %v", what, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Verify of %s = %q, want a reason saying %q", what, err, w)
		}
	}
}

// The artifact writeBundle writes, and its content.
const (
	testArtifact     = "artifacts/build/digests.json"
	testArtifactData = `{"rustynetd":"abab"}`
)

// TestVerifyRefusesFIFO puts a named pipe where Verify reads a file: it
// must be refused at once (on a build that opens it blocking, Verify waits
// for a writer forever).
func TestVerifyRefusesFIFO(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	good := writeBundle(t, s)
	for _, rel := range []string{testArtifact, ManifestFile, "statements/build.dsse.json", "statements/verdict.dsse.json", "policy/release.yaml", ReportHTML, "artifacts/stray"} {
		t.Run(rel, func(t *testing.T) {
			dir := copyDir(t, good)
			p := filepath.Join(dir, filepath.FromSlash(rel))
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir, v, "")
			wantInvalid(t, "a named pipe as "+rel, err, rel, "not a regular file")
		})
	}
}

// TestOpenFlagsDoNotBlock opens a named pipe as open does after its
// lstat, for a pipe swapped in between the two: the open must return at
// once (a blocking open waits for a writer), and the file be refused.
func TestOpenFlagsDoNotBlock(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := root.OpenFile("pipe", os.O_RDONLY|openFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode().IsRegular() {
		t.Errorf("Stat of an open named pipe = %v, %v; want a mode that is not regular", fi.Mode(), err)
	}
}

// TestVerifyRefusesSymlinks puts a symbolic link in the bundle, in place
// of each kind of file and of a directory: every one must be refused,
// whether it leads to a device, a file outside the bundle with just the
// content the manifest expects, or a secret.
func TestVerifyRefusesSymlinks(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	good := writeBundle(t, s)
	outside := t.TempDir()
	// same copies rel outside the bundle and returns the copy's path.
	same := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(good, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(outside, strings.ReplaceAll(rel, "/", "_"))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	outsideDir := filepath.Join(outside, "build")
	os.MkdirAll(outsideDir, 0o755)
	os.WriteFile(filepath.Join(outsideDir, "digests.json"), []byte(testArtifactData), 0o644)
	for _, c := range []struct{ what, rel, target string }{
		{"an artifact linked to /dev/zero", testArtifact, "/dev/zero"},
		{"an artifact linked to an identical file outside", testArtifact, same(testArtifact)},
		{"an artifact directory linked to an identical one outside", "artifacts/build", outsideDir},
		{"the manifest linked to an identical file outside", ManifestFile, same(ManifestFile)},
		{"a statement linked to an identical file outside", "statements/build.dsse.json", same("statements/build.dsse.json")},
		{"the verdict linked to an identical file outside", "statements/verdict.dsse.json", same("statements/verdict.dsse.json")},
		{"the policy linked to an identical file outside", "policy/release.yaml", same("policy/release.yaml")},
		{"report.html linked to /etc/shadow", ReportHTML, "/etc/shadow"},
		{"report.md linked to a file in the bundle", ReportMD, "policy/release.yaml"},
		{"a stray link", "artifacts/stray", "/etc/passwd"},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := copyDir(t, good)
			p := filepath.Join(dir, filepath.FromSlash(c.rel))
			os.RemoveAll(p)
			if err := os.Symlink(c.target, p); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir, v, "")
			wantInvalid(t, c.what, err, c.rel, "symbolic link")
		})
	}
}

// TestVerifyRefusesStrayDirectory adds a directory that holds nothing of
// the bundle: refused like a stray file, so that what Verify walks is
// bounded by what the manifest and the verdict list.
func TestVerifyRefusesStrayDirectory(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	dir := writeBundle(t, s)
	if err := os.MkdirAll(filepath.Join(dir, "artifacts", "extra", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(dir, v, "")
	wantInvalid(t, "a stray directory", err, "artifacts/extra", "not account for")
}

// TestVerifyChecksSizeFirst puts a large sparse file in place of an
// artifact: Verify must refuse it by its size, before reading it (a build
// that reads it first holds it all in memory).
func TestVerifyChecksSizeFirst(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	dir := writeBundle(t, s)
	p := filepath.Join(dir, filepath.FromSlash(testArtifact))
	if err := os.Truncate(p, 400<<20); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(dir, v, "")
	wantInvalid(t, "a 400 MiB artifact", err, testArtifact, "419430400 bytes", "the manifest says 20")
}

// TestVerifyCapsEnvelopes puts a large sparse file in place of each
// envelope: Verify must refuse it by its size, before reading or parsing
// it (a build that reads it first parses 300 MiB before it checks any
// signature).
func TestVerifyCapsEnvelopes(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	good := writeBundle(t, s)
	for _, rel := range []string{ManifestFile, "statements/verdict.dsse.json", "statements/build.dsse.json"} {
		t.Run(rel, func(t *testing.T) {
			dir := copyDir(t, good)
			if err := os.Truncate(filepath.Join(dir, filepath.FromSlash(rel)), 300<<20); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir, v, "")
			wantInvalid(t, "a 300 MiB "+rel, err, rel, "314572800 bytes", "at most")
		})
	}
}

// forgeBundle writes the bundle writeBundle does, but lets editArtifacts
// change the manifest's list of artifacts and editInputs the gate
// statements the verdict lists, before they are signed: what a writer with
// a bug, or someone holding the key, could sign.
func forgeBundle(t *testing.T, s *Signer, editArtifacts func(w *Writer), editInputs func(w *Writer, refs []ArtifactRef) []ArtifactRef) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := NewWriter(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [build, unit]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteArtifact("build/digests.json", []byte(testArtifactData)); err != nil {
		t.Fatal(err)
	}
	pred, err := TestResultPredicate(true, []string{"pkg.TestA"}, nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStatement(subjects, PredicateTestResult, pred)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := w.SignStatement("unit", st)
	if err != nil {
		t.Fatal(err)
	}
	refs := []ArtifactRef{ref}
	if editArtifacts != nil {
		editArtifacts(w)
	}
	mref, err := w.SignManifest(Manifest{Commit: subjects[0].Digest["gitCommit"], Channel: "nightly", Created: time.Now(), Policy: pol.Path, PolicySHA: pol.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if editInputs != nil {
		refs = editInputs(w, refs)
	}
	vst, err := VerdictStatement(VerdictInput{Subjects: subjects, Commit: subjects[0].Digest["gitCommit"], Channel: "nightly",
		Policy: pol, Manifest: mref, Gates: refs, Passed: true, At: time.Now(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SignStatement(VerdictName, vst); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestVerifyRefusesInputOutsideBundle signs a verdict that lists a
// statement outside the bundle, with its right digest.
func TestVerifyRefusesInputOutsideBundle(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	const evil = "statements/../../evil.dsse.json"
	dir := forgeBundle(t, s, nil, func(w *Writer, refs []ArtifactRef) []ArtifactRef {
		pred, err := TestResultPredicate(true, []string{"pkg.TestA"}, nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := NewStatement(subjects, PredicateTestResult, pred)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := MarshalStatement(st)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := w.signEnvelope(evil, PayloadType, payload)
		if err != nil {
			t.Fatal(err)
		}
		return append(refs, ref)
	})
	if _, err := os.Stat(filepath.Join(dir, "..", "evil.dsse.json")); err != nil {
		t.Fatalf("the statement outside the bundle was not written: %v", err)
	}
	_, err := Verify(dir, v, "")
	wantInvalid(t, "a verdict listing "+evil, err, evil)
}

// TestVerifyRefusesBadInputPaths signs verdicts listing inputs by paths
// that are not statements/NAME.dsse.json with NAME one plain component.
func TestVerifyRefusesBadInputPaths(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	for _, uri := range []string{
		"/etc/passwd",
		"statements/./unit.dsse.json",
		"statements/nested/unit.dsse.json",
		"statements/unit.dsse.json/../unit.dsse.json",
		"statements/verdict.dsse.json",
		"artifacts/build/digests.json",
		"statements/.dsse.json",
	} {
		t.Run(uri, func(t *testing.T) {
			dir := forgeBundle(t, s, nil, func(_ *Writer, refs []ArtifactRef) []ArtifactRef {
				return append(refs, ArtifactRef{Path: uri, SHA256: refs[0].SHA256})
			})
			_, err := Verify(dir, v, "")
			wantInvalid(t, "a verdict listing "+uri, err, "unexpected input")
		})
	}
}

func TestWritePolicyName(t *testing.T) {
	s, _ := newSigner(t, Ed25519)
	w, err := NewWriter(filepath.Join(t.TempDir(), "bundle"), s)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../release.yaml", "sub/release.yaml", "", "release policy.yaml"} {
		if _, err := w.WritePolicy(name, []byte("version: 1\n")); err == nil {
			t.Errorf("WritePolicy(%q) = nil, want an error", name)
		}
	}
}

// TestVerifyRefusesDuplicates signs a verdict that lists a statement
// twice, and a manifest that lists an artifact twice.
func TestVerifyRefusesDuplicates(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	t.Run("verdict", func(t *testing.T) {
		dir := forgeBundle(t, s, nil, func(_ *Writer, refs []ArtifactRef) []ArtifactRef {
			return append(refs, refs[0])
		})
		_, err := Verify(dir, v, "")
		wantInvalid(t, "a verdict listing a statement twice", err, "statements/unit.dsse.json", "twice")
	})
	t.Run("manifest", func(t *testing.T) {
		dir := forgeBundle(t, s, func(w *Writer) {
			w.arts, w.sizes = append(w.arts, w.arts[1]), append(w.sizes, w.sizes[1])
		}, nil)
		_, err := Verify(dir, v, "")
		wantInvalid(t, "a manifest listing an artifact twice", err, testArtifact, "twice")
	})
	t.Run("manifest, spelt another way", func(t *testing.T) {
		dir := forgeBundle(t, s, func(w *Writer) {
			a := w.arts[1]
			a.Path = "artifacts/./build/digests.json"
			w.arts, w.sizes = append(w.arts, a), append(w.sizes, w.sizes[1])
		}, nil)
		_, err := Verify(dir, v, "")
		wantInvalid(t, "a manifest listing an artifact twice, spelt another way", err, "artifacts/./build/digests.json", "bad path")
	})
	t.Run("a valid forged bundle", func(t *testing.T) {
		// The forger itself writes bundles that verify.
		if _, err := Verify(forgeBundle(t, s, nil, nil), v, ""); err != nil {
			t.Fatalf("Verify = %v", err)
		}
	})
}
