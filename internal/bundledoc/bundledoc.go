// Package bundledoc writes a document generated from a bundle of signed
// evidence (the DR validation report, the post-quantum readiness report)
// once the bundle's signatures and digests verify.
package bundledoc

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/atomicfile"
)

// Write verifies the bundle at dir with the public key at pubkey (the
// development key, .gate-dev/gate.pub, when empty) and writes out with
// generate, atomically: a refused bundle or a failed generation leaves
// out as it was. gate names the gate whose run the bundle must hold, for
// the error that asks for it.
func Write(dir, pubkey, out, gate string, generate func(io.Writer, *evidence.Verified) error) error {
	if dir == "" {
		return fmt.Errorf("-bundle DIR is required: the output directory of rustynet-gate run with the %s gate", gate)
	}
	if pubkey == "" {
		pubkey = filepath.Join(".gate-dev", evidence.PublicKeyFile)
	}
	pub, err := evidence.LoadVerifier(pubkey)
	if err != nil {
		return fmt.Errorf("%w (give the key the bundle was signed with: -pubkey FILE)", err)
	}
	v, err := evidence.Verify(dir, pub, "")
	if err != nil {
		return fmt.Errorf("the bundle does not verify: %w", err)
	}
	return atomicfile.WriteDocument(out, func(w io.Writer) error { return generate(w, v) })
}

// Provenance block markers: rustynet-gate docs starts every deliverable
// it renders with a block between them naming the commit and bundle it
// came from.
const (
	ProvenanceStart = "<!-- rendered-from-evidence -->\n"
	ProvenanceEnd   = "<!-- /rendered-from-evidence -->\n"
)

// StripProvenance removes a leading provenance block (and the blank line
// after it) from a document: what a staleness test compares, whether the
// document was generated from the policies alone or rendered from a
// bundle.
func StripProvenance(doc []byte) []byte {
	if !bytes.HasPrefix(doc, []byte(ProvenanceStart)) {
		return doc
	}
	_, rest, ok := bytes.Cut(doc, []byte(ProvenanceEnd))
	if !ok {
		return doc
	}
	return bytes.TrimPrefix(rest, []byte("\n"))
}
