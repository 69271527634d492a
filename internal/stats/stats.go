// Package stats compares two samples of a measurement the way benchstat
// does: the Mann-Whitney U test (exact for small samples, normal
// approximation with tie correction for large ones) and the change of the
// median.
package stats

import (
	"math"
	"slices"
)

// Median of xs (which it does not modify).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Quantile is the q-quantile (0 < q <= 1) of xs by the nearest-rank
// method: the smallest value with at least q of the sample at or below it.
// It does not interpolate, so a 99th percentile of fewer than 100 values
// is their maximum. xs is not modified.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 || q <= 0 || q > 1 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// MannWhitney returns the two-sided p-value of the Mann-Whitney U test of
// samples a and b (the chance of seeing U this far from its mean if both
// come from one distribution).
func MannWhitney(a, b []float64) float64 {
	n1, n2 := len(a), len(b)
	if n1 == 0 || n2 == 0 {
		return 1
	}
	// U of a: pairs where a wins, ties counting a half.
	u := 0.0
	for _, x := range a {
		for _, y := range b {
			switch {
			case x > y:
				u++
			case x == y:
				u += 0.5
			}
		}
	}
	if n1+n2 <= 20 && !hasTies(a, b) {
		return exactP(u, n1, n2)
	}
	// Normal approximation with tie correction.
	all := append(slices.Clone(a), b...)
	slices.Sort(all)
	n := float64(n1 + n2)
	tie := 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j] == all[i] {
			j++
		}
		t := float64(j - i)
		tie += t*t*t - t
		i = j
	}
	mean := float64(n1*n2) / 2
	sd := math.Sqrt(float64(n1*n2) / 12 * ((n + 1) - tie/(n*(n-1))))
	if sd == 0 {
		return 1
	}
	z := (math.Abs(u-mean) - 0.5) / sd
	return math.Min(1, math.Erfc(math.Max(z, 0)/math.Sqrt2))
}

// MinP is the smallest two-sided p-value the Mann-Whitney test can give
// samples of n1 and n2 values without ties (two completely separated
// samples): 2 / C(n1+n2, n1). When it is not below alpha, no difference
// between such samples can be called significant, whatever its size
// (benchstat reports "~" and asks for more runs).
func MinP(n1, n2 int) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	// C(n1+n2, n1) as a float: exact for the sizes that matter here.
	c := 1.0
	for i := 1; i <= n1; i++ {
		c = c * float64(n2+i) / float64(i)
	}
	return math.Min(1, 2/c)
}

func hasTies(a, b []float64) bool {
	seen := map[float64]bool{}
	for _, x := range append(slices.Clone(a), b...) {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}

// exactP counts, over every way to split n1+n2 ranks into the groups, how
// many give a U at least as far from the mean as u.
func exactP(u float64, n1, n2 int) float64 {
	// counts[k][s] = number of k-subsets of ranks 1..m with U statistic s,
	// built up over m (the classic recurrence on the largest rank).
	maxU := n1 * n2
	// f(i, j, s): ways to arrange i from a and j from b with U = s.
	f := make([][][]float64, n1+1)
	for i := range f {
		f[i] = make([][]float64, n2+1)
		for j := range f[i] {
			f[i][j] = make([]float64, maxU+1)
		}
	}
	for j := 0; j <= n2; j++ {
		f[0][j][0] = 1
	}
	for i := 1; i <= n1; i++ {
		f[i][0][0] = 1
		for j := 1; j <= n2; j++ {
			for s := 0; s <= i*j; s++ {
				// The largest value is from a (it beats all j of b) or from b.
				v := f[i][j-1][s]
				if s-j >= 0 {
					v += f[i-1][j][s-j]
				}
				f[i][j][s] = v
			}
		}
	}
	total := 0.0
	for _, c := range f[n1][n2] {
		total += c
	}
	mean := float64(maxU) / 2
	dist := math.Abs(u - mean)
	tail := 0.0
	for s, c := range f[n1][n2] {
		if math.Abs(float64(s)-mean) >= dist-1e-9 {
			tail += c
		}
	}
	return tail / total
}
