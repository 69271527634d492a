// Package conformance is the conformance gate: the backend conformance
// suite run against every backend (as test binaries: the gate imports no
// backend), and the backend agility report generated from it.
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/gates/gotest"
	"github.com/rustynet/rustynet/internal/agility"
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
	var md bytes.Buffer
	rep.Markdown(&md)
	if err := r.Artifact("backend-agility.md", md.Bytes()); err != nil {
		return err
	}
	var failed []string
	summary := map[string]any{}
	for _, b := range rep.Results {
		summary[b.Backend] = b.Cases
		if !b.Passed(rep.Order) {
			failed = append(failed, b.Backend)
		}
		for name, m := range b.Metrics {
			r.Measure(evidence.Measurement{Name: b.Backend + "/" + name, Unit: m.Unit, Method: "backend conformance suite, one run", Values: []float64{m.Value}})
		}
	}
	if err := r.Details(summary); err != nil {
		return err
	}
	if len(failed) > 0 {
		return gates.Fail("backends failing the conformance suite: %s", strings.Join(failed, ", "))
	}
	if !res.OK() {
		return gates.Fail("go test failed: %s", strings.Join(append(res.Failed, res.PackagesFailed...), ", "))
	}
	fmt.Fprintf(r.Log, "%d backends pass every case\n", len(rep.Results))
	return nil
}
