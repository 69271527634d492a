// Package perfbudget is the perf-budget gate: it runs the channel's
// benchmark matrix (matrix/) on the namespace testbed, holds every figure to
// policies/budgets.yaml, and, given a baseline bundle, flags regressions
// beyond noise with the Mann-Whitney U test (as benchstat does).
package perfbudget

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/matrix"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "perf-budget"

// BudgetsFile is the budgets policy, relative to the repository root.
const BudgetsFile = "policies/budgets.yaml"

// Register adds the perf-budget gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    "sre",
		Timeout:  90 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo, gates.NeedRoot, gates.NeedIperf3},
		Run:      run,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	b, err := policies.LoadBudgets(filepath.Join(r.Root, BudgetsFile))
	if err != nil {
		return gates.Fail("%v", err)
	}
	mf, cells, err := matrix.Load(filepath.Join(r.Root, b.Matrix[r.Channel]))
	if err != nil {
		return gates.Fail("%v", err)
	}
	for _, bu := range b.Budgets {
		if !matchesAny(bu.Cell.Value, cells) {
			fmt.Fprintf(r.Log, "note: budget %s:%d (%s) matches no cell of matrix %s\n", b.File, bu.Cell.Line, bu.Cell.Value, mf.Name)
		}
	}
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	fmt.Fprintf(r.Log, "matrix %s: %d cells\n", mf.Name, len(cells))
	results := matrix.Run(ctx, matrix.Env{ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log, Progress: r.Progress}, cells)
	raw, _ := json.MarshalIndent(results, "", "  ")
	if err := r.Artifact("results.json", raw); err != nil {
		return err
	}
	var problems []string
	for _, res := range results {
		if res.Error != "" {
			problems = append(problems, res.Cell+": "+res.Error)
		}
		for _, m := range res.Measurements {
			m.Name = res.Cell + ":" + m.Name
			cell, metric, _ := strings.Cut(m.Name, ":")
			for _, bu := range b.For(cell, metric) {
				m.Budget = &evidence.Budget{Max: bu.Max, Min: bu.Min, Source: fmt.Sprintf("%s:%d (%s)", BudgetsFile, bu.Cell.Line, bu.Basis.Value)}
			}
			m = gates.Summarize(m)
			if m.WithinBudget != nil && !*m.WithinBudget {
				problems = append(problems, fmt.Sprintf("%s = %.4g %s (mean of %d), outside its budget %s", m.Name, m.Mean, m.Unit, m.Repetitions, bound(m.Budget)))
			}
			r.Measure(m)
		}
	}
	regressions, err := compare(r, results, b.Regression)
	if err != nil {
		return err
	}
	problems = append(problems, regressions...)
	r.Details(map[string]any{"matrix": mf.Name, "cells": len(cells), "budgets_file_sha256": b.Digest, "problems": problems})
	if len(problems) > 0 {
		sort.Strings(problems)
		return gates.Fail("%d problems; %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

func bound(b *evidence.Budget) string {
	var s []string
	if b.Min != nil {
		s = append(s, fmt.Sprintf(">= %g", *b.Min))
	}
	if b.Max != nil {
		s = append(s, fmt.Sprintf("<= %g", *b.Max))
	}
	return strings.Join(s, " and ")
}

func matchesAny(pattern string, cells []matrix.Cell) bool {
	for _, c := range cells {
		if ok, _ := filepath.Match(pattern, c.Name()); ok {
			return true
		}
	}
	return false
}

// higherIsBetter says which way a unit improves.
func higherIsBetter(unit string) bool {
	switch unit {
	case "Gbit/s", "packets/s", "ratio":
		return true
	}
	return false
}

// compare flags metrics significantly worse than in the baseline bundle.
func compare(r *gates.Run, results []matrix.Result, reg policies.Regression) ([]string, error) {
	if r.Baseline == "" {
		return nil, nil
	}
	v, err := evidence.Verify(r.Baseline, r.BaselineKey, "")
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", r.Baseline, err)
	}
	prev, err := evidence.LoadResults(v)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", r.Baseline, err)
	}
	base := map[string][]float64{}
	for _, m := range prev[Name].Measurements {
		base[m.Name] = m.Values
	}
	fmt.Fprintf(r.Log, "baseline %s (commit %s): %d measurements\n", r.Baseline, v.Manifest.Commit, len(base))
	var out []string
	for _, res := range results {
		for _, m := range res.Measurements {
			name := res.Cell + ":" + m.Name
			old, ok := base[name]
			if !ok || len(old) < 2 || len(m.Values) < 2 {
				continue
			}
			p := stats.MannWhitney(old, m.Values)
			mo, mn := stats.Median(old), stats.Median(m.Values)
			change := (mn - mo) / mo
			worse := change < 0 == higherIsBetter(m.Unit)
			fmt.Fprintf(r.Log, "%s: median %.4g -> %.4g %s (%+.1f%%), p=%.3f\n", name, mo, mn, m.Unit, 100*change, p)
			if worse && p < reg.Alpha && abs(change) >= reg.MinChange {
				out = append(out, fmt.Sprintf("%s regressed: median %.4g -> %.4g %s (%+.1f%%, p=%.3f, n=%d+%d)", name, mo, mn, m.Unit, 100*change, p, len(old), len(m.Values)))
			}
		}
	}
	return out, nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
