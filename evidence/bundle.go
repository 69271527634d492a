package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	vsa "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/rustynet/rustynet/internal/atomicfile"
)

// Bundle layout.
const (
	ManifestFile  = "manifest.dsse.json"
	StatementsDir = "statements"
	ArtifactsDir  = "artifacts"
	PolicyDir     = "policy"
	VerdictName   = "verdict"
	// Derived files: written next to the evidence, not part of it.
	ReportHTML = "report.html"
	ReportMD   = "report.md"
	// MaxFileBytes bounds any one file the reader will take.
	MaxFileBytes = 1 << 30
)

// BundleVersion is the version of the layout and manifest.
const BundleVersion = 1

// Manifest lists every artifact of a bundle with its digest, and what the
// bundle is about. It is signed (as a DSSE envelope) like the statements.
type Manifest struct {
	Version   int       `json:"version"`
	Commit    string    `json:"commit"`
	Channel   string    `json:"channel"`
	Created   time.Time `json:"created"`
	Policy    string    `json:"policy"`        // path of the release policy in the bundle
	PolicySHA string    `json:"policy_sha256"` // its digest
	KeyID     string    `json:"key_id"`
	// DevelopmentKey is true when the bundle was signed with a key
	// created on the spot by `make gate`: evidence for a developer, not a
	// release.
	DevelopmentKey bool `json:"development_key"`
	// Dirty is true when the working tree had uncommitted changes: the
	// evidence is about the commit plus those changes.
	Dirty bool `json:"dirty"`
	// Scope lists the gates a partial run (rustynet-gate run --gates) was
	// limited to; it is empty for a run of the whole channel.
	Scope     []string      `json:"scope,omitempty"`
	Artifacts []ArtifactRef `json:"artifacts"`
	Sizes     []int64       `json:"sizes"`
}

// Writer builds a bundle in a new directory.
type Writer struct {
	dir    string
	signer *Signer
	arts   []ArtifactRef
	sizes  []int64
}

var relRE = regexp.MustCompile(`^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*$`)

// NewWriter starts a bundle in dir, which must not exist or be empty.
func NewWriter(dir string, s *Signer) (*Writer, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty; a bundle needs a directory of its own", dir)
	}
	for _, d := range []string{StatementsDir, ArtifactsDir, PolicyDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	return &Writer{dir: dir, signer: s}, nil
}

// Dir is the bundle's directory.
func (w *Writer) Dir() string { return w.dir }

func (w *Writer) record(rel string, data []byte) ArtifactRef {
	sum := sha256.Sum256(data)
	ref := ArtifactRef{Path: rel, SHA256: hex.EncodeToString(sum[:])}
	w.arts = append(w.arts, ref)
	w.sizes = append(w.sizes, int64(len(data)))
	return ref
}

// WriteArtifact writes data as artifacts/rel and records its digest.
func (w *Writer) WriteArtifact(rel string, data []byte) (ArtifactRef, error) {
	if !relRE.MatchString(rel) || strings.Contains(rel, "..") {
		return ArtifactRef{}, fmt.Errorf("artifact name %q: want a relative path of letters, digits and ._=-", rel)
	}
	full := path.Join(ArtifactsDir, rel)
	if slices.ContainsFunc(w.arts, func(a ArtifactRef) bool { return a.Path == full }) {
		return ArtifactRef{}, fmt.Errorf("artifact %s written twice", full)
	}
	if err := os.MkdirAll(filepath.Join(w.dir, filepath.Dir(filepath.FromSlash(full))), 0o755); err != nil {
		return ArtifactRef{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(w.dir, filepath.FromSlash(full)), data, 0o644); err != nil {
		return ArtifactRef{}, err
	}
	return w.record(full, data), nil
}

// WritePolicy copies the release policy into the bundle.
func (w *Writer) WritePolicy(name string, data []byte) (ArtifactRef, error) {
	full := path.Join(PolicyDir, name)
	if err := atomicfile.WriteFile(filepath.Join(w.dir, filepath.FromSlash(full)), data, 0o644); err != nil {
		return ArtifactRef{}, err
	}
	return w.record(full, data), nil
}

// signEnvelope writes payload in a signed DSSE envelope at rel and returns
// the envelope's digest.
func (w *Writer) signEnvelope(rel, payloadType string, payload []byte) (ArtifactRef, error) {
	es, err := dsse.NewEnvelopeSigner(w.signer)
	if err != nil {
		return ArtifactRef{}, err
	}
	env, err := es.SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		return ArtifactRef{}, err
	}
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return ArtifactRef{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(w.dir, filepath.FromSlash(rel)), data, 0o644); err != nil {
		return ArtifactRef{}, err
	}
	sum := sha256.Sum256(data)
	return ArtifactRef{Path: rel, SHA256: hex.EncodeToString(sum[:])}, nil
}

// SignStatement writes a gate's (or the verdict's) statement, signed, as
// statements/NAME.dsse.json.
func (w *Writer) SignStatement(name string, st *intoto.Statement) (ArtifactRef, error) {
	if !relRE.MatchString(name) || strings.Contains(name, "/") {
		return ArtifactRef{}, fmt.Errorf("statement name %q", name)
	}
	payload, err := MarshalStatement(st)
	if err != nil {
		return ArtifactRef{}, err
	}
	return w.signEnvelope(path.Join(StatementsDir, name+".dsse.json"), PayloadType, payload)
}

// SignManifest completes m with the artifacts written so far and writes
// it, signed. Its digest goes into the verdict.
func (w *Writer) SignManifest(m Manifest) (ArtifactRef, error) {
	m.Version = BundleVersion
	m.Artifacts, m.Sizes = w.arts, w.sizes
	if m.KeyID == "" {
		m.KeyID, _ = w.signer.KeyID()
	}
	payload, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ArtifactRef{}, err
	}
	return w.signEnvelope(ManifestFile, ManifestPayloadType, payload)
}

// InvalidError says the evidence cannot be trusted: a signature, a digest
// or the layout does not hold. `rustynet-gate verify` exits 3 on it.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid evidence: " + e.Reason }

func invalid(format string, a ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, a...)}
}

// GateStatement is a verified gate statement.
type GateStatement struct {
	Name          string
	File          ArtifactRef
	Statement     *intoto.Statement
	PredicateType string
	// Result is set for gate-result predicates; for test-result ones it is
	// derived from the test result.
	Result GateResult
}

// Verified is a bundle whose every signature and digest holds.
type Verified struct {
	Dir      string
	Manifest Manifest
	Subjects []Subject
	Verdict  *vsa.VerificationSummary
	Gates    map[string]*GateStatement
	Policy   []byte
	KeyID    string
}

// readBounded reads a file of the bundle.
func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, MaxFileBytes)
	}
	return data, nil
}

// openEnvelope reads and verifies a DSSE envelope and returns its payload
// and the digest of the envelope file.
func openEnvelope(dir, rel, payloadType string, v *Verifier) ([]byte, string, error) {
	data, err := readBounded(filepath.Join(dir, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", invalid("%s is missing", rel)
	}
	if err != nil {
		return nil, "", invalid("%s: %v", rel, err)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, "", invalid("%s is not a DSSE envelope: %v", rel, err)
	}
	if env.PayloadType != payloadType {
		return nil, "", invalid("%s has payload type %q, want %q", rel, env.PayloadType, payloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, "", invalid("%s is not signed", rel)
	}
	ev, err := dsse.NewEnvelopeVerifier(v)
	if err != nil {
		return nil, "", err
	}
	if _, err := ev.Verify(context.Background(), &env); err != nil {
		return nil, "", invalid("%s: the signature does not verify with the given key: %v", rel, err)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, "", invalid("%s: payload: %v", rel, err)
	}
	sum := sha256.Sum256(data)
	return payload, hex.EncodeToString(sum[:]), nil
}

// Verify checks a bundle: the manifest's and every statement's signature,
// every artifact's digest, that no file is there that the manifest does
// not account for, that every gate statement is about the same subjects as
// the verdict, and, when commit is set, that the subjects name it. It
// returns an *InvalidError when any of it does not hold. It does not
// judge the verdict: see gates.Evaluate.
func Verify(dir string, v *Verifier, commit string) (*Verified, error) {
	out := &Verified{Dir: dir, Gates: map[string]*GateStatement{}}
	out.KeyID, _ = v.KeyID()
	payload, manifestDigest, err := openEnvelope(dir, ManifestFile, ManifestPayloadType, v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out.Manifest); err != nil {
		return nil, invalid("manifest: %v", err)
	}
	m := &out.Manifest
	if m.Version != BundleVersion {
		return nil, invalid("manifest version %d; this build reads %d", m.Version, BundleVersion)
	}
	if len(m.Sizes) != len(m.Artifacts) {
		return nil, invalid("manifest lists %d artifacts and %d sizes", len(m.Artifacts), len(m.Sizes))
	}
	accounted := map[string]bool{ManifestFile: true, ReportHTML: true, ReportMD: true}
	for i, a := range m.Artifacts {
		if !relRE.MatchString(a.Path) || strings.Contains(a.Path, "..") {
			return nil, invalid("manifest lists a bad path %q", a.Path)
		}
		data, err := readBounded(filepath.Join(dir, filepath.FromSlash(a.Path)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalid("artifact %s is missing", a.Path)
		}
		if err != nil {
			return nil, invalid("artifact %s: %v", a.Path, err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(data)) != m.Sizes[i] {
			return nil, invalid("artifact %s does not match its digest in the manifest (it was changed)", a.Path)
		}
		accounted[a.Path] = true
		if a.Path == m.Policy {
			if a.SHA256 != m.PolicySHA {
				return nil, invalid("policy %s digest differs from the manifest's policy_sha256", a.Path)
			}
			out.Policy = data
		}
	}
	if out.Policy == nil {
		return nil, invalid("the policy %q the manifest names is not among its artifacts", m.Policy)
	}

	// The verdict, then the gate statements it lists.
	vp, _, err := openEnvelope(dir, path.Join(StatementsDir, VerdictName+".dsse.json"), PayloadType, v)
	if err != nil {
		return nil, err
	}
	accounted[path.Join(StatementsDir, VerdictName+".dsse.json")] = true
	vst, err := UnmarshalStatement(vp)
	if err != nil {
		return nil, invalid("verdict: %v", err)
	}
	if vst.GetPredicateType() != PredicateVerdict {
		return nil, invalid("verdict predicate type %q, want %q", vst.GetPredicateType(), PredicateVerdict)
	}
	out.Subjects = Subjects(vst)
	if commit != "" && !slices.ContainsFunc(out.Subjects, func(s Subject) bool { return s.Digest["gitCommit"] == commit }) {
		return nil, invalid("the evidence is about commit %s, not %s", m.Commit, commit)
	}
	if !slices.ContainsFunc(out.Subjects, func(s Subject) bool { return s.Digest["gitCommit"] == m.Commit }) {
		return nil, invalid("the verdict's subjects do not name the manifest's commit %s", m.Commit)
	}
	var sum vsa.VerificationSummary
	raw, _ := vst.GetPredicate().MarshalJSON()
	if err := protojsonUnmarshal(raw, &sum); err != nil {
		return nil, invalid("verdict predicate: %v", err)
	}
	out.Verdict = &sum
	if d := sum.GetPolicy().GetDigest()["sha256"]; d != m.PolicySHA {
		return nil, invalid("the verdict was computed under policy %s, the manifest names %s", d, m.PolicySHA)
	}
	sawManifest := false
	for _, in := range sum.GetInputAttestations() {
		uri, d := in.GetUri(), in.GetDigest()["sha256"]
		if uri == ManifestFile {
			if d != manifestDigest {
				return nil, invalid("manifest does not match the digest the verdict recorded (it was changed)")
			}
			sawManifest = true
			continue
		}
		name, ok := strings.CutSuffix(strings.TrimPrefix(uri, StatementsDir+"/"), ".dsse.json")
		if !ok || !strings.HasPrefix(uri, StatementsDir+"/") {
			return nil, invalid("verdict lists an unexpected input %q", uri)
		}
		payload, digest, err := openEnvelope(dir, uri, PayloadType, v)
		if err != nil {
			return nil, err
		}
		if digest != d {
			return nil, invalid("statement %s does not match the digest the verdict recorded (it was changed)", uri)
		}
		accounted[uri] = true
		st, err := UnmarshalStatement(payload)
		if err != nil {
			return nil, invalid("%s: %v", uri, err)
		}
		if !equalSubjects(Subjects(st), out.Subjects) {
			return nil, invalid("%s is about other subjects than the verdict", uri)
		}
		gs := &GateStatement{Name: name, File: ArtifactRef{Path: uri, SHA256: digest}, Statement: st, PredicateType: st.GetPredicateType()}
		if err := decodeGate(st, gs); err != nil {
			return nil, invalid("%s: %v", uri, err)
		}
		out.Gates[name] = gs
	}
	if !sawManifest {
		return nil, invalid("the verdict does not record the manifest's digest")
	}
	// Nothing else may be in the bundle.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !accounted[filepath.ToSlash(rel)] {
			return invalid("%s is not accounted for by the manifest or the verdict", filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func equalSubjects(a, b []Subject) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || len(a[i].Digest) != len(b[i].Digest) {
			return false
		}
		for k, v := range a[i].Digest {
			if b[i].Digest[k] != v {
				return false
			}
		}
	}
	return true
}
