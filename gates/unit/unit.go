// Package unit is the unit gate: the whole test suite (`go test ./...`,
// but for the tests another gate of every channel runs in full: Covered),
// with every requirement enforced (RUSTYNET_REQUIRE=all), recorded as an
// in-toto test-result.
package unit

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/gates/gotest"
)

// Register adds the unit gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     "unit",
		Owner:    "release-eng",
		Timeout:  40 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo, gates.NeedRoot, gates.NeedDocker, gates.NeedWG, gates.NeedIperf3},
		Run:      run,
		// The statement is a test result: verify reads its counts of
		// passed and failed tests as its details.
		Fields: []string{"passed", "failed"},
	})
}

// Covered are the tests the unit gate leaves to the gate that runs what
// they run, in full and on the build's own binaries, on every channel;
// `make test` runs them all. Dir is where the test may be defined: a test
// of that name anywhere else would be skipped unseen (a unit test checks).
var Covered = []struct{ Test, Dir, Gate string }{
	{"TestConformance", "node/backend/", "conformance"}, // every backend through every case
	{"TestDrills", "gates/incident", "incident"},        // one incident drill; the gate runs them all
	{"TestDRTopologyUp", "gates/dr", "dr"},              // the nightly drill's topology
	{"TestDRRegionLossShort", "gates/dr", "dr"},         // the nightly drill itself
}

// skipPattern is go test's -skip for Covered.
func skipPattern() string {
	var names []string
	for _, c := range Covered {
		names = append(names, c.Test)
	}
	return "^(" + strings.Join(names, "|") + ")$"
}

func run(ctx context.Context, r *gates.Run) error {
	list, err := exec.CommandContext(ctx, "go", "list", "./...").Output()
	total := 0
	if err == nil {
		total = len(strings.Fields(string(list)))
	}
	res, err := gotest.Run(ctx, r, []string{"RUSTYNET_REQUIRE=all"}, total, "-count=1", "-timeout", "30m", "-skip", skipPattern(), "./...")
	if err != nil {
		return err
	}
	if err := r.Artifact("go-test.json", res.Raw); err != nil {
		return err
	}
	if err := r.TestResult(res.OK(), res.Passed, res.Failed); err != nil {
		return err
	}
	if err := r.Details(map[string]int{"passed": len(res.Passed), "failed": len(res.Failed), "skipped": len(res.Skipped)}); err != nil {
		return err
	}
	if !res.OK() {
		// Every failure by name in the log (the reason names the first
		// few): what an auditor, and mutate's blocked_by, look for.
		for _, name := range res.Failed {
			fmt.Fprintf(r.Log, "FAIL %s\n", name)
		}
		for _, pkg := range res.PackagesFailed {
			fmt.Fprintf(r.Log, "FAIL %s (the package failed to build or run)\n", pkg)
		}
		return gates.Fail("%d tests failed (%s), %d packages failed to build or run (%s)", len(res.Failed),
			strings.Join(first(res.Failed, 5), ", "), len(res.PackagesFailed), strings.Join(res.PackagesFailed, ", "))
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(r.Log, "%d tests skipped (each says why in go-test.json)\n", len(res.Skipped))
	}
	return nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
