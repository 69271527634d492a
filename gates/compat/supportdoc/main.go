// Command supportdoc writes the compatibility and support policy
// (documents/compatibility/support-policy.md) from policies/compat.yaml and
// the API's capability history (make compat-docs).
//
//	go run ./gates/compat/supportdoc [-out FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rustynet/rustynet/gates/compat"
	"github.com/rustynet/rustynet/internal/atomicfile"
)

func main() {
	out := flag.String("out", compat.SupportDoc, "where to write the policy")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "supportdoc:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	pol, err := compat.Load(".", nil)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteDocument(out, func(w io.Writer) error { return compat.WriteSupportPolicy(w, pol) }); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	return nil
}
