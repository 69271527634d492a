package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates/perfbudget"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/policies"
)

// cmdBudgets applies the budget rule (perfbudget.Suggest) to the
// perf-budget figures of earlier bundles, and prints, for every budget and
// target of the budgets file, the run means, the bound in force and the
// bound the rule gives, with a basis line to record in the file.
func budgetsCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "budgets DIR DIR... [--budgets FILE] [--pubkey FILE]", "suggest performance budgets from earlier bundles' perf-budget figures", "", cli.MinimumArgs(2, "two or more DIRs (evidence bundles): the rule needs the spread of at least two runs"))
	fs := c.Flags()
	file := fs.String("budgets", perfbudget.BudgetsFile, "the budgets file whose entries to suggest bounds for")
	pubkey := fs.String("pubkey", "", "public key the bundles must verify with (default: the development key)")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		if len(pos) < 2 {
			return fail(exitUsage, "the rule needs the spread of at least two runs; give two or more bundles")
		}
		root, _ := repoRoot()
		pub, err := evidence.LoadVerifier(defaultPubkey(root, *pubkey))
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		b, err := policies.LoadBudgets(*file)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		var runs []perfbudget.Run
		for _, dir := range pos {
			v, err := evidence.Verify(dir, pub, "")
			if err != nil {
				return err
			}
			results, err := evidence.LoadResults(v)
			if err != nil {
				return err
			}
			res, ok := results[perfbudget.Name]
			if !ok || len(res.Measurements) == 0 {
				return fail(exitUsage, "%s holds no %s figures", dir, perfbudget.Name)
			}
			r := perfbudget.Run{Source: fmt.Sprintf("%s (commit %.12s, %s)", filepath.Base(dir), v.Manifest.Commit, v.Manifest.Created.Format("2006-01-02")),
				Values: map[string][]float64{}, Units: map[string]string{}}
			for _, m := range res.Measurements {
				r.Values[m.Name], r.Units[m.Name] = m.Values, m.Unit
			}
			runs = append(runs, r)
			fmt.Fprintf(stdout, "run %d: %s, %d measurements, on %s\n", len(runs), r.Source, len(r.Values), res.Environment)
		}
		fmt.Fprintf(stdout, "\nrule: the worst run mean, widened by twice the spread of the run means (at least %.0f%%), rounded outwards to 2 digits\n\n", 100*perfbudget.MinHeadroom)
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "line\tkind\tcell\tmetric\tin force\tsuggested\tbasis")
		for _, s := range perfbudget.Suggest(b, runs) {
			kind := "budget"
			if s.Target {
				kind = "target"
			}
			cur, dir := s.Entry.Min, ">="
			if s.Max {
				cur, dir = s.Entry.Max, "<="
			}
			sug, basis := "-", "no run measured it"
			if !math.IsNaN(s.Bound) {
				sug, basis = dir+" "+strconv.FormatFloat(s.Bound, 'f', -1, 64), s.Basis
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s %g\t%s\t%s\n", s.Entry.Cell.Line, kind, s.Entry.Cell.Value, s.Entry.Metric.Value, dir, *cur, sug, basis)
		}
		if err := tw.Flush(); err != nil {
			return err
		}

		// Measurements without a budget block the gate: the rule's bound for
		// each, as entries to add to the file (the basis still names the runs'
		// matrix and dates, which only whoever ran them knows).
		if missing := perfbudget.SuggestMissing(b, runs); len(missing) > 0 {
			fmt.Fprintf(stdout, "\nmeasurements with no budget (and not listed under reported), which block until they have one; by the rule:\n")
			for _, s := range missing {
				dir, bound := "max", s.Bound
				if !s.Max {
					dir = "min"
				}
				fmt.Fprintf(stdout, "  - cell: %s\n    metric: %s\n    %s: %s\n    basis: \"%s\"\n",
					s.Entry.Cell.Value, s.Entry.Metric.Value, dir, strconv.FormatFloat(bound, 'f', -1, 64), s.Basis)
			}
		}

		// The drift between these runs: what a baseline comparison of one
		// commit with itself would call a regression at the thresholds in
		// force, and the regression.noise entries that would set it apart.
		drifts := perfbudget.Drifts(runs, b.Regression)
		fmt.Fprintf(stdout, "\ndrift between runs (every ordered pair compared as the gate compares a run with its baseline, Mann-Whitney at alpha %g):\n", b.Regression.Alpha)
		fmt.Fprintf(stdout, "a regression.noise entry is the largest significant change times %g, rounded up; suggested where it exceeds the threshold in force\n\n", perfbudget.NoiseFactor)
		tw = tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "measurement\tsignificant changes\tin force\tsuggested")
		var entries []string
		for _, d := range drifts {
			ch := make([]string, len(d.Changes))
			for i, c := range d.Changes {
				ch[i] = fmt.Sprintf("%+.0f%%", 100*c)
			}
			sug := "-"
			if d.Threshold > d.InForce {
				sug = fmt.Sprintf("%g", d.Threshold)
				cell, metric, _ := strings.Cut(d.Name, ":")
				entries = append(entries, fmt.Sprintf("    - cell: %s\n      metric: %s\n      min_change: %g\n      basis: \"%d of %d pairs of runs differ significantly, by %s\"",
					cell, metric, d.Threshold, len(d.Changes), d.Pairs, strings.Join(ch, ", ")))
			}
			fmt.Fprintf(tw, "%s\t%s of %d pairs\t%g\t%s\n", d.Name, strings.Join(ch, " "), d.Pairs, d.InForce, sug)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(entries) > 0 {
			fmt.Fprintf(stdout, "\nregression.noise entries for %s:\n%s\n", *file, strings.Join(entries, "\n"))
		}
		return nil
	}
	return c
}
