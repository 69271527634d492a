// Package perfbudget is the perf-budget gate: it runs the channel's
// benchmark matrix (matrix/) on the namespace testbed, holds every figure to
// policies/budgets.yaml, and, given a baseline bundle, flags regressions
// beyond noise with the Mann-Whitney U test (as benchstat does).
package perfbudget

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/etcdproc"
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
		Fields:   []string{"matrix", "cells", "budgets_file_sha256", "budgeted", "problems", "targets_missed", "paired_baseline", "paired_judged"},
	})
}

func run(ctx context.Context, r *gates.Run) error {
	b, err := policies.LoadBudgets(filepath.Join(r.Root, BudgetsFile))
	if err != nil {
		return fmt.Errorf("budgets: %w", err) // could not run
	}
	mf, cells, err := matrix.Load(filepath.Join(r.Root, b.Matrix[r.Channel]))
	if err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	// Every budget, target and reported entry must select a cell of some
	// channel's matrix: one that selects none (a misspelt cell, a cell
	// renamed) holds nothing, and blocks until the file is put right.
	var all []matrix.Cell
	for _, ch := range policies.Channels {
		_, cs, err := matrix.Load(filepath.Join(r.Root, b.Matrix[ch]))
		if err != nil {
			return fmt.Errorf("matrix of %s: %w", ch, err)
		}
		all = append(all, cs...)
	}
	dead := deadEntries(b, all)
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	fmt.Fprintf(r.Log, "matrix %s: %d cells\n", mf.Name, len(cells))
	cand := matrix.Env{ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log, Progress: r.Progress}
	if slices.ContainsFunc(cells, func(c matrix.Cell) bool { return c.Param("store") == "etcd3" }) {
		// The etcd server of the commit's go.mod, for the cells on etcd.
		dir := filepath.Join(r.Work, "etcd-server")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		bin, err := etcdproc.Build(ctx, r.Root, dir)
		if err != nil {
			return err // could not run
		}
		cand.EtcdBin = bin
	}
	var results []matrix.Result
	baseline := ""
	if mf.PairedRounds > 0 {
		base, commit, done, err := buildBaseline(ctx, r)
		if err != nil {
			return err // could not run: no baseline to measure against
		}
		defer done()
		baseline = commit
		results = matrix.RunPaired(ctx, cand, base, cells, mf.PairedRounds)
	} else {
		results = matrix.Run(ctx, cand, cells)
	}
	if err := r.ArtifactJSON("results.json", results); err != nil {
		return err
	}
	j := judge(results, b)
	for _, m := range j.measurements {
		r.Measure(m)
	}
	problems, missed, budgeted := append(dead, j.problems...), j.missed, j.budgeted
	fmt.Fprintf(r.Log, "%d measurements held to a budget, %d problems; %d targets missed (reported, not blocking)\n", budgeted, len(problems), len(missed))
	for _, s := range missed {
		fmt.Fprintf(r.Log, "target missed: %s\n", s)
	}
	regressions, err := compare(r, results, b.Regression)
	if err != nil {
		return err
	}
	problems = append(problems, regressions...)
	pv := judgePaired(results, b.Paired)
	for _, m := range pv.measurements {
		r.Measure(m)
	}
	problems = append(problems, pv.problems...)
	if mf.PairedRounds > 0 {
		fmt.Fprintf(r.Log, "paired with baseline %s: %d metrics judged, %d regressions\n", baseline, pv.judged, len(pv.problems))
		if pv.judged == 0 {
			problems = append(problems, fmt.Sprintf("the paired run judged nothing: no cell measured any of paired.metrics %v in %s", b.Paired.Metrics, BudgetsFile))
		}
	}
	if err := r.Details(map[string]any{"matrix": mf.Name, "cells": len(cells), "budgets_file_sha256": b.Digest, "budgeted": budgeted,
		"problems": problems, "targets_missed": missed, "paired_baseline": baseline, "paired_judged": pv.judged}); err != nil {
		return err
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return gates.Fail("%d problems; %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

// judgement is the matrix's results held to the budgets.
type judgement struct {
	measurements []evidence.Measurement // named CELL:METRIC, summarized, with their budgets
	problems     []string               // a cell that failed, a figure outside its budget
	missed       []string               // figures that miss a target
	budgeted     int                    // measurements held to a budget
}

func judge(results []matrix.Result, b *policies.Budgets) judgement {
	var j judgement
	used := map[int]bool{} // budgets (by line) that bounded a measurement
	ran := map[int]bool{}  // budgets (by line) that match a cell that measured something
	for _, res := range results {
		if res.Error != "" {
			j.problems = append(j.problems, res.Cell+": "+res.Error)
		}
		if len(res.Measurements) > 0 {
			for _, bu := range b.Budgets {
				if policies.MatchCell(bu.Cell.Value, res.Cell) {
					ran[bu.Cell.Line] = true
				}
			}
		}
		for _, m := range res.Measurements {
			metric := m.Name
			m.Name = res.Cell + ":" + metric
			bs := b.For(res.Cell, metric)
			for _, bu := range bs {
				used[bu.Cell.Line] = true
			}
			m.Budget = merge(bs)
			m = gates.Summarize(m)
			if m.Budget != nil {
				j.budgeted++
			}
			if m.WithinBudget != nil && !*m.WithinBudget {
				j.problems = append(j.problems, fmt.Sprintf("%s = %.4g %s (mean of %d), outside its budget %s", m.Name, m.Mean, m.Unit, m.Repetitions, bound(m.Budget)))
			}
			if t := merge(b.TargetsFor(res.Cell, metric)); t != nil && len(m.Values) > 0 && !within(m.Mean, t) {
				j.missed = append(j.missed, fmt.Sprintf("%s = %.4g %s (mean of %d) misses its target %s [%s]", m.Name, m.Mean, m.Unit, m.Repetitions, bound(t), t.Source))
			}
			j.measurements = append(j.measurements, m)
		}
	}
	// Every measured metric is bounded, or reported only with a reason:
	// a measurement nobody bounds is one a regression passes through.
	for _, res := range results {
		for _, m := range res.Measurements {
			if len(b.For(res.Cell, m.Name)) == 0 && !b.IsReported(res.Cell, m.Name) {
				j.problems = append(j.problems, fmt.Sprintf("%s:%s has no budget in %s (and is not listed under reported, with why)", res.Cell, m.Name, BudgetsFile))
			}
		}
	}
	// A budget whose cells ran but measured nothing of its metric (a
	// misspelt metric, a measurement renamed) would hold nothing: it
	// blocks until the file is put right.
	for _, bu := range b.Budgets {
		if ran[bu.Cell.Line] && !used[bu.Cell.Line] {
			j.problems = append(j.problems, fmt.Sprintf("%s:%d: budget on metric %q of %s bounds nothing: its cells ran and measured no such metric",
				BudgetsFile, bu.Cell.Line, bu.Metric.Value, bu.Cell.Value))
		}
	}
	return j
}

// merge folds the budgets that apply to one metric into one: the tightest
// max, the tightest min, every source.
func merge(bs []policies.Budget) *evidence.Budget {
	if len(bs) == 0 {
		return nil
	}
	out := &evidence.Budget{}
	var src []string
	for _, bu := range bs {
		if bu.Max != nil && (out.Max == nil || *bu.Max < *out.Max) {
			out.Max = bu.Max
		}
		if bu.Min != nil && (out.Min == nil || *bu.Min > *out.Min) {
			out.Min = bu.Min
		}
		src = append(src, fmt.Sprintf("%s:%d (%s)", BudgetsFile, bu.Cell.Line, bu.Basis.Value))
	}
	out.Source = strings.Join(src, "; ")
	return out
}

func within(v float64, b *evidence.Budget) bool {
	return (b.Max == nil || v <= *b.Max) && (b.Min == nil || v >= *b.Min)
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

// deadEntries lists the budgets, targets and reported entries that select
// no cell of any matrix.
func deadEntries(b *policies.Budgets, cells []matrix.Cell) []string {
	var out []string
	check := func(what string, cell policies.Str) {
		if !matchesAny(cell.Value, cells) {
			out = append(out, fmt.Sprintf("%s:%d: %s for %s selects no cell of any channel's matrix", BudgetsFile, cell.Line, what, cell.Value))
		}
	}
	for _, bu := range b.Budgets {
		check("budget", bu.Cell)
	}
	for _, t := range b.Targets {
		check("target", t.Cell)
	}
	for _, rp := range b.Reported {
		check("reported entry", rp.Cell)
	}
	return out
}

func matchesAny(pattern string, cells []matrix.Cell) bool {
	for _, c := range cells {
		if policies.MatchCell(pattern, c.Name()) {
			return true
		}
	}
	return false
}

// shift compares one measurement's values in two runs: their medians, the
// relative change of the median (infinite from a zero median to any other)
// and the two-sided Mann-Whitney p-value.
func shift(old, now []float64) (mo, mn, change, p float64) {
	mo, mn = stats.Median(old), stats.Median(now)
	switch {
	case mo != 0:
		change = (mn - mo) / math.Abs(mo)
	case mn > 0:
		change = math.Inf(1)
	case mn < 0:
		change = math.Inf(-1)
	}
	return mo, mn, change, stats.MannWhitney(old, now)
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
	compared, blind := 0, 0
	for _, res := range results {
		for _, m := range res.Measurements {
			name := res.Cell + ":" + m.Name
			old, ok := base[name]
			if !ok || len(old) == 0 || len(m.Values) == 0 {
				continue
			}
			if strings.HasPrefix(m.Name, "raw_") {
				// The raw path is the machine, not the code: a change in
				// it is the run's context (another machine, another
				// load), said so and not judged.
				fmt.Fprintf(r.Log, "%s: the reference path, not judged: median %.4g -> %.4g %s\n", name, stats.Median(old), stats.Median(m.Values), m.Unit)
				continue
			}
			if stats.MinP(len(old), len(m.Values)) >= reg.Alpha {
				// Too few values on one side for the test ever to reach
				// alpha (3 against 3 cannot): say so rather than call it
				// "no change".
				blind++
				fmt.Fprintf(r.Log, "%s: n=%d+%d cannot show a significant change at alpha %g; not compared\n", name, len(old), len(m.Values), reg.Alpha)
				continue
			}
			compared++
			mo, mn, change, p := shift(old, m.Values)
			worse := change != 0 && (change < 0) == higherIsBetter(m.Unit)
			minChange := reg.MinChangeFor(res.Cell, m.Name)
			fmt.Fprintf(r.Log, "%s: median %.4g -> %.4g %s (%+.1f%%), p=%.3f, counts from %.0f%%\n", name, mo, mn, m.Unit, 100*change, p, 100*minChange)
			if worse && p < reg.Alpha && math.Abs(change) >= minChange {
				out = append(out, fmt.Sprintf("%s regressed: median %.4g -> %.4g %s (%+.1f%%, p=%.3f, n=%d+%d; drift between runs of one commit reaches %.0f%%)",
					name, mo, mn, m.Unit, 100*change, p, len(old), len(m.Values), 100*minChange))
			}
		}
	}
	fmt.Fprintf(r.Log, "baseline comparison: %d measurements compared, %d with too few values to compare, %d regressions\n", compared, blind, len(out))
	return out, nil
}
