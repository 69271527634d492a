// Command scheduledoc writes the crypto deprecation schedule
// (documents/security/crypto-deprecation-schedule.md) from
// policies/crypto.yaml (make compat-docs).
//
//	go run ./gates/cryptopolicy/scheduledoc [-out FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rustynet/rustynet/gates/cryptopolicy"
	"github.com/rustynet/rustynet/internal/atomicfile"
)

func main() {
	out := flag.String("out", cryptopolicy.ScheduleDoc, "where to write the schedule")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "scheduledoc:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	pol, err := cryptopolicy.LoadSchedulePolicy(".")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteDocument(out, func(w io.Writer) error { return cryptopolicy.WriteSchedule(w, pol) }); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	return nil
}
