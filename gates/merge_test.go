package gates

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

const mergeCommit = "0123456789abcdef0123456789abcdef01234567"

// mergeEnv makes partial bundles of a channel of cheap gates, as CI
// runners of a matrix would (run --gates), each a run of its own.
type mergeEnv struct {
	reg      *Registry
	pol      *policies.Release
	signer   *evidence.Signer
	verifier *evidence.Verifier
	bin      string
	// binary is what the next build produces; fail, the gates that fail.
	binary []byte
	fail   map[string]bool
}

func newMergeEnv(t *testing.T) *mergeEnv {
	t.Helper()
	e := &mergeEnv{reg: &Registry{}, bin: filepath.Join(t.TempDir(), "rustynetd"), binary: []byte("binary"), fail: map[string]bool{}}
	e.reg.Register(Spec{Name: BuildGate, Owner: "release-eng", Timeout: 5 * time.Second, Run: func(_ context.Context, r *Run) error {
		r.Built(map[string]string{"rustynetd": e.bin})
		return r.Artifact("digests.txt", e.binary)
	}})
	for _, name := range []string{"a", "b", "c"} {
		e.reg.Register(Spec{Name: name, Owner: "sre", Timeout: 5 * time.Second, Run: func(_ context.Context, r *Run) error {
			if err := r.Artifact("data.txt", []byte("evidence of "+name)); err != nil {
				return err
			}
			if e.fail[name] {
				return Fail("%s is over its budget", name)
			}
			return nil
		}})
	}
	e.pol = policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [build, a, b, c]\n", e.reg.Has)
	e.signer = testSigner(t)
	var err error
	if e.verifier, err = evidence.VerifierFromKey(e.signer.Public()); err != nil {
		t.Fatal(err)
	}
	return e
}

// partial runs the gates (the build gate runs first in every run) and
// returns the bundle.
func (e *mergeEnv) partial(t *testing.T, names []string, opts ...func(*Options)) string {
	t.Helper()
	if err := os.WriteFile(e.bin, e.binary, 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{Registry: e.reg, Policy: e.pol, Channel: "nightly", Gates: names, Out: filepath.Join(t.TempDir(), "partial"),
		Signer: e.signer, Commit: mergeCommit, Version: "test"}
	for _, f := range opts {
		f(&o)
	}
	if _, err := Execute(context.Background(), o); err != nil {
		t.Fatalf("Execute(%v): %v", names, err)
	}
	return o.Out
}

func (e *mergeEnv) merge(t *testing.T, partials ...string) (string, *MergeOutcome, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "merged")
	m, err := Merge(context.Background(), MergeOptions{Out: out, Partials: partials, Signer: e.signer, Registry: e.reg, Version: "test"})
	return out, m, err
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// TestMergeCoversChannel: two partial runs that cover the channel merge
// into a bundle of the whole channel, which verifies and passes like a
// single run's: the gate statements are the partials' own, byte for
// byte, the build's kept once from the oldest, the verdict judged after
// both ran, and the parts recorded.
func TestMergeCoversChannel(t *testing.T) {
	e := newMergeEnv(t)
	pa := e.partial(t, []string{"a"})
	pb := e.partial(t, []string{"c", "b"})
	// The arguments in any order: the oldest part's build is kept.
	out, m, err := e.merge(t, pb, pa)
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if !m.Verdict.Passed || m.Verdict.Partial() {
		t.Errorf("Merge verdict = %+v, want a pass of the whole channel", m.Verdict)
	}
	res, err := VerifyBundle(out, e.verifier, VerifyOptions{Registry: e.reg, Commit: mergeCommit})
	if err != nil {
		t.Fatalf("VerifyBundle(merged): %v", err)
	}
	if !res.Verdict.Passed || res.Verdict.Partial() || !res.Recorded.Passed {
		t.Errorf("verified merged bundle: verdict %+v, recorded %+v; want both a pass of the whole channel", res.Verdict, res.Recorded)
	}
	v := res.Evidence
	if len(v.Manifest.Scope) != 0 {
		t.Errorf("merged manifest scope = %v, want none (the whole channel)", v.Manifest.Scope)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for n := range v.Gates {
			if !yield(n) {
				return
			}
		}
	}); !slices.Equal(got, []string{"a", "b", "build", "c"}) {
		t.Errorf("merged gate statements = %v", got)
	}
	for gate, dir := range map[string]string{"build": pa, "a": pa, "b": pb, "c": pb} {
		rel := filepath.Join(evidence.StatementsDir, gate+".dsse.json")
		if !sameFile(t, filepath.Join(out, rel), filepath.Join(dir, rel)) {
			t.Errorf("%s of the merged bundle is not %s's, byte for byte", rel, dir)
		}
	}
	for _, rel := range []string{"artifacts/a/data.txt", "artifacts/b/data.txt", "artifacts/c/data.txt", "artifacts/build/digests.txt", "artifacts/build/result.json"} {
		dir := pb
		if strings.Contains(rel, "/a/") || strings.Contains(rel, "/build/") {
			dir = pa
		}
		if !sameFile(t, filepath.Join(out, rel), filepath.Join(dir, rel)) {
			t.Errorf("%s of the merged bundle is not %s's", rel, dir)
		}
	}

	va, _ := evidence.Verify(pa, e.verifier, "")
	vb, _ := evidence.Verify(pb, e.verifier, "")
	if !v.Manifest.Created.Equal(va.Manifest.Created) {
		t.Errorf("merged Created = %s, want the oldest partial's %s", v.Manifest.Created, va.Manifest.Created)
	}
	if tv := v.Verdict.GetTimeVerified().AsTime(); tv.Before(vb.Verdict.GetTimeVerified().AsTime()) {
		t.Errorf("merged timeVerified %s is before the last partial's verdict %s", tv, vb.Verdict.GetTimeVerified().AsTime())
	}
	rec, err := evidence.ReadMergeRecord(v)
	if err != nil || rec == nil || len(rec.Partials) != 2 {
		t.Fatalf("ReadMergeRecord = %+v, %v; want 2 parts", rec, err)
	}
	if rec.Partials[0].ManifestSHA256 != va.ManifestDigest || rec.Partials[1].ManifestSHA256 != vb.ManifestDigest ||
		!slices.Equal(rec.Partials[1].Scope, []string{"build", "c", "b"}) {
		t.Errorf("merge record = %+v; want the parts' manifest digests and scopes, oldest first", rec.Partials)
	}
}

// TestMergePartialUnion: partials that do not cover the channel merge
// into a partial bundle, its scope the union in policy order; merged again
// with the rest, it makes the whole channel, and the record nests.
func TestMergePartialUnion(t *testing.T) {
	e := newMergeEnv(t)
	pb := e.partial(t, []string{"b"})
	pa := e.partial(t, []string{"a"})
	ab, m, err := e.merge(t, pb, pa)
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if want := []string{"build", "a", "b"}; !slices.Equal(m.Verdict.Scope, want) || !m.Verdict.Passed {
		t.Errorf("merged verdict: passed=%v scope %v, want a partial pass of %v", m.Verdict.Passed, m.Verdict.Scope, want)
	}
	res, err := VerifyBundle(ab, e.verifier, VerifyOptions{Registry: e.reg})
	if err != nil {
		t.Fatalf("VerifyBundle(merged partial): %v", err)
	}
	if !res.Verdict.Partial() || !res.Verdict.Passed || !slices.Equal(res.Evidence.Manifest.Scope, []string{"build", "a", "b"}) {
		t.Errorf("verified merged partial: %+v, scope %v", res.Verdict, res.Evidence.Manifest.Scope)
	}

	pc := e.partial(t, []string{"c"})
	all, m, err := e.merge(t, ab, pc)
	if err != nil {
		t.Fatalf("Merge of a merged bundle and another partial: %v", err)
	}
	if !m.Verdict.Passed || m.Verdict.Partial() {
		t.Errorf("verdict %+v, want a pass of the whole channel", m.Verdict)
	}
	res, err = VerifyBundle(all, e.verifier, VerifyOptions{Registry: e.reg})
	if err != nil || !res.Verdict.Passed || res.Verdict.Partial() {
		t.Fatalf("VerifyBundle: %+v, %v", res, err)
	}
	rec, err := evidence.ReadMergeRecord(res.Evidence)
	if err != nil || len(rec.Partials) != 2 || len(rec.Partials[0].Merged) != 2 {
		t.Errorf("merge record %+v, %v; want the merged part first, with its 2 parts", rec, err)
	}
}

// TestMergeBlocked: a gate that failed in one partial blocks the merged
// verdict, as signed and as verify recomputes it.
func TestMergeBlocked(t *testing.T) {
	e := newMergeEnv(t)
	pa := e.partial(t, []string{"a"})
	e.fail["c"] = true
	pb := e.partial(t, []string{"b", "c"})
	out, m, err := e.merge(t, pa, pb)
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if m.Verdict.Passed || !slices.Equal(m.Verdict.Blocking(), []string{"c"}) {
		t.Errorf("merged verdict: passed=%v, blocking %v; want blocked by c", m.Verdict.Passed, m.Verdict.Blocking())
	}
	res, err := VerifyBundle(out, e.verifier, VerifyOptions{Registry: e.reg})
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if res.Verdict.Passed || res.Recorded.Passed || res.Evidence.Verdict.GetVerificationResult() != evidence.Failed {
		t.Errorf("verified: verdict passed=%v, recorded passed=%v, signed %s; want all blocked", res.Verdict.Passed, res.Recorded.Passed, res.Evidence.Verdict.GetVerificationResult())
	}
}

// wantRefused fails unless Merge refused with ErrNotMergeable saying every
// one of want, and wrote nothing.
func wantRefused(t *testing.T, what, out string, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, ErrNotMergeable) {
		t.Fatalf("Merge of %s = %v, want ErrNotMergeable", what, err)
	}
	t.Logf("%s: %v", what, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Merge of %s = %q, want it to say %q", what, err, w)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Merge of %s wrote %s", what, out)
	}
}

// TestMergeRefusesMismatch: partials that do not belong in one bundle are
// refused, naming the bundles and what differs, and nothing is written.
func TestMergeRefusesMismatch(t *testing.T) {
	e := newMergeEnv(t)
	pa := e.partial(t, []string{"a"})

	other := strings.Repeat("f", 40)
	pb := e.partial(t, []string{"b"}, func(o *Options) { o.Commit = other })
	out, _, err := e.merge(t, pa, pb)
	wantRefused(t, "partials of two commits", out, err, mergeCommit, other, pa, pb)

	twice := e.partial(t, []string{"a", "b"})
	out, _, err = e.merge(t, pa, twice)
	wantRefused(t, "a gate run twice", out, err, "gate a ran in both", pa, twice)

	out, _, err = e.merge(t, pa, pa)
	wantRefused(t, "one bundle twice", out, err, "the same bundle")

	e.binary = []byte("another build")
	rebuilt := e.partial(t, []string{"b"})
	e.binary = []byte("binary")
	out, _, err = e.merge(t, pa, rebuilt)
	wantRefused(t, "partials of other binaries", out, err, "rustynetd sha256:", "not reproducible", pa, rebuilt)
	va, _ := evidence.Verify(pa, e.verifier, "")
	vr, _ := evidence.Verify(rebuilt, e.verifier, "")
	if err != nil && (!strings.Contains(err.Error(), va.Subjects[1].Digest["sha256"]) || !strings.Contains(err.Error(), vr.Subjects[1].Digest["sha256"])) {
		t.Errorf("the refusal %q does not give both digests of rustynetd", err)
	}

	whatIf := e.partial(t, []string{"b"}, func(o *Options) { o.EffectiveTime = time.Now().AddDate(0, 1, 0).Truncate(time.Second) })
	out, _, err = e.merge(t, pa, whatIf)
	wantRefused(t, "a what-if partial and another", out, err, "effective time", "none (not a what-if)")

	dirty := e.partial(t, []string{"b"}, func(o *Options) { o.Dirty = true })
	out, _, err = e.merge(t, pa, dirty)
	wantRefused(t, "a dirty partial and a clean one", out, err, "dirty")

	dev := e.partial(t, []string{"b"}, func(o *Options) { o.DevelopmentKey = true })
	out, _, err = e.merge(t, pa, dev)
	wantRefused(t, "partials of a development key and not", out, err, "development_key")

	full := e.partial(t, nil)
	out, _, err = e.merge(t, full)
	wantRefused(t, "a run of the whole channel", out, err, full, "run of the whole channel")
}

// TestMergeRefusesOtherKey: a partial signed with another key does not
// verify with the merge's: refused as invalid evidence. A verifier of
// another key than the signer's is refused before anything is read.
func TestMergeRefusesOtherKey(t *testing.T) {
	e := newMergeEnv(t)
	pa := e.partial(t, []string{"a"})
	pb := e.partial(t, []string{"b"}, func(o *Options) { o.Signer = testSigner(t) })
	out, _, err := e.merge(t, pa, pb)
	var ie *evidence.InvalidError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), pb) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("Merge of a partial signed with another key = %v, want invalid evidence naming %s and its signature", err, pb)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Merge wrote %s", out)
	}

	otherVerifier, _ := evidence.VerifierFromKey(testSigner(t).Public())
	out = filepath.Join(t.TempDir(), "merged")
	_, err = Merge(context.Background(), MergeOptions{Out: out, Partials: []string{pa}, Signer: e.signer, Verifier: otherVerifier, Registry: e.reg})
	wantRefused(t, "a signer of another key than the verifier", out, err, "verify takes one key")
}

// TestMergeRefusesTampered: one byte changed in any file of either
// partial (an artifact, a gate statement, the manifest, the policy, the
// verdict) makes the merge refuse with the *evidence.InvalidError of the
// partial's verification, and write nothing.
func TestMergeRefusesTampered(t *testing.T) {
	e := newMergeEnv(t)
	pa := e.partial(t, []string{"a"})
	pb := e.partial(t, []string{"b", "c"})
	for _, c := range []struct{ which, rel string }{
		{"a", "artifacts/a/data.txt"},
		{"a", "statements/a.dsse.json"},
		{"a", "manifest.dsse.json"},
		{"b", "artifacts/c/data.txt"},
		{"b", "artifacts/build/result.json"},
		{"b", "statements/build.dsse.json"},
		{"b", "statements/verdict.dsse.json"},
		{"b", "manifest.dsse.json"},
		{"b", "policy/release.yaml"},
	} {
		t.Run(c.which+"/"+c.rel, func(t *testing.T) {
			a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
			for src, dst := range map[string]string{pa: a, pb: b} {
				if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
					t.Fatal(err)
				}
			}
			dir := map[string]string{"a": a, "b": b}[c.which]
			p := filepath.Join(dir, filepath.FromSlash(c.rel))
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, err := e.merge(t, a, b)
			var ie *evidence.InvalidError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Merge with one byte of %s changed in %s = %v, want invalid evidence naming the partial", c.rel, dir, err)
			}
			t.Log(err)
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Merge wrote %s", out)
			}
		})
	}
}

// TestMergePlanArtifacts: a path in two parts is copied once when it is the
// same file in both and refused when not, naming both; the artifacts of
// a statement taken from another part (the build's) are left out, and
// builds that say other things are refused.
func TestMergePlanArtifacts(t *testing.T) {
	mk := func(dir string, gates []string, arts map[string]string) *part {
		v := &evidence.Verified{Dir: dir, Gates: map[string]*evidence.GateStatement{}}
		v.Manifest.Policy = "policy/release.yaml"
		v.Manifest.Artifacts = append(v.Manifest.Artifacts, evidence.ArtifactRef{Path: v.Manifest.Policy, SHA256: "p"})
		v.Manifest.Sizes = append(v.Manifest.Sizes, 1)
		for _, g := range gates {
			v.Gates[g] = &evidence.GateStatement{Name: g}
		}
		for _, rel := range slices.Sorted(func(yield func(string) bool) {
			for k := range arts {
				if !yield(k) {
					return
				}
			}
		}) {
			v.Manifest.Artifacts = append(v.Manifest.Artifacts, evidence.ArtifactRef{Path: rel, SHA256: arts[rel]})
			v.Manifest.Sizes = append(v.Manifest.Sizes, int64(len(arts[rel])))
		}
		return &part{dir: dir, v: v, dropped: map[string]bool{}}
	}
	p1 := mk("p1", []string{"build", "a"}, map[string]string{"artifacts/build/result.json": "b1", "artifacts/a/x": "ax", "artifacts/shared": "s"})
	p2 := mk("p2", []string{"build", "b"}, map[string]string{"artifacts/build/result.json": "b2", "artifacts/b/x": "bx", "artifacts/shared": "s"})
	if _, err := assignGates([]*part{p1, p2}); err != nil {
		t.Fatal(err)
	}
	got, err := planArtifacts([]*part{p1, p2})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range got {
		paths = append(paths, c.from.dir+":"+c.ref.Path)
	}
	if want := []string{"p1:artifacts/a/x", "p1:artifacts/build/result.json", "p1:artifacts/shared", "p2:artifacts/b/x"}; !slices.Equal(paths, want) {
		t.Errorf("planArtifacts = %v, want %v", paths, want)
	}

	passed, errored := mk("p1", []string{"build"}, nil), mk("p4", []string{"build"}, nil)
	passed.v.Gates["build"].Result.Status, errored.v.Gates["build"].Result.Status = evidence.StatusPass, evidence.StatusError
	if _, err := assignGates([]*part{passed, errored}); !errors.Is(err, ErrNotMergeable) || !strings.Contains(err.Error(), "the build gate says pass in p1 and error in p4") {
		t.Errorf("assignGates of two builds of other statuses = %v, want it refused", err)
	}

	p3 := mk("p3", []string{"c"}, map[string]string{"artifacts/shared": "t"})
	_, err = planArtifacts([]*part{p1, p3})
	if !errors.Is(err, ErrNotMergeable) || !strings.Contains(err.Error(), "artifact artifacts/shared is in both p1 (sha256 s) and p3 (sha256 t)") {
		t.Errorf("planArtifacts of one path with two contents = %v, want it refused naming both", err)
	}
}

// TestMergeAwaitsSignoff: partials of a channel that requires sign-offs
// carry its checklist; merged into the whole channel, the bundle's verdict
// is the gates' and awaits the sign-offs, which are given on the merged
// bundle (they name its manifest), after which it passes.
func TestMergeAwaitsSignoff(t *testing.T) {
	e := newMergeEnv(t)
	roleKeys := t.TempDir()
	if _, err := evidence.Keygen(roleKeys, evidence.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	roleSigner, err := evidence.LoadSigner(filepath.Join(roleKeys, evidence.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(filepath.Join(roleKeys, evidence.PublicKeyFile))
	pol := policy(t, "version: 1\nchecklist: checklist.yaml\nchannels:\n  nightly:\n    gates: [build, a, b, c]\n    signoffs: [engineering]\n"+
		"signers:\n  engineering:\n    - name: eng-lead\n      key: |\n        "+strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n        ")+"\n", e.reg.Has)
	cl, err := policies.ParseChecklist("checklist.yaml", []byte("version: 1\nroles:\n  engineering:\n    - {id: built, what: the daemons build, gate: build, field: status, want: pass}\n"),
		e.reg.EvidenceFields)
	if err != nil {
		t.Fatal(err)
	}
	withSignoffs := func(o *Options) { o.Policy, o.Checklist = pol, cl }
	pa := e.partial(t, []string{"a"}, withSignoffs)
	pb := e.partial(t, []string{"b", "c"}, withSignoffs)
	out, m, err := e.merge(t, pa, pb)
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if !m.Verdict.AwaitingSignoff() || m.Verdict.Partial() {
		t.Errorf("merged verdict %+v, want the whole channel's gates passed, awaiting sign-off", m.Verdict)
	}
	res, err := VerifyBundle(out, e.verifier, VerifyOptions{Registry: e.reg})
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if !res.Verdict.AwaitingSignoff() || !evidence.GatesOnly(res.Evidence.Verdict) || res.Checklist == nil {
		t.Errorf("verified merged bundle: %+v (gates only: %v, checklist %v); want awaiting sign-off", res.Verdict, evidence.GatesOnly(res.Evidence.Verdict), res.Checklist != nil)
	}
	if _, _, err := SignOff(SignoffOptions{Dir: out, Release: e.verifier, Registry: e.reg, Role: "engineering", Signer: roleSigner}); err != nil {
		t.Fatalf("SignOff of the merged bundle: %v", err)
	}
	res, err = VerifyBundle(out, e.verifier, VerifyOptions{Registry: e.reg})
	if err != nil || !res.Verdict.Passed {
		t.Errorf("VerifyBundle after the sign-off: %+v, %v; want a pass", res, err)
	}
}
