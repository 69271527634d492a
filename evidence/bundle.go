package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
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
	// SignoffsDir holds the sign-offs added after the run, each a DSSE
	// envelope signed with its signer's own key (rustynet-gate signoff):
	// not listed in the manifest, which was sealed before them; each
	// names the manifest's digest instead.
	SignoffsDir = "signoffs"
	// ChecklistName is the launch checklist's name in PolicyDir, copied
	// by a run of a channel that requires sign-offs.
	ChecklistName = "launch-checklist.yaml"
	VerdictName   = "verdict"
	// Derived files: written next to the evidence, not part of it.
	ReportHTML = "report.html"
	ReportMD   = "report.md"
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
	Scope []string `json:"scope,omitempty"`
	// EffectiveTime, when set, is the time a what-if run (rustynet-gate
	// run --effective-time) judged its dated rules at instead of when it
	// ran: algorithms' removals, insecure-mode exceptions, the support
	// window, waivers. Its verdict says what would block then; it is no
	// verdict on the commit today, and cannot be published.
	EffectiveTime *time.Time    `json:"effective_time,omitempty"`
	Artifacts     []ArtifactRef `json:"artifacts"`
	Sizes         []int64       `json:"sizes"`
}

// Writer builds a bundle in a new directory. Its methods may be called
// concurrently. Once the manifest is signed the writer is sealed: a later
// artifact could not be accounted for, and is refused with ErrSealed.
type Writer struct {
	dir    string
	signer *Signer

	mu     sync.Mutex
	arts   []ArtifactRef
	sizes  []int64
	sealed bool
}

// ErrSealed is returned for an artifact written after the manifest was
// signed.
var ErrSealed = errors.New("the bundle's manifest is signed: no artifact can be added")

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

// write writes data at the bundle path full and records its digest, under
// the lock: refused once sealed, and refused for a path already written.
func (w *Writer) write(full string, data []byte) (ArtifactRef, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed {
		return ArtifactRef{}, fmt.Errorf("%s: %w", full, ErrSealed)
	}
	if slices.ContainsFunc(w.arts, func(a ArtifactRef) bool { return a.Path == full }) {
		return ArtifactRef{}, fmt.Errorf("artifact %s written twice", full)
	}
	if err := os.MkdirAll(filepath.Join(w.dir, filepath.Dir(filepath.FromSlash(full))), 0o755); err != nil {
		return ArtifactRef{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(w.dir, filepath.FromSlash(full)), data, 0o644); err != nil {
		return ArtifactRef{}, err
	}
	sum := sha256.Sum256(data)
	ref := ArtifactRef{Path: full, SHA256: hex.EncodeToString(sum[:])}
	w.arts = append(w.arts, ref)
	w.sizes = append(w.sizes, int64(len(data)))
	return ref, nil
}

// WriteArtifact writes data as artifacts/rel and records its digest.
func (w *Writer) WriteArtifact(rel string, data []byte) (ArtifactRef, error) {
	if !relRE.MatchString(rel) || strings.Contains(rel, "..") {
		return ArtifactRef{}, fmt.Errorf("artifact name %q: want a relative path of letters, digits and ._=-", rel)
	}
	return w.write(path.Join(ArtifactsDir, rel), data)
}

// WritePolicy copies the release policy into the bundle as policy/name.
func (w *Writer) WritePolicy(name string, data []byte) (ArtifactRef, error) {
	if !validRel(name) || strings.Contains(name, "/") {
		return ArtifactRef{}, fmt.Errorf("policy name %q: want a file name of letters, digits and ._=-", name)
	}
	return w.write(path.Join(PolicyDir, name), data)
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
	w.mu.Lock()
	w.sealed = true
	m.Artifacts, m.Sizes = slices.Clone(w.arts), slices.Clone(w.sizes)
	w.mu.Unlock()
	m.Version = BundleVersion
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
type InvalidError struct {
	Reason string
	// Err is the error behind the reason, if any.
	Err error
}

func (e *InvalidError) Error() string { return "invalid evidence: " + e.Reason }

func (e *InvalidError) Unwrap() error { return e.Err }

// invalid formats the reason as fmt.Errorf does, and wraps what it wraps.
func invalid(format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	return &InvalidError{Reason: err.Error(), Err: errors.Unwrap(err)}
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
	// ManifestDigest is the SHA-256 of the signed manifest's envelope:
	// what a sign-off names as the bundle it signs.
	ManifestDigest string
	Subjects       []Subject
	Verdict        *vsa.VerificationSummary
	Gates          map[string]*GateStatement
	Policy         []byte
	// Checklist is the launch checklist the run copied (policy/
	// launch-checklist.yaml), nil when it copied none.
	Checklist []byte
	KeyID     string
	// Signoffs are the envelopes under signoffs/, read but not verified:
	// each is signed with its signer's key, which the release policy
	// lists by role (gates.Judge verifies them).
	Signoffs []Signoff
}

// Signoff is a sign-off envelope as read from a bundle.
type Signoff struct {
	Path     string
	Envelope dsse.Envelope
	SHA256   string
}

// openEnvelope reads and verifies a DSSE envelope and returns its payload
// and the digest of the envelope file. An envelope larger than
// MaxEnvelopeBytes is refused unread: nothing of it is parsed before its
// size, then its signature, are checked.
func openEnvelope(b *bundleFS, rel, payloadType string, v *Verifier) ([]byte, string, error) {
	data, err := b.readFile(rel, MaxEnvelopeBytes, "an envelope")
	if err != nil {
		return nil, "", err
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, "", invalid("%s is not a DSSE envelope: %w", rel, err)
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
		return nil, "", invalid("%s: the signature does not verify with the given key: %w", rel, err)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, "", invalid("%s: payload: %w", rel, err)
	}
	sum := sha256.Sum256(data)
	return payload, hex.EncodeToString(sum[:]), nil
}

// checkArtifacts checks every artifact the manifest lists against its size
// and digest, hashing each as it streams (none is read whole but the
// policy), and returns the policy.
func checkArtifacts(b *bundleFS, m *Manifest, accounted map[string]bool) (policy, checklist []byte, err error) {
	listed := make(map[string]bool, len(m.Artifacts))
	buf := make([]byte, hashBufSize)
	checklistPath := path.Join(PolicyDir, ChecklistName)
	for i, a := range m.Artifacts {
		if !validRel(a.Path) {
			return nil, nil, invalid("manifest lists a bad path %q", a.Path)
		}
		if listed[a.Path] {
			return nil, nil, invalid("manifest lists %s twice", a.Path)
		}
		listed[a.Path] = true
		want := m.Sizes[i]
		if want < 0 {
			return nil, nil, invalid("manifest gives %s a size of %d bytes", a.Path, want)
		}
		f, size, err := b.open(a.Path)
		if err != nil {
			return nil, nil, err
		}
		if size != want {
			f.Close()
			return nil, nil, invalid("artifact %s is %d bytes, the manifest says %d (it was changed)", a.Path, size, want)
		}
		var sum string
		switch {
		case a.Path == m.Policy:
			if a.SHA256 != m.PolicySHA {
				f.Close()
				return nil, nil, invalid("policy %s digest differs from the manifest's policy_sha256", a.Path)
			}
			if size > MaxPolicyBytes {
				f.Close()
				return nil, nil, invalid("policy %s is %d bytes; a policy may be at most %d bytes", a.Path, size, MaxPolicyBytes)
			}
			policy, err = readAll(f, a.Path, size)
			h := sha256.Sum256(policy)
			sum = hex.EncodeToString(h[:])
		case a.Path == checklistPath:
			if size > MaxPolicyBytes {
				f.Close()
				return nil, nil, invalid("checklist %s is %d bytes; a policy may be at most %d bytes", a.Path, size, MaxPolicyBytes)
			}
			checklist, err = readAll(f, a.Path, size)
			h := sha256.Sum256(checklist)
			sum = hex.EncodeToString(h[:])
		default:
			sum, err = hashFile(f, a.Path, size, buf)
		}
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		if sum != a.SHA256 {
			return nil, nil, invalid("artifact %s does not match its digest in the manifest (it was changed)", a.Path)
		}
		accounted[a.Path] = true
	}
	if policy == nil {
		return nil, nil, invalid("the policy %q the manifest names is not among its artifacts", m.Policy)
	}
	return policy, checklist, nil
}

// statementName returns NAME for a verdict's input statements/NAME.dsse.json,
// and whether uri is such a path: NAME one path component of the strict
// rule of the manifest's paths, and not the verdict's own.
func statementName(uri string) (string, bool) {
	rest, ok := strings.CutPrefix(uri, StatementsDir+"/")
	if !ok || !validRel(uri) {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, ".dsse.json")
	if !ok || !relRE.MatchString(name) || strings.Contains(name, "/") || name == VerdictName {
		return "", false
	}
	return name, true
}

// Verify checks a bundle: the manifest's and every statement's signature,
// every artifact's size and digest, that no file is there that the
// manifest and the verdict do not account for, that every gate statement
// is about the same subjects as the verdict, and, when commit is set,
// that the subjects name it. It reads regular files only, never through a
// symbolic link; it refuses a symbolic link, a named pipe or any other
// special file anywhere in the bundle, and a path, in the manifest or the
// verdict, that is not a plain relative one or is listed twice.
//
// report.html and report.md are derived from the evidence, not part of
// it: Verify only checks that they are regular files. A caller that
// vouches for them renders them again and compares (see report.Check).
//
// It returns an *InvalidError when any of it does not hold. It does not
// judge the verdict: see gates.Evaluate.
func Verify(dir string, v *Verifier, commit string) (*Verified, error) {
	b, err := openBundle(dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := &Verified{Dir: dir, Gates: map[string]*GateStatement{}}
	out.KeyID, _ = v.KeyID()
	payload, manifestDigest, err := openEnvelope(b, ManifestFile, ManifestPayloadType, v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out.Manifest); err != nil {
		return nil, invalid("manifest: %w", err)
	}
	m := &out.Manifest
	if m.Version != BundleVersion {
		return nil, invalid("manifest version %d; this build reads %d", m.Version, BundleVersion)
	}
	if len(m.Sizes) != len(m.Artifacts) {
		return nil, invalid("manifest lists %d artifacts and %d sizes", len(m.Artifacts), len(m.Sizes))
	}
	accounted := map[string]bool{ManifestFile: true, ReportHTML: true, ReportMD: true}
	if out.Policy, out.Checklist, err = checkArtifacts(b, m, accounted); err != nil {
		return nil, err
	}
	out.ManifestDigest = manifestDigest

	// The verdict, then the gate statements it lists.
	verdictFile := path.Join(StatementsDir, VerdictName+".dsse.json")
	vp, _, err := openEnvelope(b, verdictFile, PayloadType, v)
	if err != nil {
		return nil, err
	}
	accounted[verdictFile] = true
	vst, err := UnmarshalStatement(vp)
	if err != nil {
		return nil, invalid("verdict: %w", err)
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
		return nil, invalid("verdict predicate: %w", err)
	}
	out.Verdict = &sum
	if d := sum.GetPolicy().GetDigest()["sha256"]; d != m.PolicySHA {
		return nil, invalid("the verdict was computed under policy %s, the manifest names %s", d, m.PolicySHA)
	}
	sawManifest := false
	inputs := map[string]bool{}
	for _, in := range sum.GetInputAttestations() {
		uri, d := in.GetUri(), in.GetDigest()["sha256"]
		if inputs[uri] {
			return nil, invalid("the verdict lists %q twice", uri)
		}
		inputs[uri] = true
		if uri == ManifestFile {
			if d != manifestDigest {
				return nil, invalid("manifest does not match the digest the verdict recorded (it was changed)")
			}
			sawManifest = true
			continue
		}
		name, ok := statementName(uri)
		if !ok {
			return nil, invalid("verdict lists an unexpected input %q: want %s or %s/NAME.dsse.json, NAME of letters, digits and ._=-", uri, ManifestFile, StatementsDir)
		}
		payload, digest, err := openEnvelope(b, uri, PayloadType, v)
		if err != nil {
			return nil, err
		}
		if digest != d {
			return nil, invalid("statement %s does not match the digest the verdict recorded (it was changed)", uri)
		}
		accounted[uri] = true
		st, err := UnmarshalStatement(payload)
		if err != nil {
			return nil, invalid("%s: %w", uri, err)
		}
		if !EqualSubjects(Subjects(st), out.Subjects) {
			return nil, invalid("%s is about other subjects than the verdict", uri)
		}
		gs := &GateStatement{Name: name, File: ArtifactRef{Path: uri, SHA256: digest}, Statement: st, PredicateType: st.GetPredicateType()}
		if err := decodeGate(st, gs); err != nil {
			return nil, invalid("%s: %w", uri, err)
		}
		out.Gates[name] = gs
	}
	if !sawManifest {
		return nil, invalid("the verdict does not record the manifest's digest")
	}
	// The sign-offs: read here, each accounted for; their signatures are
	// the policy's signers' to check.
	if out.Signoffs, err = readSignoffs(b, accounted); err != nil {
		return nil, err
	}
	// Nothing else may be in the bundle: no other file, no directory that
	// holds none of these, nothing but regular files and directories.
	dirs := parentDirs(accounted)
	for _, d := range []string{StatementsDir, ArtifactsDir, PolicyDir, SignoffsDir} {
		dirs[d] = true
	}
	if err := b.walk(".", accounted, dirs); err != nil {
		return nil, err
	}
	return out, nil
}

// EqualSubjects reports whether two sorted subject lists are the same.
func EqualSubjects(a, b []Subject) bool {
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

// MaxSignoffs bounds the sign-offs a bundle may hold: a few per role.
const MaxSignoffs = 64

var signoffNameRE = regexp.MustCompile(`^[a-z]+\.[A-Za-z0-9_-]+\.dsse\.json$`)

// SignoffFile is the path a sign-off by the key keyID for role is kept at.
func SignoffFile(role, keyID string) string {
	// A key ID is "SHA256:" and base64: made a file name.
	id := strings.NewReplacer("SHA256:", "", "+", "-", "/", "_", "=", "").Replace(keyID)
	return path.Join(SignoffsDir, role+"."+id+".dsse.json")
}

// readSignoffs reads every envelope under signoffs/, bounded in number
// and size, and accounts for it; any other file there is left unaccounted
// (and refused by the walk).
func readSignoffs(b *bundleFS, accounted map[string]bool) ([]Signoff, error) {
	ents, err := b.readDir(SignoffsDir)
	if err != nil {
		return nil, err
	}
	var out []Signoff
	for _, e := range ents {
		rel := path.Join(SignoffsDir, e)
		if !signoffNameRE.MatchString(e) {
			continue // the walk refuses it, naming it
		}
		if len(out) == MaxSignoffs {
			return nil, invalid("more than %d sign-offs", MaxSignoffs)
		}
		data, err := b.readFile(rel, MaxEnvelopeBytes, "a sign-off")
		if err != nil {
			return nil, err
		}
		var env dsse.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, invalid("%s is not a DSSE envelope: %w", rel, err)
		}
		if env.PayloadType != PayloadType {
			return nil, invalid("%s has payload type %q, want %q", rel, env.PayloadType, PayloadType)
		}
		if len(env.Signatures) == 0 {
			return nil, invalid("%s is not signed", rel)
		}
		sum := sha256.Sum256(data)
		out = append(out, Signoff{Path: rel, Envelope: env, SHA256: hex.EncodeToString(sum[:])})
		accounted[rel] = true
	}
	return out, nil
}

// VerifySignoff checks a sign-off's signature with pub and returns its
// statement.
func VerifySignoff(so Signoff, pub crypto.PublicKey) (*intoto.Statement, error) {
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	ev, err := dsse.NewEnvelopeVerifier(&Verifier{pub: pub, keyID: id})
	if err != nil {
		return nil, err
	}
	env := so.Envelope
	if _, err := ev.Verify(context.Background(), &env); err != nil {
		return nil, err
	}
	return UnverifiedSignoffStatement(so)
}

// UnverifiedSignoffStatement decodes a sign-off's statement without
// checking its signature: only to learn which role it claims, and so
// which keys to check it with (VerifySignoff checks, then decodes with
// it).
func UnverifiedSignoffStatement(so Signoff) (*intoto.Statement, error) {
	payload, err := so.Envelope.DecodeB64Payload()
	if err != nil {
		return nil, invalid("%s: payload: %w", so.Path, err)
	}
	st, err := UnmarshalStatement(payload)
	if err != nil {
		return nil, invalid("%s: %w", so.Path, err)
	}
	return st, nil
}

// AddSignoff writes a sign-off of the bundle in dir: st signed with s, at
// SignoffFile(role, s's key ID). A second sign-off by one key for one
// role is refused; the first stands.
func AddSignoff(dir, role string, st *intoto.Statement, s *Signer) (string, error) {
	id, err := s.KeyID()
	if err != nil {
		return "", err
	}
	rel := SignoffFile(role, id)
	full := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Lstat(full); err == nil {
		return "", fmt.Errorf("%s exists: this key has signed %s off already", rel, role)
	}
	payload, err := MarshalStatement(st)
	if err != nil {
		return "", err
	}
	es, err := dsse.NewEnvelopeSigner(s)
	if err != nil {
		return "", err
	}
	env, err := es.SignPayload(context.Background(), PayloadType, payload)
	if err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, SignoffsDir), 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(full, data, 0o644); err != nil {
		return "", err
	}
	return rel, nil
}
