package evidence

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeLargeBundle writes a bundle of one gate, big: artifacts of the
// given sizes (pseudo-random bytes) and a gate statement that is a test
// result listing tests passed tests, or a gate result when tests is 0. It
// returns the bundle's directory and the bytes of evidence it holds.
func writeLargeBundle(tb testing.TB, s *Signer, sizes []int, tests int) (string, int64) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "bundle")
	w, err := NewWriter(dir, s)
	if err != nil {
		tb.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [big]\n"))
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	var arts []ArtifactRef
	for i, n := range sizes {
		data := make([]byte, n)
		rng.Read(data)
		ref, err := w.WriteArtifact(fmt.Sprintf("big/part-%03d.bin", i), data)
		if err != nil {
			tb.Fatal(err)
		}
		arts = append(arts, ref)
	}
	var pred any = GateResult{Gate: "big", Status: StatusPass, Started: time.Now(), Artifacts: arts}
	predType := PredicateGateResult
	if tests > 0 {
		names := make([]string, tests)
		for i := range names {
			names[i] = fmt.Sprintf("github.com/rustynet/rustynet/pkg.Test%06d", i)
		}
		if pred, err = TestResultPredicate(true, names, nil, "", nil); err != nil {
			tb.Fatal(err)
		}
		predType = PredicateTestResult
	}
	st, err := NewStatement(subjects, predType, pred)
	if err != nil {
		tb.Fatal(err)
	}
	ref, err := w.SignStatement("big", st)
	if err != nil {
		tb.Fatal(err)
	}
	commit := subjects[0].Digest["gitCommit"]
	mref, err := w.SignManifest(Manifest{Commit: commit, Channel: "nightly", Created: time.Now(), Policy: pol.Path, PolicySHA: pol.SHA256})
	if err != nil {
		tb.Fatal(err)
	}
	vst, err := VerdictStatement(VerdictInput{Subjects: subjects, Commit: commit, Channel: "nightly",
		Policy: pol, Manifest: mref, Gates: []ArtifactRef{ref}, Passed: true, At: time.Now(), Version: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.SignStatement(VerdictName, vst); err != nil {
		tb.Fatal(err)
	}
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	return dir, total
}

// BenchmarkVerify100MB verifies a signed bundle of 100 MiB of artifacts:
// one of 80 MiB and twenty of 1 MiB, read from the page cache.
//
// ns/op (and MB/s) is the wall time of one Verify in this process.
// peak-RSS-MiB is the most resident memory of a child process (this test
// binary run again, see TestVerifyChild) that starts, verifies the bundle
// once and exits: VmHWM from its /proc/self/status, so the Go runtime and
// everything Verify allocated, freed or not, is counted. It is measured
// once, outside the timed loop.
func BenchmarkVerify100MB(b *testing.B) {
	s, v := newSigner(b, Ed25519)
	sizes := []int{80 << 20}
	for range 20 {
		sizes = append(sizes, 1<<20)
	}
	dir, total := writeLargeBundle(b, s, sizes, 0)
	benchVerify(b, s, v, dir, total)
}

// BenchmarkVerifyLargestStatement verifies a bundle whose one gate
// statement is a test result listing as many tests as an envelope of at
// most MaxEnvelopeBytes holds: the most memory a signed statement can
// make Verify take. Measured as BenchmarkVerify100MB's.
func BenchmarkVerifyLargestStatement(b *testing.B) {
	s, v := newSigner(b, Ed25519)
	dir, total := writeLargeBundle(b, s, nil, 66000)
	fi, err := os.Stat(filepath.Join(dir, StatementsDir, "big.dsse.json"))
	if err != nil {
		b.Fatal(err)
	}
	if fi.Size() > MaxEnvelopeBytes || fi.Size() < MaxEnvelopeBytes*9/10 {
		b.Fatalf("the statement is %d bytes, want just under %d", fi.Size(), MaxEnvelopeBytes)
	}
	benchVerify(b, s, v, dir, total)
}

func benchVerify(b *testing.B, s *Signer, v *Verifier, dir string, total int64) {
	pub := filepath.Join(b.TempDir(), "gate.pub")
	if err := os.WriteFile(pub, publicPEM(b, s), 0o644); err != nil {
		b.Fatal(err)
	}
	hwm, err := childPeakRSS(dir, pub)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(dir, v, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
}

// childPeakRSS runs TestVerifyChild on the bundle in dir and returns the
// child's peak resident memory in bytes.
func childPeakRSS(dir, pub string) (int64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RUSTYNET_VERIFY_CHILD="+dir, "RUSTYNET_VERIFY_CHILD_PUBKEY="+pub)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("child: %w\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if kb, ok := strings.CutPrefix(sc.Text(), "child VmHWM kB "); ok {
			n, err := strconv.ParseInt(kb, 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("child printed no VmHWM:\n%s", out)
}

// TestVerifyChild is BenchmarkVerify100MB's child process: it verifies
// the bundle RUSTYNET_VERIFY_CHILD names and prints its own peak
// resident memory. It skips when not run as a child.
func TestVerifyChild(t *testing.T) {
	dir := os.Getenv("RUSTYNET_VERIFY_CHILD")
	if dir == "" {
		t.Skip("run by BenchmarkVerify100MB")
	}
	v, err := LoadVerifier(os.Getenv("RUSTYNET_VERIFY_CHILD_PUBKEY"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, v, ""); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Printf("child VmHWM kB %s\n", strings.TrimSuffix(strings.TrimSpace(kb), " kB"))
			return
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
}

// publicPEM is the signer's public key as LoadVerifier reads it.
func publicPEM(tb testing.TB, s *Signer) []byte {
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
