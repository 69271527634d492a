// Command drreport writes the disaster-recovery validation report
// (documents/resilience/dr-validation.md) from a bundle of a run of the dr
// gate, once its signatures and digests verify (make dr-report).
//
//	go run ./gates/dr/drreport -bundle DIR [-pubkey FILE] [-out FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates/dr"
	"github.com/rustynet/rustynet/internal/bundledoc"
)

func main() {
	bundle := flag.String("bundle", "", "the bundle of a run that includes the dr gate (required)")
	pubkey := flag.String("pubkey", "", "the public key the bundle is signed with (default: the bundle's own development key, .gate-dev/gate.pub)")
	out := flag.String("out", dr.ReportFile, "where to write the report")
	flag.Parse()
	if err := run(*bundle, *pubkey, *out); err != nil {
		fmt.Fprintln(os.Stderr, "drreport:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "wrote %s from %s\n", *out, *bundle)
}

func run(bundle, pubkey, out string) error {
	drills, pol, err := dr.Load(".")
	if err != nil {
		return err
	}
	return bundledoc.Write(bundle, pubkey, out, dr.Name, func(w io.Writer, v *evidence.Verified) error {
		return dr.WriteReport(w, v, drills, pol)
	})
}
