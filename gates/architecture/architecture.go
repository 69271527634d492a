// Package architecture is the architecture gate: the module's dependency
// rules (internal/arch), protocol modularity among them, checked on the
// import graph that `go list` reports.
package architecture

import (
	"context"
	"strings"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/arch"
)

// Register adds the architecture gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     "architecture",
		Owner:    "release-eng",
		Timeout:  5 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo},
		Run:      run,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	pkgs, err := arch.List(r.Root, "./...")
	if err != nil {
		return err
	}
	n := 0
	for _, p := range pkgs {
		if strings.HasPrefix(p.ImportPath, arch.Module) {
			n++
		}
	}
	violations := arch.Check(pkgs, arch.Rules)
	var rules []string
	for _, ru := range arch.Rules {
		rules = append(rules, ru.Name)
	}
	lines := make([]string, len(violations))
	for i, v := range violations {
		lines[i] = v.String()
	}
	report := map[string]any{"packages_checked": n, "rules": rules, "violations": lines}
	if err := r.ArtifactJSON("violations.json", report); err != nil {
		return err
	}
	if err := r.Details(report); err != nil {
		return err
	}
	if len(violations) > 0 {
		return gates.Fail("%d dependency rule violations; first: %s", len(violations), lines[0])
	}
	return nil
}
