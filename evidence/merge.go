package evidence

import (
	"bytes"
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
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/atomicfile"
)

// What a merged bundle (rustynet-gate merge) is made of beyond what a run
// writes: the gate statements of partial bundles, copied byte for byte so
// that their signatures still hold, their artifacts, copied and hashed
// again on the way, and a record of the partial bundles it was made from.

// MergeRecordFile is the artifact (artifacts/merge.json) in which a merged
// bundle records the partial bundles it was made from. No gate can write
// it: a gate's artifacts are GATE/NAME, and a gate's name has no dot.
const MergeRecordFile = "merge.json"

// maxMergeRecordBytes bounds a merge record read back (a merged bundle
// merged again): a part takes about 300 bytes.
const maxMergeRecordBytes = 1 << 20

// MergeRecord is the content of artifacts/merge.json. It is covered by
// the signed manifest like any artifact.
type MergeRecord struct {
	Partials []MergedPart `json:"partials"`
}

// MergedPart is one partial bundle a merged bundle was made from.
type MergedPart struct {
	// ManifestSHA256 is the digest of the partial's manifest.dsse.json:
	// what its own verdict recorded, and what names the bundle.
	ManifestSHA256 string    `json:"manifest_sha256"`
	Scope          []string  `json:"scope"`
	Created        time.Time `json:"created"`
	// Verified is its verdict's timeVerified.
	Verified time.Time `json:"verified"`
	// Merged lists the parts of a partial that was itself merged.
	Merged []MergedPart `json:"merged,omitempty"`
}

// manifestEntry returns what v's manifest lists for rel.
func (v *Verified) manifestEntry(rel string) (ArtifactRef, int64, bool) {
	i := slices.IndexFunc(v.Manifest.Artifacts, func(a ArtifactRef) bool { return a.Path == rel })
	if i < 0 || i >= len(v.Manifest.Sizes) {
		return ArtifactRef{}, 0, false
	}
	return v.Manifest.Artifacts[i], v.Manifest.Sizes[i], true
}

// ReadMergeRecord returns the record of the parts of a merged bundle, or
// nil for a bundle that was not merged. The file is read as Verify reads
// (a regular file, through no symbolic link) and must still have the size
// and digest the verified manifest gives.
func ReadMergeRecord(v *Verified) (*MergeRecord, error) {
	rel := path.Join(ArtifactsDir, MergeRecordFile)
	if _, _, ok := v.manifestEntry(rel); !ok {
		return nil, nil
	}
	data, err := v.ReadArtifact(rel, maxMergeRecordBytes)
	if err != nil {
		return nil, err
	}
	var rec MergeRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, invalid("%s: %w", rel, err)
	}
	return &rec, nil
}

// CopyStatement copies the signed statement of gate name from the
// verified bundle src into the bundle, byte for byte: its signature holds
// with the key that signed it, which must be the key that signs this
// bundle (Verify takes one key). The envelope must still be the one Verify
// checked: its digest is compared with the verified one. It returns the
// envelope's path and digest, for the verdict.
func (w *Writer) CopyStatement(src *Verified, name string) (ArtifactRef, error) {
	gs, ok := src.Gates[name]
	if !ok {
		return ArtifactRef{}, fmt.Errorf("%s has no statement of gate %s", src.Dir, name)
	}
	b, err := openBundle(src.Dir)
	if err != nil {
		return ArtifactRef{}, err
	}
	defer b.Close()
	data, err := b.readFile(gs.File.Path, MaxEnvelopeBytes, "an envelope")
	if err != nil {
		return ArtifactRef{}, err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != gs.File.SHA256 {
		return ArtifactRef{}, invalid("%s of %s was changed after it was verified", gs.File.Path, src.Dir)
	}
	rel := path.Join(StatementsDir, name+".dsse.json")
	full := filepath.Join(w.dir, filepath.FromSlash(rel))
	// The writer does not list statements (the verdict does): a second
	// copy would silently replace the first.
	if _, err := os.Lstat(full); !errors.Is(err, fs.ErrNotExist) {
		return ArtifactRef{}, fmt.Errorf("statement %s written twice", rel)
	}
	if err := atomicfile.WriteFile(full, data, 0o644); err != nil {
		return ArtifactRef{}, err
	}
	return ArtifactRef{Path: rel, SHA256: gs.File.SHA256}, nil
}

// CopyArtifact copies the artifact rel (a path under artifacts/) of the
// verified bundle src into the bundle at the same path, and records it as
// WriteArtifact does. The artifact streams through (it is never read
// whole, and may be large) and must still have the size and digest src's
// verified manifest gives; if not, nothing is written. It is refused once
// the writer is sealed, and for a path already written.
func (w *Writer) CopyArtifact(src *Verified, rel string) (ArtifactRef, error) {
	if !validRel(rel) || !strings.HasPrefix(rel, ArtifactsDir+"/") {
		return ArtifactRef{}, fmt.Errorf("artifact %s of %s: only a path under %s/ is copied", rel, src.Dir, ArtifactsDir)
	}
	want, size, ok := src.manifestEntry(rel)
	if !ok {
		return ArtifactRef{}, fmt.Errorf("%s lists no artifact %s", src.Dir, rel)
	}
	b, err := openBundle(src.Dir)
	if err != nil {
		return ArtifactRef{}, err
	}
	defer b.Close()
	in, n, err := b.open(rel)
	if err != nil {
		return ArtifactRef{}, err
	}
	defer in.Close()
	if n != size {
		return ArtifactRef{}, invalid("artifact %s of %s is %d bytes, its manifest says %d (it was changed after verification)", rel, src.Dir, n, size)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed {
		return ArtifactRef{}, fmt.Errorf("%s: %w", rel, ErrSealed)
	}
	if slices.ContainsFunc(w.arts, func(a ArtifactRef) bool { return a.Path == rel }) {
		return ArtifactRef{}, fmt.Errorf("artifact %s written twice", rel)
	}
	full := filepath.Join(w.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return ArtifactRef{}, err
	}
	f, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".tmp-*")
	if err != nil {
		return ArtifactRef{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	copied, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(in, size+1), make([]byte, hashBufSize))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ArtifactRef{}, fmt.Errorf("copying %s of %s: %w", rel, src.Dir, err)
	}
	if copied != size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return ArtifactRef{}, invalid("artifact %s of %s does not match its digest in the manifest (it was changed after verification)", rel, src.Dir)
	}
	if err := atomicfile.Rename(tmp, full); err != nil {
		return ArtifactRef{}, err
	}
	w.arts = append(w.arts, want)
	w.sizes = append(w.sizes, size)
	return want, nil
}
