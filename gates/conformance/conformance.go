// Package conformance is the conformance gate: the backend conformance
// suite run against every backend (as test binaries: the gate imports no
// backend), and the backend agility report generated from it.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/gates/gotest"
	"github.com/rustynet/rustynet/internal/agility"
	suite "github.com/rustynet/rustynet/node/backend/conformance"
)

// Register adds the conformance gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     "conformance",
		Owner:    "data-plane",
		Timeout:  30 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo, gates.NeedRoot},
		Run:      run,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	// -p 1: one backend at a time, so that each measures its raw baseline
	// and its own throughput without the other loading the machine.
	args := []string{"-p", "1", "-count=1", "-timeout", "25m", "-run", "^TestConformance$", "./node/backend/..."}
	res, err := gotest.Run(ctx, r, []string{"RUSTYNET_REQUIRE=root"}, 0, args...)
	if err != nil {
		return err
	}
	if err := r.Artifact("go-test.json", res.Raw); err != nil {
		return err
	}
	rep, err := agility.Parse(bytes.NewReader(res.Raw))
	if err != nil {
		return gates.Fail("no conformance results: %v", err)
	}
	rep.Env, rep.Commit, rep.Generated, rep.Command = r.Env, r.Commit, time.Now(), "rustynet-gate conformance gate: go test -json "+strings.Join(args, " ")
	backends, claims, err := registered(ctx, r)
	if err != nil {
		return err
	}
	casesOf := func(b string) []string { return suite.CaseNamesFor(slices.Contains(claims[b], "preshared-keys")) }
	required := map[string][]string{}
	for _, b := range backends {
		required[b] = casesOf(b)
	}
	for _, res := range rep.Results {
		res.Required = casesOf(res.Backend)
	}
	var md bytes.Buffer
	rep.Markdown(&md)
	if err := r.Artifact("backend-agility.md", md.Bytes()); err != nil {
		return err
	}
	summary := map[string]any{"registered_backends": backends, "claims": claims, "cases": required}
	for _, b := range rep.Results {
		summary[b.Backend] = b.Cases
		for name, m := range b.Metrics {
			r.Measure(evidence.Measurement{Name: b.Backend + "/" + name, Unit: m.Unit, Method: "backend conformance suite, one run", Values: []float64{m.Value}})
		}
	}
	problems := missing(rep, backends, casesOf)
	summary["problems"] = problems
	if err := r.Details(summary); err != nil {
		return err
	}
	if len(problems) > 0 {
		return gates.Fail("%s", strings.Join(problems, "; "))
	}
	if !res.OK() {
		return gates.Fail("go test failed: %s", strings.Join(append(res.Failed, res.PackagesFailed...), ", "))
	}
	for _, b := range backends {
		fmt.Fprintf(r.Log, "backend %s (claims: %v) passes every case it must (%d)\n", b, claims[b], len(required[b]))
	}
	return nil
}

// registered asks the built rustynetd which backends it registers, the
// backends a node can run, each of which must pass the whole suite, and
// what each claims (preshared-keys: it must pass those cases too).
func registered(ctx context.Context, r *gates.Run) ([]string, map[string][]string, error) {
	bin := r.Binaries["rustynetd"]
	if bin == "" {
		return nil, nil, errors.New("no rustynetd binary: the build gate did not run or failed")
	}
	out, err := exec.CommandContext(ctx, bin, "--list-backends").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("rustynetd --list-backends: %w", err)
	}
	backends, claims := agility.ParseBackends(string(out))
	if len(backends) == 0 {
		return nil, nil, errors.New("rustynetd --list-backends named no backend")
	}
	return backends, claims, nil
}

// missing says, for every registered backend, which case of the suite it
// did not pass: a backend that ran no suite, a case that did not run (a
// case deleted, a package without TestConformance) and a case that was
// skipped all count as missing. Each problem names the backend and the
// case.
func missing(rep *agility.Report, backends []string, casesOf func(backend string) []string) []string {
	var out []string
	for _, b := range backends {
		var res *agility.Result
		for _, x := range rep.Results {
			if x.Backend == b {
				res = x
			}
		}
		if res == nil || len(res.Cases) == 0 {
			out = append(out, fmt.Sprintf("backend %s, which rustynetd registers, ran no conformance case (node/backend/%s has no TestConformance calling conformance.Run)", b, b))
			continue
		}
		for _, c := range casesOf(b) {
			switch st := res.Cases[c]; st {
			case "pass":
			case "":
				out = append(out, fmt.Sprintf("backend %s: case %s did not run", b, c))
			case "skip":
				out = append(out, fmt.Sprintf("backend %s: case %s was skipped (a skipped case counts as missing)", b, c))
			case "fail":
				out = append(out, fmt.Sprintf("backend %s: case %s failed: %s", b, c, failure(res, c)))
			default:
				out = append(out, fmt.Sprintf("backend %s: case %s: %s", b, c, st))
			}
		}
	}
	return out
}

// floors are the cases that hold one of the suite's figures to a floor:
// when one fails, its problem names the figure measured and the floor,
// whatever the case logged.
var floors = map[string]struct {
	metric string
	floor  func(backend string) float64
}{
	"Throughput": {"tunnel_to_raw", suite.FloorFor},
}

// failureMax is how many characters of a failed case's output a problem
// quotes; the whole output is in the gate's go-test.json and
// backend-agility.md.
const failureMax = 300

// failure says how the failed case c of res failed: for a case with a
// floor, the figure against it, then what the case logged.
func failure(res *agility.Result, c string) string {
	var parts []string
	if f, ok := floors[c]; ok {
		if m, ok := res.Metrics[f.metric]; ok {
			parts = append(parts, fmt.Sprintf("%s %.3g %s, the floor %g", f.metric, m.Value, m.Unit, f.floor(res.Backend)))
		} else {
			parts = append(parts, fmt.Sprintf("%s was not measured (the floor is %g)", f.metric, f.floor(res.Backend)))
		}
	}
	if out := res.FailureText(c); out != "" {
		if r := []rune(out); len(r) > failureMax {
			out = string(r[:failureMax]) + "…"
		}
		parts = append(parts, out)
	}
	if len(parts) == 0 {
		return "it logged nothing (see go-test.json)"
	}
	return strings.Join(parts, "; ")
}
