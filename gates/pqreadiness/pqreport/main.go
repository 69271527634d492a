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

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates/pqreadiness"
	"github.com/rustynet/rustynet/internal/bundledoc"
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
	fmt.Fprintf(os.Stderr, "wrote %s from %s\n", *out, *bundle)
}

func run(bundle, pubkey, out string) error {
	pol, err := policies.LoadPQ(pqreadiness.PolicyFile)
	if err != nil {
		return err
	}
	return bundledoc.Write(bundle, pubkey, out, pqreadiness.Name, func(w io.Writer, v *evidence.Verified) error {
		return pqreadiness.WriteReport(w, v, pol)
	})
}
