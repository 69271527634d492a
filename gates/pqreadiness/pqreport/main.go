// Command pqreport writes the post-quantum readiness report
// (documents/pq/readiness.md) from a bundle of a run of the pq-readiness
// gate, once its signatures and digests verify (make pq-experiment).
//
//	go run ./gates/pqreadiness/pqreport -bundle DIR [-pubkey FILE] [-out FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates/pqreadiness"
	"github.com/rustynet/rustynet/internal/atomicfile"
	"github.com/rustynet/rustynet/policies"
)

func main() {
	bundle := flag.String("bundle", "", "the bundle of a run that includes the pq-readiness gate (required)")
	pubkey := flag.String("pubkey", "", "the public key the bundle is signed with (default: the development key, .gate-dev/gate.pub)")
	out := flag.String("out", pqreadiness.ReportFile, "where to write the report")
	flag.Parse()
	if err := run(*bundle, *pubkey, *out); err != nil {
		fmt.Fprintln(os.Stderr, "pqreport:", err)
		os.Exit(1)
	}
}

func run(bundle, pubkey, out string) error {
	if bundle == "" {
		return fmt.Errorf("-bundle DIR is required: the output directory of rustynet-gate run with the pq-readiness gate")
	}
	if pubkey == "" {
		pubkey = filepath.Join(".gate-dev", evidence.PublicKeyFile)
	}
	pub, err := evidence.LoadVerifier(pubkey)
	if err != nil {
		return fmt.Errorf("%w (give the key the bundle was signed with: -pubkey FILE)", err)
	}
	v, err := evidence.Verify(bundle, pub, "")
	if err != nil {
		return fmt.Errorf("the bundle does not verify: %w", err)
	}
	pol, err := policies.LoadPQ(pqreadiness.PolicyFile)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteDocument(out, func(w io.Writer) error { return pqreadiness.WriteReport(w, v, pol) }); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s from %s\n", out, bundle)
	return nil
}
