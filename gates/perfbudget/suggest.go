package perfbudget

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/policies"
)

// The rule a budget is set by, from several runs of the matrix on the
// reference machine: take the worst run mean, and widen it by the
// headroom: twice the spread of the run means (max minus min, over their
// mean), and never less than MinHeadroom. Bounds are rounded outwards to
// two significant digits.
const MinHeadroom = 0.25

// Run is one bundle's perf-budget figures: the values of each
// measurement (named CELL:METRIC), and where they came from.
type Run struct {
	Source string // the bundle, its commit and date
	Values map[string][]float64
	Units  map[string]string // each measurement's unit
}

// Suggestion is what the rule gives for one bound of a budget (or target)
// of the budgets file: an entry with both a min and a max has two.
type Suggestion struct {
	Entry    policies.Budget
	Target   bool      // a target, not a budget
	Max      bool      // the entry bounds from above
	Means    []float64 // each run's mean (the worst over the cells the pattern matches)
	Spread   float64   // (max - min) / mean of Means
	Headroom float64
	Bound    float64 // the suggested bound; NaN when no run measured the metric
	Basis    string  // a basis line for budgets.yaml
}

// Suggest applies the rule to every bound of every budget and target of b
// over runs, in file order, a min before a max.
func Suggest(b *policies.Budgets, runs []Run) []Suggestion {
	var out []Suggestion
	for i, bu := range append(slices.Clone(b.Budgets), b.Targets...) {
		if bu.Min != nil {
			out = append(out, suggest(bu, i >= len(b.Budgets), false, runs))
		}
		if bu.Max != nil {
			out = append(out, suggest(bu, i >= len(b.Budgets), true, runs))
		}
	}
	return out
}

// SuggestMissing applies the rule to the measurements of runs that no
// budget of b bounds and that b does not list as reported: the cells a
// channel's matrix runs without budgets, which block until they have
// them. A measurement whose unit is better higher gets a min, any other a
// max. They come sorted by name.
func SuggestMissing(b *policies.Budgets, runs []Run) []Suggestion {
	units := map[string]string{}
	for _, r := range runs {
		for name := range r.Values {
			if _, ok := units[name]; !ok {
				units[name] = r.Units[name]
			}
		}
	}
	names := slices.Sorted(maps.Keys(units))
	var out []Suggestion
	for _, name := range names {
		cell, metric, ok := strings.Cut(name, ":")
		if !ok || strings.Contains(metric, ":") || len(b.For(cell, metric)) > 0 || b.IsReported(cell, metric) {
			continue // a paired run's CELL:METRIC:vs_baseline is the paired rule's to judge
		}
		bound := 0.0
		entry := policies.Budget{Cell: policies.Str{Value: cell}, Metric: policies.Str{Value: metric}}
		isMax := !higherIsBetter(units[name])
		if isMax {
			entry.Max = &bound
		} else {
			entry.Min = &bound
		}
		out = append(out, suggest(entry, false, isMax, runs))
	}
	return out
}

// suggest applies the rule to one bound (the max, or the min) of bu.
func suggest(bu policies.Budget, target, isMax bool, runs []Run) Suggestion {
	s := Suggestion{Entry: bu, Target: target, Max: isMax, Bound: math.NaN()}
	for _, r := range runs {
		var worst float64
		found := false
		for name, vs := range r.Values {
			cell, metric, ok := strings.Cut(name, ":")
			if !ok || metric != bu.Metric.Value || len(vs) == 0 || !policies.MatchCell(bu.Cell.Value, cell) {
				continue
			}
			m := stats.Mean(vs)
			if !found || (s.Max && m > worst) || (!s.Max && m < worst) {
				worst = m
			}
			found = true
		}
		if found {
			s.Means = append(s.Means, worst)
		}
	}
	if len(s.Means) > 0 {
		lo, hi, avg := slices.Min(s.Means), slices.Max(s.Means), stats.Mean(s.Means)
		if avg != 0 {
			s.Spread = (hi - lo) / math.Abs(avg)
		}
		s.Headroom = math.Max(MinHeadroom, 2*s.Spread)
		if s.Max {
			s.Bound = roundOut(hi*(1+s.Headroom), true)
		} else {
			s.Bound = math.Max(0, roundOut(lo*(1-s.Headroom), false))
		}
		means := make([]string, len(s.Means))
		for i, m := range s.Means {
			means[i] = fmt.Sprintf("%.3g", m)
		}
		worst, sign := lo, "less"
		if s.Max {
			worst, sign = hi, "plus"
		}
		s.Basis = fmt.Sprintf("run means %s over %d runs (spread %.0f%%); the worst, %.3g, %s %.0f%% headroom",
			strings.Join(means, ", "), len(s.Means), 100*s.Spread, worst, sign, 100*s.Headroom)
	}
	return s
}

// roundOut rounds x to two significant digits, up or down.
func roundOut(x float64, up bool) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	p := math.Pow(10, math.Floor(math.Log10(math.Abs(x)))-1)
	r := math.Floor(x/p) * p
	if up {
		r = math.Ceil(x/p) * p
	}
	// Drop the binary noise of the multiplication (0.12000000000000001).
	v, _ := strconv.ParseFloat(strconv.FormatFloat(r, 'g', 2, 64), 64)
	return v
}

// NoiseFactor widens the largest drift seen between runs of one commit
// into the regression threshold of a metric.
const NoiseFactor = 1.5

// Drift is what comparing runs of one commit with each other, as the gate
// compares a run with a baseline, shows of one measurement.
type Drift struct {
	Name    string    // CELL:METRIC
	Pairs   int       // ordered pairs of runs compared
	Changes []float64 // relative changes of the median the test called significant
	// Threshold is the smallest change that would not have been flagged
	// by any pair, widened by NoiseFactor and rounded up; 0 when no pair
	// showed a significant change.
	Threshold float64
	// InForce is the threshold the budgets file gives the measurement now.
	InForce float64
}

// Drifts compares every ordered pair of runs (each of one commit, on one
// machine) measurement by measurement with the Mann-Whitney test at
// reg.Alpha, and returns the measurements where some pair differs
// significantly: the drift a baseline comparison must not call a
// regression. The raw path, which measures the machine, is left out, as
// the gate leaves it out.
func Drifts(runs []Run, reg policies.Regression) []Drift {
	var names []string
	for _, r := range runs {
		for n := range r.Values {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	var out []Drift
	for _, name := range names {
		cell, metric, _ := strings.Cut(name, ":")
		if strings.HasPrefix(metric, "raw_") {
			continue
		}
		d := Drift{Name: name, InForce: reg.MinChangeFor(cell, metric)}
		for i, a := range runs {
			for j, b := range runs {
				old, now := a.Values[name], b.Values[name]
				if i == j || len(old) == 0 || len(now) == 0 || stats.MinP(len(old), len(now)) >= reg.Alpha {
					continue
				}
				d.Pairs++
				if _, _, change, p := shift(old, now); p < reg.Alpha && !math.IsInf(change, 0) {
					d.Changes = append(d.Changes, change)
				}
			}
		}
		if len(d.Changes) == 0 {
			continue
		}
		worst := 0.0
		for _, c := range d.Changes {
			worst = math.Max(worst, math.Abs(c))
		}
		d.Threshold = roundOut(worst*NoiseFactor, true)
		out = append(out, d)
	}
	return out
}
