package stats

import (
	"math"
	"slices"
)

// SignedRankLess returns the exact one-sided p-value of the Wilcoxon
// signed-rank test that the paired differences d are centred below zero:
// the share of the 2^n ways to sign their ranks that give a sum of
// positive ranks at most the observed one. Zero differences are dropped
// (Wilcoxon's convention) and tied magnitudes share their mean rank. It
// is exact by enumeration, for at most 20 non-zero differences; more is
// refused with NaN (use a normal approximation or fewer pairs).
func SignedRankLess(d []float64) float64 {
	var nz []float64
	for _, x := range d {
		if x != 0 && !math.IsNaN(x) {
			nz = append(nz, x)
		}
	}
	n := len(nz)
	if n == 0 {
		return 1
	}
	if n > 20 {
		return math.NaN()
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch x, y := math.Abs(nz[a]), math.Abs(nz[b]); {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	ranks := make([]float64, n)
	for i := 0; i < n; {
		j := i
		for j < n && math.Abs(nz[idx[j]]) == math.Abs(nz[idx[i]]) {
			j++
		}
		mean := float64(i+1+j) / 2 // ranks i+1 .. j
		for k := i; k < j; k++ {
			ranks[idx[k]] = mean
		}
		i = j
	}
	observed := 0.0
	for i, x := range nz {
		if x > 0 {
			observed += ranks[i]
		}
	}
	count := 0
	for mask := 0; mask < 1<<n; mask++ {
		s := 0.0
		for i := range n {
			if mask&(1<<i) != 0 {
				s += ranks[i]
			}
		}
		if s <= observed+1e-9 {
			count++
		}
	}
	return float64(count) / float64(int(1)<<n)
}

// Mean is the arithmetic mean of xs (NaN for none).
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Stddev is the sample standard deviation of xs (n-1 in the divisor; 0
// for fewer than two values).
func Stddev(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	m := Mean(xs)
	ss := 0.0
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(xs)-1))
}

// GeoMean is the geometric mean of positive ratios (NaN if any is not
// positive).
func GeoMean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range xs {
		if !(x > 0) {
			return math.NaN()
		}
		s += math.Log(x)
	}
	return math.Exp(s / float64(len(xs)))
}
