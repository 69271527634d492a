// Command slogen regenerates the SLO rule files (ops/prometheus/rules/slo-*.yml)
// from the specs in slos/, and the SLO and alert catalogues of
// documents/operations/ from the specs and every rule file. `make rules`
// runs it; a test in internal/slo fails when its output is not checked in.
//
//	go run ./internal/slo/slogen [-root DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rustynet/rustynet/internal/slo/gen"
)

func main() {
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	files, err := gen.Files(context.Background(), *root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slogen:", err)
		os.Exit(1)
	}
	if err := gen.WriteFiles(*root, files); err != nil {
		fmt.Fprintln(os.Stderr, "slogen:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println("wrote", f.Path)
	}
}
