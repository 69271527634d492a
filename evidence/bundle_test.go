package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
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

func copyDir(t testing.TB, src string) string {
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

// fuzzBundle is a valid bundle whose manifest, build statement or verdict
// a fuzz target replaces with a payload of its own, signed with the
// bundle's key, and the verdict signed again over the new digests: random
// bytes in place of an envelope never get past its signature, these get
// to the decoders behind it.
type fuzzBundle struct {
	s        *Signer
	v        *Verifier
	payloads map[string][]byte // the valid bundle's, by file
	// scratch is a copy of the valid bundle in which each run rewrites
	// the file it fuzzes and the verdict: the same files every run, so
	// that nothing of one run is left for the next.
	scratch string
}

const (
	buildStatement   = "statements/build.dsse.json"
	unitStatement    = "statements/unit.dsse.json"
	verdictStatement = "statements/verdict.dsse.json"
)

func newFuzzBundle(f *testing.F) *fuzzBundle {
	s, v := newSigner(f, Ed25519)
	good := writeBundle(f, s)
	fb := &fuzzBundle{s: s, v: v, payloads: map[string][]byte{}, scratch: copyDir(f, good)}
	for _, rel := range []string{ManifestFile, buildStatement, unitStatement, verdictStatement} {
		data, err := os.ReadFile(filepath.Join(good, rel))
		if err != nil {
			f.Fatal(err)
		}
		var env dsse.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			f.Fatal(err)
		}
		if fb.payloads[rel], err = env.DecodeB64Payload(); err != nil {
			f.Fatal(err)
		}
	}
	return fb
}

// write replaces rel's payload in the scratch bundle with payload,
// signed, and signs the verdict again over the new digests unless rel is
// the verdict. It writes with os.WriteFile, not the Writer's fsync'ed
// atomic writes, to fuzz faster.
func (fb *fuzzBundle) write(t *testing.T, rel string, payload []byte) string {
	dir := fb.scratch
	put := func(rel, payloadType string, payload []byte) {
		es, err := dsse.NewEnvelopeSigner(fb.s)
		if err != nil {
			t.Fatal(err)
		}
		env, err := es.SignPayload(context.Background(), payloadType, payload)
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.MarshalIndent(env, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest := func(rel string) ArtifactRef {
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return ArtifactRef{Path: rel, SHA256: hex.EncodeToString(sum[:])}
	}
	payloadType := PayloadType
	if rel == ManifestFile {
		payloadType = ManifestPayloadType
	}
	put(rel, payloadType, payload)
	if rel == verdictStatement {
		return dir
	}
	commit := subjects[0].Digest["gitCommit"]
	vst, err := VerdictStatement(VerdictInput{Subjects: subjects, Commit: commit, Channel: "nightly",
		Policy: digest("policy/release.yaml"), Manifest: digest(ManifestFile), Gates: []ArtifactRef{digest(buildStatement), digest(unitStatement)},
		Passed: true, At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	vp, err := MarshalStatement(vst)
	if err != nil {
		t.Fatal(err)
	}
	put(verdictStatement, PayloadType, vp)
	return dir
}

// verify runs Verify on a bundle with rel's payload replaced: it must not
// panic, must refuse with an *InvalidError if anything, and must accept
// the valid bundle's own payload.
func (fb *fuzzBundle) verify(t *testing.T, rel string, payload []byte) {
	dir := fb.write(t, rel, payload)
	_, err := Verify(dir, fb.v, "")
	if err != nil && !isInvalid(err) {
		t.Fatalf("Verify = %v (%T), want nil or an *InvalidError", err, err)
	}
	if err != nil && bytes.Equal(payload, fb.payloads[rel]) {
		t.Fatalf("Verify of the bundle's own %s payload, signed again = %v, want valid", rel, err)
	}
}

// FuzzVerifySignedManifest signs arbitrary bytes as the manifest.
func FuzzVerifySignedManifest(f *testing.F) {
	fb := newFuzzBundle(f)
	f.Add(fb.payloads[ManifestFile])
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":1,"commit":"0123456789abcdef0123456789abcdef01234567","policy":"policy/release.yaml","artifacts":[{"path":"statements/../../x","sha256":""}],"sizes":[1]}`))
	f.Add([]byte(`{"version":1,"policy":"policy/release.yaml","artifacts":[{"path":"policy/release.yaml","sha256":"00"}],"sizes":[-1]}`))
	f.Add([]byte(`{"version":1,"artifacts":[],"sizes":[1,2],"extra":true}`))
	f.Fuzz(func(t *testing.T, payload []byte) { fb.verify(t, ManifestFile, payload) })
}

// FuzzVerifySignedStatement signs arbitrary bytes as the build gate's
// statement.
func FuzzVerifySignedStatement(f *testing.F) {
	fb := newFuzzBundle(f)
	f.Add(fb.payloads[buildStatement])
	f.Add(fb.payloads[unitStatement])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"ab"}}],"predicateType":"https://rustynet.dev/attestation/gate-result/v1"}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"git+commit","digest":{"gitCommit":"0123456789abcdef0123456789abcdef01234567"}},{"name":"rustynetd","digest":{"sha256":"abababababababababababababababababababababababababababababababab"}}],"predicateType":"https://rustynet.dev/attestation/gate-result/v1","predicate":{"gate":"build","status":"bogus","started":"yesterday","measurements":[{"values":"x"}]}}`))
	f.Fuzz(func(t *testing.T, payload []byte) { fb.verify(t, buildStatement, payload) })
}

// FuzzVerifySignedVerdict signs arbitrary bytes as the verdict.
func FuzzVerifySignedVerdict(f *testing.F) {
	fb := newFuzzBundle(f)
	f.Add(fb.payloads[verdictStatement])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"git+commit","digest":{"gitCommit":"0123456789abcdef0123456789abcdef01234567"}}],"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"inputAttestations":[{"uri":"statements/../../x.dsse.json"},{"uri":"manifest.dsse.json"},{"uri":"manifest.dsse.json"}]}}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"git+commit","digest":{"gitCommit":"0123456789abcdef0123456789abcdef01234567"}}],"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"verificationResult":5,"policy":null}}`))
	f.Fuzz(func(t *testing.T, payload []byte) { fb.verify(t, verdictStatement, payload) })
}

// TestWriterSeals: artifacts written at once from many goroutines are all
// in the manifest, and one written after the manifest is signed is refused
// (it could not be accounted for) without touching the bundle.
func TestWriterSeals(t *testing.T) {
	s, v := newSigner(t, "ecdsa-p256")
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := NewWriter(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if _, err := w.WriteArtifact(fmt.Sprintf("g/a%d", i), []byte{byte(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := w.SignManifest(Manifest{Commit: subjects[0].Digest["gitCommit"], Channel: "nightly", Created: time.Now(), Policy: pol.Path, PolicySHA: pol.SHA256}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteArtifact("late/log.txt", []byte("late")); !errors.Is(err, ErrSealed) {
		t.Errorf("WriteArtifact after SignManifest = %v, want ErrSealed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ArtifactsDir, "late")); err == nil {
		t.Error("the refused late artifact was written into the bundle")
	}
	b, err := openBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.root.Close()
	payload, _, err := openEnvelope(b, ManifestFile, ManifestPayloadType, v)
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 33 || len(m.Sizes) != 33 {
		t.Errorf("manifest lists %d artifacts and %d sizes, want 33 of each", len(m.Artifacts), len(m.Sizes))
	}
}
