package gates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// A GA run takes more than a day on one machine, so CI fans its gates out
// over runners (rustynet-gate run --gates X,Y on each), each writing a
// signed partial bundle; Merge makes them one bundle that verify judges as
// it judges a single run's.

// ErrNotMergeable is returned for partial bundles that are each valid but
// do not belong in one bundle: about other commits, channels, policies or
// binaries, or running the same gate twice.
var ErrNotMergeable = errors.New("the bundles cannot be merged")

// MergeOptions configures a merge.
type MergeOptions struct {
	// Out is the directory of the merged bundle: it must not exist or be
	// empty.
	Out string
	// Partials are the bundles of partial runs (run --gates), each valid
	// with Verifier's key.
	Partials []string
	// Signer signs the merged manifest and verdict. It must hold the key
	// the partials were signed with: their gate statements are copied
	// with their signatures, and verify takes one key.
	Signer *evidence.Signer
	// Verifier checks the partials; nil is the signer's public key.
	Verifier *evidence.Verifier
	// Registry holds the gates the policy names, and their Recheck.
	Registry *Registry
	Now      func() time.Time
	Version  string
	// CheckPartial, if set, is called with each partial once it verified,
	// before anything is written; an error refuses the merge. The command
	// checks the partial's reports there (package report renders them,
	// and imports this one), so that merge refuses what verify refuses.
	CheckPartial func(dir string, v *Verification) error
}

// MergeOutcome is what a merge produced.
type MergeOutcome struct {
	Dir     string
	Commit  string
	Verdict *Verdict
	// Results are the gates' results as their statements say, in the
	// order of the verdict's scope.
	Results []evidence.GateResult
	// Parts are the partial bundles as the merged bundle records them,
	// oldest first, and Partials their directories in that order.
	Parts          []evidence.MergedPart
	Partials       []string
	DevelopmentKey bool
	Dirty          bool
}

// part is a verified partial bundle.
type part struct {
	dir      string
	ver      *Verification
	v        *evidence.Verified
	digest   string    // of its manifest
	verified time.Time // its verdict's timeVerified
	// dropped names the gates whose statement the merge takes from
	// another part (the build gate, which every partial run runs).
	dropped map[string]bool
}

// Merge verifies partial bundles (as verify does: evidence.Verify, then
// Judge) and writes them as one bundle in o.Out: their gate statements
// copied byte for byte, their artifacts, their policy, a new manifest,
// and a verdict recomputed from every statement under the policy and
// signed with o.Signer.
//
// The partials must be about the same commit and binaries, under the same
// policy, channel and key, alike in development key, dirty tree and
// effective time; no gate may run in two of them, but the build gate (see
// below). A partial that is invalid is refused with the
// *evidence.InvalidError of its verification; partials that do not belong
// together with an error wrapping ErrNotMergeable. Nothing is written
// unless every check holds.
//
// The merged bundle's scope is the union of the partials', in policy
// order. When it is exactly the channel's gates (and the build gate, which
// a run of the whole channel runs too), the bundle is a run of the whole
// channel: no scope, its verdict the channel's. A union with a gate the
// channel does not require stays partial: a verdict on the channel judges
// only the channel's gates, and would drop that gate's result from
// judgement, which no single run does.
func Merge(ctx context.Context, o MergeOptions) (*MergeOutcome, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Out == "":
		return nil, errors.New("merge: no output directory")
	case len(o.Partials) == 0:
		return nil, errors.New("merge: no partial bundle to merge")
	case o.Signer == nil || o.Registry == nil:
		return nil, errors.New("merge: a signer and a registry are required")
	}
	if o.Verifier == nil {
		var err error
		if o.Verifier, err = evidence.VerifierFromKey(o.Signer.Public()); err != nil {
			return nil, err
		}
	}
	keyID, _ := o.Verifier.KeyID()
	if sid, _ := o.Signer.KeyID(); sid != keyID {
		return nil, fmt.Errorf("%w: the partials are verified with key %s and the merged bundle would be signed with key %s; "+
			"verify takes one key, so the merge signs with the key the partials were signed with", ErrNotMergeable, keyID, sid)
	}
	// Refused now rather than after hours of hashing: NewWriter refuses
	// it too.
	if ents, err := os.ReadDir(o.Out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty; a bundle needs a directory of its own", o.Out)
	}
	absOut, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}

	parts := make([]*part, 0, len(o.Partials))
	for _, dir := range o.Partials {
		if abs, err := filepath.Abs(dir); err == nil {
			if rel, err := filepath.Rel(abs, absOut); err == nil && !strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("merge: the output %s is inside the partial bundle %s, which it would change", o.Out, dir)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := verifyPart(dir, o, keyID)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(parts, func(q *part) bool { return q.digest == p.digest }); i >= 0 {
			return nil, fmt.Errorf("%w: %s and %s are the same bundle (manifest sha256 %s)", ErrNotMergeable, parts[i].dir, dir, p.digest)
		}
		parts = append(parts, p)
	}
	// Oldest first: the first part's build statement is the one kept,
	// and the merged bundle does not depend on the order of the
	// arguments (a CI matrix downloads its bundles in any order).
	slices.SortStableFunc(parts, func(a, b *part) int {
		if c := a.v.Manifest.Created.Compare(b.v.Manifest.Created); c != 0 {
			return c
		}
		return strings.Compare(a.digest, b.digest)
	})
	first := parts[0]
	for _, p := range parts[1:] {
		if err := alike(first, p); err != nil {
			return nil, err
		}
	}
	from, err := assignGates(parts)
	if err != nil {
		return nil, err
	}
	arts, err := planArtifacts(parts)
	if err != nil {
		return nil, err
	}
	var record []evidence.MergedPart
	for _, p := range parts {
		rec, err := evidence.ReadMergeRecord(p.v)
		if err != nil {
			return nil, fmt.Errorf("partial %s: %w", p.dir, err)
		}
		mp := evidence.MergedPart{ManifestSHA256: p.digest, Scope: p.v.Manifest.Scope, Created: p.v.Manifest.Created, Verified: p.verified}
		if rec != nil {
			mp.Merged = rec.Partials
		}
		record = append(record, mp)
	}

	m := first.v.Manifest
	pol := first.ver.Own
	channel := m.Channel
	required, err := pol.Gates(channel)
	if err != nil {
		return nil, fmt.Errorf("partial %s: %w", first.dir, err)
	}
	scope := mergeScope(parts, required)
	var names []string // the statements, in scope order
	names = append(names, scope...)
	for _, n := range slices.Sorted(maps.Keys(from)) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if coversChannel(scope, required) {
		scope = nil
	}

	// The verdict is judged at the merge, as a run judges at its end: a
	// time after every gate of every partial ran. Waivers only lapse, so
	// a later time is never more lenient than a partial's own verdict; a
	// time before the last partial's (the earliest Created, say) could
	// let a waiver lapsed before a gate ran excuse that gate. A partial
	// judged after this clock's now (runners' clocks differ) moves it to
	// that partial's time. A what-if is judged at its effective time, as
	// run does; timeVerified stays the time of the merge.
	//
	// The bundle's Created is the earliest partial's: when its evidence
	// began, as a run's is when it started, so that every gate started
	// after it; the policy's horizon (Judge checks it against Created)
	// held for that partial, under the same policy.
	verifiedAt := o.Now()
	for _, p := range parts {
		if p.verified.After(verifiedAt) {
			verifiedAt = p.verified
		}
	}
	judgeAt := verifiedAt
	if m.EffectiveTime != nil {
		judgeAt = *m.EffectiveTime
	}
	statuses := map[string]evidence.Status{}
	signed := map[string]*evidence.GateStatement{}
	var results []evidence.GateResult
	for _, n := range names {
		gs := from[n].v.Gates[n]
		statuses[n], signed[n] = gs.Result.Status, gs
		results = append(results, gs.Result)
	}
	rechecked := applyRechecks(o.Registry, signed, statuses, channel)
	verdict, err := Evaluate(pol, channel, statuses, judgeAt, scope)
	if err != nil {
		return nil, err
	}
	annotate(verdict, rechecked)
	if m.EffectiveTime != nil {
		verdict.EffectiveTime = *m.EffectiveTime
	}
	// A channel that requires sign-offs gets them on the merged bundle
	// (a sign-off names its manifest): its verdict is the gates' until
	// then, as a run's is. The partials' checklist is what they answer.
	awaits := scope == nil && len(pol.Signoffs(channel)) > 0
	if awaits {
		if first.v.Checklist == nil {
			return nil, fmt.Errorf("%w: channel %s requires sign-offs %v, and %s carries no launch checklist for them to answer",
				ErrNotMergeable, channel, pol.Signoffs(channel), first.dir)
		}
		verdict.applySignoffs(pol.Signoffs(channel), nil)
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(o.Out)
	existed := statErr == nil
	w, err := evidence.NewWriter(o.Out, o.Signer)
	if err != nil {
		return nil, err
	}
	mw := mergeWrite{w: w, parts: parts, from: from, names: names, arts: arts, record: evidence.MergeRecord{Partials: record},
		manifest: evidence.Manifest{Commit: m.Commit, Channel: channel, Created: first.v.Manifest.Created, DevelopmentKey: m.DevelopmentKey,
			Dirty: m.Dirty, Scope: scope, EffectiveTime: m.EffectiveTime},
		verdict: evidence.VerdictInput{Subjects: first.v.Subjects, Commit: m.Commit, Channel: channel, Passed: verdict.GatesPassed(),
			At: verifiedAt, Version: o.Version, Partial: scope != nil, AwaitsSignoff: awaits}}
	if err := mw.write(ctx); err != nil {
		// A bundle without its verdict never verifies; removed, the
		// merge can be run again into the same directory.
		discard(o.Out, existed)
		return nil, err
	}
	out := &MergeOutcome{Dir: o.Out, Commit: m.Commit, Verdict: verdict, Results: results, Parts: record,
		DevelopmentKey: m.DevelopmentKey, Dirty: m.Dirty}
	for _, p := range parts {
		out.Partials = append(out.Partials, p.dir)
	}
	return out, nil
}

// verifyPart verifies and judges one partial bundle.
func verifyPart(dir string, o MergeOptions, keyID string) (*part, error) {
	ver, err := VerifyBundle(dir, o.Verifier, VerifyOptions{Registry: o.Registry})
	if err != nil {
		return nil, fmt.Errorf("partial %s (verified with key %s): %w", dir, keyID, err)
	}
	if o.CheckPartial != nil {
		if err := o.CheckPartial(dir, ver); err != nil {
			return nil, fmt.Errorf("partial %s: %w", dir, err)
		}
	}
	v := ver.Evidence
	if len(v.Manifest.Scope) == 0 {
		return nil, fmt.Errorf("%w: %s is a run of the whole channel %s (its manifest has no scope): merge takes the bundles of partial runs (run --gates)",
			ErrNotMergeable, dir, v.Manifest.Channel)
	}
	if v.Manifest.KeyID != keyID {
		return nil, fmt.Errorf("%w: %s verifies with key %s, but its manifest names key %s", ErrNotMergeable, dir, keyID, v.Manifest.KeyID)
	}
	return &part{dir: dir, ver: ver, v: v, digest: v.ManifestDigest, verified: v.Verdict.GetTimeVerified().AsTime(), dropped: map[string]bool{}}, nil
}

// alike refuses a part that does not belong with the first: every
// statement of a bundle is about one commit, tree and set of binaries,
// judged under one policy by one key, for one channel, at one time.
func alike(first, p *part) error {
	a, b := &first.v.Manifest, &p.v.Manifest
	differ := func(what string, x, y any) error {
		return fmt.Errorf("%w: %s has %s %v, %s has %v", ErrNotMergeable, first.dir, what, x, p.dir, y)
	}
	switch {
	case a.Commit != b.Commit:
		return fmt.Errorf("%w: %s is about commit %s, %s about commit %s", ErrNotMergeable, first.dir, a.Commit, p.dir, b.Commit)
	case a.Channel != b.Channel:
		return differ("channel", a.Channel, b.Channel)
	case a.PolicySHA != b.PolicySHA:
		return differ("the policy of sha256", a.PolicySHA, b.PolicySHA)
	case a.KeyID != b.KeyID:
		return differ("key", a.KeyID, b.KeyID)
	case a.DevelopmentKey != b.DevelopmentKey:
		return differ("development_key", a.DevelopmentKey, b.DevelopmentKey)
	case a.Dirty != b.Dirty:
		return differ("dirty (uncommitted changes in the tree)", a.Dirty, b.Dirty)
	case !sameTime(a.EffectiveTime, b.EffectiveTime):
		return differ("effective time (a what-if run's)", effectiveString(a.EffectiveTime), effectiveString(b.EffectiveTime))
	case !bytes.Equal(first.v.Checklist, p.v.Checklist):
		// The sign-offs answer the one the merged bundle carries.
		return differ("the launch checklist of sha256", checklistString(first.v.Checklist), checklistString(p.v.Checklist))
	}
	if x, y, ok := subjectsDiffer(first.v.Subjects, p.v.Subjects); ok {
		return fmt.Errorf("%w: %s in %s, %s in %s: the builds are not reproducible, and every statement of a bundle is about the same binaries",
			ErrNotMergeable, x, first.dir, y, p.dir)
	}
	return nil
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func checklistString(c []byte) string {
	if c == nil {
		return "none"
	}
	return policies.Digest(c)
}

func effectiveString(t *time.Time) string {
	if t == nil {
		return "none (not a what-if)"
	}
	return t.UTC().Format(time.RFC3339)
}

// subjectsDiffer describes the first subject (by name) that differs
// between a and b, as each has it; ok is false when they are the same.
func subjectsDiffer(a, b []evidence.Subject) (inA, inB string, ok bool) {
	desc := func(ss []evidence.Subject, n string) (string, map[string]string) {
		i := slices.IndexFunc(ss, func(s evidence.Subject) bool { return s.Name == n })
		if i < 0 {
			return "no " + n, nil
		}
		return n + " " + digestString(ss[i].Digest), ss[i].Digest
	}
	var names []string
	for _, s := range slices.Concat(a, b) {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		x, dx := desc(a, n)
		y, dy := desc(b, n)
		if dx == nil || dy == nil || !maps.Equal(dx, dy) {
			return x, y, true
		}
	}
	return "", "", false
}

// digestString is a subject's digests, as algorithm:value.
func digestString(d map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		out = append(out, k+":"+d[k])
	}
	return strings.Join(out, ",")
}

// assignGates says which part each gate statement is taken from. A gate
// in two parts is refused, but for the build gate: a run of some gates
// runs it first in every partial (the others need its binaries), so every
// part has a statement of it. Parts are merged only when they are about
// the same binaries (alike checked their subjects: the builds were
// reproducible), so those statements say the same of the same subjects;
// the first (the oldest part's) is kept with its artifacts, the others'
// are dropped, and the record of the parts names every partial bundle.
// They must agree on the build's status too.
func assignGates(parts []*part) (map[string]*part, error) {
	from := map[string]*part{}
	for _, p := range parts {
		for _, n := range slices.Sorted(maps.Keys(p.v.Gates)) {
			q, ok := from[n]
			switch {
			case !ok:
				from[n] = p
			case n != BuildGate:
				return nil, fmt.Errorf("%w: gate %s ran in both %s and %s", ErrNotMergeable, n, q.dir, p.dir)
			default:
				if x, y := q.v.Gates[n].Result.Status, p.v.Gates[n].Result.Status; x != y {
					return nil, fmt.Errorf("%w: the %s gate says %s in %s and %s in %s", ErrNotMergeable, n, x, q.dir, y, p.dir)
				}
				p.dropped[n] = true
			}
		}
	}
	return from, nil
}

// copied is an artifact to copy, and the part it is taken from.
type copied struct {
	from *part
	ref  evidence.ArtifactRef
	size int64
}

// planArtifacts lists the artifacts of every part to copy: all of those
// under artifacts/, but those of a gate whose statement is taken from
// another part, and the record of an earlier merge (the new record names
// it). One path in two parts is copied once if it is the same file in
// both, and refused if not. The policies and launch checklists are not
// among them (the first part's are written; alike checked the others'
// are the same).
func planArtifacts(parts []*part) ([]copied, error) {
	var out []copied
	at := map[string]int{}
	record := path.Join(evidence.ArtifactsDir, evidence.MergeRecordFile)
	checklist := path.Join(evidence.PolicyDir, evidence.ChecklistName)
	for _, p := range parts {
		m := &p.v.Manifest
		for i, a := range m.Artifacts {
			if a.Path == m.Policy || a.Path == checklist || a.Path == record || p.dropped[owner(p.v, a.Path)] {
				continue
			}
			if !strings.HasPrefix(a.Path, evidence.ArtifactsDir+"/") {
				return nil, fmt.Errorf("%w: %s lists %s, which is neither its policy nor under %s/: not a bundle rustynet-gate run writes",
					ErrNotMergeable, p.dir, a.Path, evidence.ArtifactsDir)
			}
			if j, ok := at[a.Path]; ok {
				if c := out[j]; c.ref.SHA256 != a.SHA256 || c.size != m.Sizes[i] {
					return nil, fmt.Errorf("%w: artifact %s is in both %s (sha256 %s) and %s (sha256 %s), not the same file",
						ErrNotMergeable, a.Path, c.from.dir, c.ref.SHA256, p.dir, a.SHA256)
				}
				continue
			}
			at[a.Path] = len(out)
			out = append(out, copied{from: p, ref: a, size: m.Sizes[i]})
		}
	}
	return out, nil
}

// owner is the gate of v whose artifact rel is (the runner writes a
// gate's artifacts as artifacts/GATE/NAME; the longest such GATE, as
// gate names may have slashes), or "".
func owner(v *evidence.Verified, rel string) string {
	best := ""
	for n := range v.Gates {
		if strings.HasPrefix(rel, path.Join(evidence.ArtifactsDir, n)+"/") && len(n) > len(best) {
			best = n
		}
	}
	return best
}

// mergeScope is the union of the parts' scopes: the gates the channel
// requires in policy order, then any other in the order the parts list
// them; the build gate first if the policy does not place it, as a run
// runs it.
func mergeScope(parts []*part, required []string) []string {
	var all []string
	for _, p := range parts {
		all = append(all, p.v.Manifest.Scope...)
	}
	var out []string
	if slices.Contains(all, BuildGate) && !slices.Contains(required, BuildGate) {
		out = append(out, BuildGate)
	}
	for _, g := range required {
		if slices.Contains(all, g) {
			out = append(out, g)
		}
	}
	for _, g := range all {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// coversChannel reports whether scope is the channel's gates exactly, or
// with the build gate, which a run of the whole channel runs whether or
// not the policy names it.
func coversChannel(scope, required []string) bool {
	for _, g := range required {
		if !slices.Contains(scope, g) {
			return false
		}
	}
	for _, g := range scope {
		if g != BuildGate && !slices.Contains(required, g) {
			return false
		}
	}
	return true
}

// mergeWrite is what Merge writes.
type mergeWrite struct {
	w        *evidence.Writer
	parts    []*part
	from     map[string]*part
	names    []string
	arts     []copied
	record   evidence.MergeRecord
	manifest evidence.Manifest
	verdict  evidence.VerdictInput
}

// write writes the merged bundle: the policy, the artifacts and the
// record of the parts (the manifest lists them), the gate statements, the
// manifest, and the verdict last.
func (mw *mergeWrite) write(ctx context.Context) error {
	first := mw.parts[0].v
	pol, err := mw.w.WritePolicy(path.Base(first.Manifest.Policy), first.Policy)
	if err != nil {
		return err
	}
	if first.Checklist != nil {
		if _, err := mw.w.WritePolicy(evidence.ChecklistName, first.Checklist); err != nil {
			return err
		}
	}
	for _, c := range mw.arts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := mw.w.CopyArtifact(c.from.v, c.ref.Path); err != nil {
			return err
		}
	}
	rec, err := json.MarshalIndent(mw.record, "", "  ")
	if err != nil {
		return err
	}
	if _, err := mw.w.WriteArtifact(evidence.MergeRecordFile, rec); err != nil {
		return err
	}
	var refs []evidence.ArtifactRef
	for _, n := range mw.names {
		ref, err := mw.w.CopyStatement(mw.from[n].v, n)
		if err != nil {
			return err
		}
		refs = append(refs, ref)
	}
	m := mw.manifest
	m.Policy, m.PolicySHA = pol.Path, pol.SHA256
	mref, err := mw.w.SignManifest(m)
	if err != nil {
		return err
	}
	in := mw.verdict
	in.Policy, in.Manifest, in.Gates = pol, mref, refs
	vst, err := evidence.VerdictStatement(in)
	if err != nil {
		return err
	}
	_, err = mw.w.SignStatement(evidence.VerdictName, vst)
	return err
}

// discard removes what a failed merge wrote into out: out itself if the
// merge made it, else what NewWriter and the writer put in it (it was
// empty).
func discard(out string, existed bool) {
	if !existed {
		os.RemoveAll(out)
		return
	}
	for _, n := range []string{evidence.StatementsDir, evidence.ArtifactsDir, evidence.PolicyDir, evidence.ManifestFile} {
		os.RemoveAll(filepath.Join(out, n))
	}
}
