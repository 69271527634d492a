package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// What is read from a verified bundle beyond its statements: the gates'
// full results (the reports, and perf-budget's baseline, show them), and
// the derived files, the reports, which package report renders again and
// compares (SameContent).

// ResultFile is the artifact, inside a gate's directory, holding the
// gate's full result.
const ResultFile = "result.json"

// LoadResults reads artifacts/GATE/result.json for every gate statement
// of v. The files are covered by the verified manifest; each is hashed
// again as it is read, so a file changed since Verify is refused. A gate
// whose result file the manifest does not list gets the result its
// statement carries.
func LoadResults(v *Verified) (map[string]GateResult, error) {
	type listing struct {
		sha256 string
		size   int64
	}
	listed := map[string]listing{}
	for i, a := range v.Manifest.Artifacts {
		if i < len(v.Manifest.Sizes) {
			listed[a.Path] = listing{a.SHA256, v.Manifest.Sizes[i]}
		}
	}
	b, err := openBundle(v.Dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := make(map[string]GateResult, len(v.Gates))
	for name, gs := range v.Gates {
		// Only a path the manifest lists is read: manifest paths are
		// checked by Verify, so a strange gate name cannot lead outside
		// the bundle.
		rel := path.Join(ArtifactsDir, name, ResultFile)
		want, ok := listed[rel]
		if !ok || strings.Contains(name, "/") {
			out[name] = gs.Result
			continue
		}
		r, err := loadResult(b, rel, want.size, want.sha256)
		if err != nil {
			return nil, err
		}
		if r.Gate != name {
			return nil, invalid("%s is the result of gate %q, not %s", rel, r.Gate, name)
		}
		if gs.PredicateType == PredicateGateResult && r.Status != gs.Result.Status {
			return nil, invalid("%s says %s, the signed statement of gate %s says %s", rel, r.Status, name, gs.Result.Status)
		}
		out[name] = r
	}
	return out, nil
}

// loadResult decodes a gate's result file as it streams, hashing it on
// the way: the decoded result is returned only when the file is the size
// and has the digest the manifest gives.
func loadResult(b *bundleFS, rel string, size int64, sha string) (GateResult, error) {
	f, n, err := b.open(rel)
	if err != nil {
		return GateResult{}, err
	}
	defer f.Close()
	if n != size {
		return GateResult{}, invalid("%s is %d bytes, the manifest says %d (it was changed after verification)", rel, n, size)
	}
	h := sha256.New()
	lr := &io.LimitedReader{R: f, N: size + 1}
	var r GateResult
	dec := json.NewDecoder(io.TeeReader(lr, h))
	decErr := dec.Decode(&r)
	if _, err := dec.Token(); decErr == nil && !errors.Is(err, io.EOF) {
		decErr = errors.New("data after the result")
	}
	if _, err := io.Copy(h, lr); err != nil {
		return GateResult{}, invalid("%s: %w", rel, err)
	}
	if lr.N != 1 || hex.EncodeToString(h.Sum(nil)) != sha {
		return GateResult{}, invalid("%s does not match its digest in the manifest (it was changed after verification)", rel)
	}
	if decErr != nil {
		return GateResult{}, invalid("%s: %w", rel, decErr)
	}
	return r, nil
}

// SameContent reports whether the bundle's file rel holds exactly want:
// how a caller that vouches for a file derived from the evidence, such as
// a report, checks it against what it renders. The file is read as Verify
// reads (a regular file, through no symbolic link: anything else is an
// *InvalidError); a missing file is an error that wraps fs.ErrNotExist.
func (v *Verified) SameContent(rel string, want []byte) (bool, error) {
	b, err := openBundle(v.Dir)
	if err != nil {
		return false, err
	}
	defer b.Close()
	return b.sameContent(rel, want)
}

// ValidPath reports whether p is a path a bundle may hold, as Verify
// admits them: relative, of letters, digits and ._=- in components, no
// "..", and clean.
func ValidPath(p string) bool { return validRel(p) }

// ReadArtifact reads an artifact the manifest lists, at most max bytes,
// as Verify reads (a regular file, through no symbolic link), and checks
// it against its size and digest again: the file is read now, after
// Verify, and may have changed since.
func (v *Verified) ReadArtifact(rel string, max int64) ([]byte, error) {
	ref, size, ok := v.manifestEntry(rel)
	if !ok {
		return nil, invalid("%s is not an artifact of the bundle", rel)
	}
	if size > max {
		return nil, fmt.Errorf("%s is %d bytes; at most %d are read", rel, size, max)
	}
	b, err := openBundle(v.Dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	data, err := b.readFile(rel, max, "an artifact")
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(data); int64(len(data)) != size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, invalid("artifact %s does not match its digest in the manifest (it was changed after verification)", rel)
	}
	return data, nil
}
