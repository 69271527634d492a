// Package arch checks the module's dependency rules: which packages may
// import which. Protocol modularity is a release gate: the node core,
// the controller and the gates must not depend on any backend
// implementation, only the composition root (cmd/rustynetd) wires backends
// in, and nothing outside the WireGuard backend imports wireguard-go's
// device package.
package arch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Module is this module's path.
const Module = "github.com/rustynet/rustynet"

// Package is what `go list -json` says of a package.
type Package struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

// Rule bans a set of packages, directly or through any chain of imports,
// from every package of the module but the allowed ones.
type Rule struct {
	Name string
	// Banned reports whether importing path is what the rule forbids.
	Banned func(path string) bool
	// Allowed reports whether pkg may import banned packages.
	Allowed func(pkg string) bool
	// Direct limits the rule to direct imports.
	Direct bool
}

func under(prefix string) func(string) bool {
	return func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
}

// backendImpl reports whether p is a backend implementation: a package
// under node/backend/ other than the conformance suite.
func backendImpl(p string) bool {
	rest, ok := strings.CutPrefix(p, Module+"/node/backend/")
	return ok && !strings.HasPrefix(rest, "conformance")
}

// Rules are the module's dependency rules.
var Rules = []Rule{
	{
		Name:   "only the composition root imports backend implementations",
		Banned: backendImpl,
		Allowed: func(pkg string) bool {
			return pkg == Module+"/cmd/rustynetd" || backendImpl(pkg)
		},
	},
	{
		Name:    "only the WireGuard backend imports wireguard-go's device package",
		Banned:  under("golang.zx2c4.com/wireguard/device"),
		Allowed: under(Module + "/node/backend/wireguard"),
		Direct:  true,
	},
	{
		Name:   "the node imports no controller package but controller/api",
		Banned: func(p string) bool { return under(Module+"/controller")(p) && p != Module+"/controller/api" },
		Allowed: func(pkg string) bool {
			return !under(Module + "/node")(pkg)
		},
	},
	{
		Name:    "nothing imports a command",
		Banned:  under(Module + "/cmd"),
		Allowed: func(string) bool { return false },
	},
	{
		Name:   "evidence and gates do not import report",
		Banned: under(Module + "/report"),
		Allowed: func(pkg string) bool {
			return !under(Module+"/evidence")(pkg) && !under(Module+"/gates")(pkg)
		},
	},
}

// Violation is one broken rule: Chain runs from the package that breaks it
// to the banned import.
type Violation struct {
	Rule  string
	Chain []string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s imports %s (%s): %s", v.Chain[0], v.Chain[len(v.Chain)-1], v.Rule, strings.Join(v.Chain, " -> "))
}

// Check applies rules to the module's packages (the non-test import graph
// in pkgs) and returns every violation, one per package and rule.
func Check(pkgs []Package, rules []Rule) []Violation {
	graph := make(map[string][]string, len(pkgs))
	for _, p := range pkgs {
		graph[p.ImportPath] = p.Imports
	}
	var out []Violation
	for _, p := range pkgs {
		if !under(Module)(p.ImportPath) {
			continue
		}
		for _, r := range rules {
			if r.Allowed(p.ImportPath) {
				continue
			}
			if chain := find(graph, p.ImportPath, r); chain != nil {
				out = append(out, Violation{Rule: r.Name, Chain: chain})
			}
		}
	}
	return out
}

// find returns the shortest import chain from pkg to a package r bans.
func find(graph map[string][]string, pkg string, r Rule) []string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range graph[cur] {
			if _, seen := prev[imp]; seen {
				continue
			}
			prev[imp] = cur
			if r.Banned(imp) {
				chain := []string{imp}
				for c := cur; c != ""; c = prev[c] {
					chain = append(chain, c)
				}
				slices.Reverse(chain)
				return chain
			}
			if !r.Direct {
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

// List runs `go list -deps -json` on patterns in dir and returns the
// packages.
func List(dir string, patterns ...string) ([]Package, error) {
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json"}, patterns...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("go list: %v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []Package
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}
