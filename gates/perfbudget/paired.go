package perfbudget

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/matrix"
	"github.com/rustynet/rustynet/policies"
)

// A paired run measures the baseline commit's binaries beside the
// candidate's, cell by cell, in alternating rounds (matrix.RunPaired):
// the drift of a shared machine over the run falls on both alike, and the
// judgement is on the ratio of candidate to baseline within each round.

// baselineRef is the revision a paired run measures against: the one the
// run was given, else the commit under test when the tree has changes on
// top of it (what the changes do), else its parent (what the commit did).
func baselineRef(r *gates.Run) string {
	switch {
	case r.BaselineRef != "":
		return r.BaselineRef
	case r.Dirty:
		return "HEAD"
	}
	return "HEAD~1"
}

// buildBaseline checks out and builds the baseline's daemons.
func buildBaseline(ctx context.Context, r *gates.Run) (matrix.Env, string, func(), error) {
	ref := baselineRef(r)
	co, err := gates.Checkout(ctx, r.Root, ref)
	if err != nil {
		return matrix.Env{}, "", nil, fmt.Errorf("baseline: %w", err)
	}
	bins, _, err := r.GoBuild(ctx, co.Dir, filepath.Join(r.Work, "baseline-bin"), co.Commit, "rustynet-controller", "rustynetd")
	if err != nil {
		co.Close()
		return matrix.Env{}, "", nil, fmt.Errorf("baseline %s (%s): %w", ref, co.Commit, err)
	}
	fmt.Fprintf(r.Log, "baseline %s is commit %s\n", ref, co.Commit)
	env := matrix.Env{ControllerBin: bins["rustynet-controller"], DaemonBin: bins["rustynetd"], Work: r.Work, Log: r.Log}
	return env, co.Commit, func() { co.Close() }, nil
}

// pairedVerdict is the paired comparison of one run.
type pairedVerdict struct {
	measurements []evidence.Measurement // CELL:METRIC:vs_baseline, the per-round ratios
	problems     []string               // regressions
	judged       int
}

// judgePaired holds each judged metric's per-round ratios of candidate to
// baseline to the paired rule: a regression blocks when the geometric
// mean of the ratios is worse by at least the metric's min_change and the
// one-sided Wilcoxon signed-rank test of their logarithms gives p < alpha.
func judgePaired(results []matrix.Result, cfg policies.Paired) pairedVerdict {
	var v pairedVerdict
	for _, res := range results {
		for _, p := range res.Paired {
			if !slices.Contains(cfg.Metrics, p.Name) {
				continue
			}
			var ratios, worse []float64
			ok := true
			for i := range p.Baseline {
				if !(p.Baseline[i] > 0) || !(p.Candidate[i] > 0) {
					ok = false
					break
				}
				q := p.Candidate[i] / p.Baseline[i]
				ratios = append(ratios, q)
				// worse: negative when the candidate is worse.
				l := math.Log(q)
				if !higherIsBetter(p.Unit) {
					l = -l
				}
				worse = append(worse, l)
			}
			name := res.Cell + ":" + p.Name
			if !ok || len(ratios) == 0 {
				v.problems = append(v.problems, fmt.Sprintf("%s: no paired rounds to compare (a side measured nothing)", name))
				continue
			}
			v.judged++
			g := stats.GeoMean(ratios)
			change := g - 1 // + means the candidate is higher
			pv := stats.SignedRankLess(worse)
			minChange := cfg.MinChangeFor(res.Cell, p.Name)
			method := fmt.Sprintf("candidate / baseline per round, %d rounds alternating the two builds in one run; geometric mean %.3f, one-sided Wilcoxon signed-rank p=%.3f; blocks from %.0f%% worse at p < %g",
				len(ratios), g, pv, 100*minChange, cfg.Alpha)
			v.measurements = append(v.measurements, gates.Summarize(evidence.Measurement{Name: name + ":vs_baseline", Unit: "ratio", Method: method, Values: ratios}))
			worseBy := -change
			if !higherIsBetter(p.Unit) {
				worseBy = change
			}
			if worseBy >= minChange && pv < cfg.Alpha {
				v.problems = append(v.problems, fmt.Sprintf("%s regressed against the baseline: %+.1f%% (geometric mean of %d paired rounds, %.3g -> %.3g %s; p=%.3f; blocks from %.0f%%)",
					name, 100*change, len(ratios), stats.Median(p.Baseline), stats.Median(p.Candidate), p.Unit, pv, 100*minChange))
			}
		}
	}
	return v
}
