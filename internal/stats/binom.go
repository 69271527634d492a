package stats

import "math"

// ClopperPearson returns the exact two-sided interval, at confidence conf
// (0.95 for 95%), of a success rate of which n trials showed k successes:
// the rates p for which seeing k or more (for the lower end), or k or
// fewer (for the upper end), is at least (1-conf)/2 likely. It is found by
// bisection on the binomial distribution's tails, which are summed
// exactly; n is a few hundred at most here.
func ClopperPearson(k, n int, conf float64) (lo, hi float64) {
	if n <= 0 || k < 0 || k > n || !(conf > 0 && conf < 1) {
		return math.NaN(), math.NaN()
	}
	a := (1 - conf) / 2
	lo, hi = 0, 1
	if k > 0 {
		// P(X >= k | p) grows with p: the p where it reaches a.
		lo = bisect(func(p float64) bool { return 1-binomCDF(k-1, n, p) < a })
	}
	if k < n {
		// P(X <= k | p) falls with p: the p where it falls to a.
		hi = bisect(func(p float64) bool { return binomCDF(k, n, p) > a })
	}
	return lo, hi
}

// bisect returns the p in [0, 1] where below(p) turns from true to false.
func bisect(below func(p float64) bool) float64 {
	l, h := 0.0, 1.0
	for range 100 {
		m := (l + h) / 2
		if below(m) {
			l = m
		} else {
			h = m
		}
	}
	return (l + h) / 2
}

// binomCDF is P(X <= k) for X binomial with n trials of success rate p.
func binomCDF(k, n int, p float64) float64 {
	switch {
	case k < 0:
		return 0
	case k >= n:
		return 1
	case p <= 0:
		return 1
	case p >= 1:
		return 0
	}
	var sum float64
	for i := 0; i <= k; i++ {
		sum += math.Exp(lchoose(n, i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return math.Min(sum, 1)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
