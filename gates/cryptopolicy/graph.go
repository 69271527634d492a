package cryptopolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// Shipped is the pattern of the shipped binaries' packages, whose
// dependency graph the gate scans.
const Shipped = "./cmd/..."

// Edge is one import of a crypto package (crypto, crypto/...,
// golang.org/x/crypto/...) by a package outside the standard library.
type Edge struct {
	Crypto string `json:"crypto"`
	By     string `json:"by"`
	// Own is set when By is a package of the scanned module.
	Own bool `json:"own,omitempty"`
}

// listed is what `go list -json` says of a package.
type listed struct {
	ImportPath string
	Imports    []string
	Standard   bool
	Module     *struct {
		Path string
		Main bool
	}
}

// scan lists the dependency graph of the packages patterns names, in the
// module at dir (`go list -deps`, without tests), and returns every import
// of a crypto package by a package outside the standard library, sorted.
// The standard library's packages importing each other are not edges.
func scan(ctx context.Context, dir string, patterns ...string) ([]Edge, error) {
	args := append([]string{"list", "-deps", "-json=ImportPath,Imports,Standard,Module"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	edges := []Edge{} // not nil: an empty graph is a result
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Standard {
			continue
		}
		own := p.Module != nil && p.Module.Main
		for _, imp := range p.Imports {
			if isCrypto(imp) {
				edges = append(edges, Edge{Crypto: imp, By: p.ImportPath, Own: own})
			}
		}
	}
	slices.SortFunc(edges, func(a, b Edge) int {
		return strings.Compare(a.Crypto+"\x00"+a.By, b.Crypto+"\x00"+b.By)
	})
	return edges, nil
}

func isCrypto(path string) bool {
	for _, root := range []string{"crypto", "golang.org/x/crypto"} {
		if path == root || strings.HasPrefix(path, root+"/") {
			return true
		}
	}
	return false
}

// checkGraph holds the scanned edges to the policy at now:
//   - every crypto package must map to an algorithm;
//   - a removed algorithm imported by the module's own package blocks,
//     whatever linked_by says;
//   - a removed algorithm imported by a third-party package blocks unless
//     the algorithm's linked_by names that package; each entry that does
//     is reported with its reason, and one that matches no edge blocks,
//     so the list stays true;
//   - a deprecated algorithm is reported.
func checkGraph(rep *report, pol *policies.Crypto, edges []Edge, now time.Time) {
	used := map[*policies.Link]bool{}
	for i := 0; i < len(edges); {
		pkg := edges[i].Crypto
		j := i
		for j < len(edges) && edges[j].Crypto == pkg {
			j++
		}
		importers := edges[i:j]
		i = j
		a, ok := pol.AlgorithmFor(pkg)
		if !ok {
			rep.add("code", false, "%s is imported by %s, but %s maps it to no algorithm: add it to the algorithm it implements (go_packages)",
				pkg, names(importers), pol.File)
			continue
		}
		st := a.StatusAt(now)
		if st == policies.Allowed {
			rep.add("code", true, "%s (%s) is allowed; imported by %s", pkg, a.Name.Value, names(importers))
			continue
		}
		for _, e := range importers {
			l, listed := a.Linked(e.By)
			if listed {
				used[l] = true
			}
			switch {
			case e.Own && st == policies.Removed:
				why := ""
				if listed {
					why = fmt.Sprintf("; its linked_by entry (%s:%d) cannot excuse the module's own package", pol.File, l.Package.Line)
				}
				rep.add("code", false, "%s (%s, removed on %s) is imported by the module's own %s: a removed algorithm the module imports always blocks%s",
					pkg, a.Name.Value, a.RemovedOn().Format(time.DateOnly), e.By, why)
			case e.Own:
				rep.add("code", true, "%s (%s, %s) is imported by the module's own %s: reported; once removed it blocks",
					pkg, a.Name.Value, statusSince(a, st), e.By)
			case listed:
				rep.add("linked", true, "%s (%s, %s) is linked by %s, listed in %s:%d: %s",
					pkg, a.Name.Value, statusSince(a, st), e.By, pol.File, l.Package.Line, oneLine(l.Reason.Value))
			case st == policies.Removed:
				rep.add("linked", false, "%s (%s, removed on %s) is imported by %s, which the linked_by of %s does not list: list it with why the product does not depend on it, or drop the dependency",
					pkg, a.Name.Value, a.RemovedOn().Format(time.DateOnly), e.By, a.Name.Value)
			default:
				rep.add("linked", true, "%s (%s, %s) is imported by %s, which the linked_by of %s does not list: it will block from %s",
					pkg, a.Name.Value, statusSince(a, st), e.By, a.Name.Value, a.RemovedOn().Format(time.DateOnly))
			}
		}
	}
	for i := range pol.Algorithms {
		a := &pol.Algorithms[i]
		for k := range a.LinkedBy {
			if l := &a.LinkedBy[k]; !used[l] {
				rep.add("linked", false, "the linked_by entry for %s under %s (%s:%d) matches no import of %v in the graph: remove it, so the policy says what the binaries link",
					l.Package.Value, a.Name.Value, pol.File, l.Package.Line, packages(a))
			}
		}
	}
}

func statusSince(a *policies.Algorithm, st string) string {
	switch {
	case st == policies.Removed:
		return "removed on " + a.RemovedOn().Format(time.DateOnly)
	case a.Status.Value == policies.Removed:
		return "to be removed on " + a.Since.Format(time.DateOnly)
	case a.Removal != nil:
		return "deprecated from " + a.Since.Format(time.DateOnly) + ", to be removed on " + a.Removal.Format(time.DateOnly)
	}
	return "deprecated from " + a.Since.Format(time.DateOnly)
}

func names(edges []Edge) string {
	s := make([]string, len(edges))
	for i, e := range edges {
		s[i] = e.By
	}
	return strings.Join(s, ", ")
}

func packages(a *policies.Algorithm) []string {
	s := make([]string, len(a.GoPackages))
	for i, p := range a.GoPackages {
		s[i] = p.Value
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
