package matrix

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/stats"
)

// Paired is one measurement of a cell run in rounds that alternate the
// baseline's binaries with the candidate's: the mean of each round on
// either side, round i of one side paired with round i of the other.
type Paired struct {
	Name      string    `json:"name"`
	Unit      string    `json:"unit"`
	Baseline  []float64 `json:"baseline"`
	Candidate []float64 `json:"candidate"`
}

// PairedKinds are the kinds of cell RunPaired runs in rounds: those whose
// figures drift most between runs on a shared machine, where only a
// comparison within one run can see a regression, and those whose absolute
// budget, set on the slowest machine, leaves a faster one room for a
// regression: a router three times slower passed route-apply's absolute
// p99 on an Intel Xeon guest where the unchanged router ran at a third of
// it (gates/perfbudget/mutants.yaml, router-looks-up-device-per-route).
var PairedKinds = []string{"throughput", "route-apply"}

// RunPaired measures the cells with the candidate's binaries (cand) and,
// for the kinds in PairedKinds, the baseline's (base) too, in rounds:
// round i runs the cell with a share of its repetitions on both sides,
// the baseline first in even rounds and the candidate first in odd ones,
// so that a drift of the machine over the run falls on both alike. A
// result's Measurements are the candidate's values of every round (what
// budgets judge), Baseline the baseline's, Paired the round means. Other
// cells run once, with the candidate, as Run does.
func RunPaired(ctx context.Context, cand, base Env, cells []Cell, rounds int) []Result {
	var out []Result
	for i, c := range cells {
		var r Result
		if isPaired(c.Kind) {
			r = runRounds(ctx, cand, base, c, rounds)
		} else {
			r = runOne(ctx, cand, c)
		}
		out = append(out, r)
		if cand.Progress != nil {
			cand.Progress(float64(i+1) / float64(len(cells)))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func isPaired(kind string) bool {
	for _, k := range PairedKinds {
		if k == kind {
			return true
		}
	}
	return false
}

func runRounds(ctx context.Context, cand, base Env, c Cell, rounds int) Result {
	keep := max(1, c.Repetitions/rounds)
	fmt.Fprintf(cand.Log, "== %s (%d rounds of %d repetitions a side, baseline and candidate alternating, a fresh mesh a side each round)\n", c.Name(), rounds, keep)
	start := time.Now()
	res := Result{Cell: c.Name()}
	candVals := map[string]*evidence.Measurement{}
	baseVals := map[string]*evidence.Measurement{}
	var order []string
	pairs := map[string]*Paired{}
	type side struct {
		name string
		env  Env
		into map[string]*evidence.Measurement
	}
	sides := []*side{{"baseline", base, baseVals}, {"candidate", cand, candVals}}
	// Every round starts a fresh mesh on each side and closes it after.
	// A mesh kept for the whole cell made its rounds depend on each other:
	// a node's peak RSS ratchets up with the Go heap's high-water mark, so
	// one side's mesh could sit above the other's in every round for no
	// reason in the code (the sending WireGuard node: 136 to 193 MiB over 7
	// rounds on one side, 171 to 200 on the other, on two builds that
	// differ in nothing it runs). Fresh processes make each round's figures
	// independent draws; the first repetition's slow start falls on both
	// sides alike.
	for round := range rounds {
		ordered := []*side{sides[0], sides[1]}
		if round%2 == 1 {
			ordered[0], ordered[1] = sides[1], sides[0]
		}
		means := map[string][2]float64{} // metric -> baseline, candidate
		for _, sd := range ordered {
			ms, err := sideRound(ctx, sd.env, c, keep, cand.Log, fmt.Sprintf("round %d %-9s", round+1, sd.name))
			if err != nil {
				res.Error = fmt.Sprintf("round %d, %s: %v", round+1, sd.name, err)
				return finish(res, order, candVals, baseVals, pairs, cand, start)
			}
			for _, m := range ms {
				logRound(cand.Log, fmt.Sprintf("round %d %-9s", round+1, sd.name), m)
				acc := sd.into[m.Name]
				if acc == nil {
					cp := m
					cp.Values = nil
					cp.Method += "; paired rounds, a fresh mesh a side each round"
					acc = &cp
					sd.into[m.Name] = acc
					if sd.name == "candidate" {
						order = append(order, m.Name)
					}
				}
				acc.Values = append(acc.Values, m.Values...)
				mv := means[m.Name]
				if sd.name == "baseline" {
					mv[0] = stats.Mean(m.Values)
				} else {
					mv[1] = stats.Mean(m.Values)
				}
				means[m.Name] = mv
			}
		}
		for name, mv := range means {
			p := pairs[name]
			if p == nil {
				p = &Paired{Name: name, Unit: candVals[name].Unit}
				pairs[name] = p
			}
			p.Baseline = append(p.Baseline, mv[0])
			p.Candidate = append(p.Candidate, mv[1])
		}
		if ctx.Err() != nil {
			res.Error = ctx.Err().Error()
			break
		}
	}
	return finish(res, order, candVals, baseVals, pairs, cand, start)
}

// logRound logs a round's figures: every value, or for a long series (a
// route-apply round's applies) its count, median and largest.
func logRound(w io.Writer, label string, m evidence.Measurement) {
	if len(m.Values) <= 10 {
		fmt.Fprintf(w, "   %s %s: %v %s\n", label, m.Name, roundAll(m.Values), m.Unit)
		return
	}
	fmt.Fprintf(w, "   %s %s: %d values, median %.3f, max %.3f %s\n", label, m.Name, len(m.Values), stats.Median(m.Values), slices.Max(m.Values), m.Unit)
}

// sideRound runs one side's share of a paired round: reps repetitions of
// c with env's binaries.
func sideRound(ctx context.Context, env Env, c Cell, reps int, log io.Writer, label string) ([]evidence.Measurement, error) {
	if c.Kind == "route-apply" {
		c.Repetitions = reps
		return routeApply(ctx, env, c)
	}
	return freshRound(ctx, env, c, reps, log, label)
}

// freshRound starts a mesh for c with env's binaries, runs reps
// repetitions of its traffic, reads every node's peak RSS, and closes it.
// It logs, under label, how long the mesh took to come up.
func freshRound(ctx context.Context, env Env, c Cell, reps int, log io.Writer, label string) ([]evidence.Measurement, error) {
	t0 := time.Now()
	r, err := newRig(ctx, env, c)
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	defer r.close()
	fmt.Fprintf(log, "   %s mesh up in %v\n", label, time.Since(t0).Round(time.Millisecond))
	ms, err := r.measure(ctx, reps)
	if err != nil {
		return nil, err
	}
	return append(ms, r.peaks("over the round, from the mesh's start")...), nil
}

func finish(res Result, order []string, candVals, baseVals map[string]*evidence.Measurement, pairs map[string]*Paired, env Env, start time.Time) Result {
	for _, vals := range []map[string]*evidence.Measurement{candVals, baseVals} {
		requantile(vals)
	}
	for _, name := range order {
		res.Measurements = append(res.Measurements, *candVals[name])
		if b := baseVals[name]; b != nil {
			res.Baseline = append(res.Baseline, *b)
		}
		if p := pairs[name]; p != nil && len(p.Baseline) == len(p.Candidate) {
			res.Paired = append(res.Paired, *p)
		}
	}
	fmt.Fprintf(env.Log, "   (%v)\n", time.Since(start).Round(time.Millisecond))
	return res
}

// requantile makes a side's route-apply quantiles those of all its rounds'
// applies together, as one unpaired run of the cell would report them
// (what the budgets bound), rather than every round's own: a round's share
// of the repetitions is too few for a p99. The per-round medians stay in
// the cell's Paired figures, where the rounds are compared.
func requantile(vals map[string]*evidence.Measurement) {
	all := vals["route_apply"]
	if all == nil || len(all.Values) == 0 {
		return
	}
	for name, q := range map[string]float64{"route_apply_p50": 0.50, "route_apply_p99": 0.99} {
		if m := vals[name]; m != nil {
			m.Values = []float64{stats.Quantile(all.Values, q)}
			m.Method += fmt.Sprintf("; of all %d applies of the rounds together", len(all.Values))
		}
	}
}
