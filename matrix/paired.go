package matrix

import (
	"context"
	"fmt"
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
// comparison within one run can see a regression.
var PairedKinds = []string{"throughput"}

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
	fmt.Fprintf(cand.Log, "== %s (%d rounds of %d repetitions a side, baseline and candidate meshes alternating, after a warm-up repetition each)\n", c.Name(), rounds, keep)
	start := time.Now()
	res := Result{Cell: c.Name()}
	candVals := map[string]*evidence.Measurement{}
	baseVals := map[string]*evidence.Measurement{}
	var order []string
	pairs := map[string]*Paired{}
	type side struct {
		name string
		rig  *rig
		into map[string]*evidence.Measurement
	}
	// Both meshes live side by side for the whole cell (each testbed
	// network is namespaces of its own); the idle one carries nothing.
	var sides []*side
	for _, s := range []struct {
		name string
		env  Env
		into map[string]*evidence.Measurement
	}{{"baseline", base, baseVals}, {"candidate", cand, candVals}} {
		r, err := newRig(ctx, s.env, c)
		if err != nil {
			res.Error = fmt.Sprintf("%s mesh: %v", s.name, err)
			return finish(res, order, candVals, baseVals, pairs, cand, start)
		}
		defer r.close()
		sides = append(sides, &side{s.name, r, s.into})
	}
	// The first repetition after a mesh starts is a warm-up (the TCP
	// windows opening, the heaps growing): run, not recorded.
	for _, sd := range sides {
		if _, err := sd.rig.measure(ctx, 1); err != nil {
			res.Error = fmt.Sprintf("warm-up, %s: %v", sd.name, err)
			return finish(res, order, candVals, baseVals, pairs, cand, start)
		}
	}
	for round := range rounds {
		ordered := []*side{sides[0], sides[1]}
		if round%2 == 1 {
			ordered[0], ordered[1] = sides[1], sides[0]
		}
		means := map[string][2]float64{} // metric -> baseline, candidate
		for _, sd := range ordered {
			if err := sd.rig.resetPeaks(); err != nil {
				res.Error = fmt.Sprintf("round %d, %s: %v", round+1, sd.name, err)
				return finish(res, order, candVals, baseVals, pairs, cand, start)
			}
			ms, err := sd.rig.measure(ctx, keep)
			if err != nil {
				res.Error = fmt.Sprintf("round %d, %s: %v", round+1, sd.name, err)
				return finish(res, order, candVals, baseVals, pairs, cand, start)
			}
			ms = append(ms, sd.rig.peaks("over the round (the peak reset before it)")...)
			for _, m := range ms {
				fmt.Fprintf(cand.Log, "   round %d %-9s %s: %v %s\n", round+1, sd.name, m.Name, roundAll(m.Values), m.Unit)
				acc := sd.into[m.Name]
				if acc == nil {
					cp := m
					cp.Values = nil
					cp.Method += "; paired rounds, one mesh a side, after a warm-up repetition"
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

func finish(res Result, order []string, candVals, baseVals map[string]*evidence.Measurement, pairs map[string]*Paired, env Env, start time.Time) Result {
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
