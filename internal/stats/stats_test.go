package stats

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("Median = %v, want 2", m)
	}
	if m := Median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("Median = %v, want 2.5", m)
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]float64, 20)
	for i := range xs {
		xs[i] = float64(20 - i) // 20..1, unsorted on purpose
	}
	for _, c := range []struct{ q, want float64 }{
		{0.50, 10}, // nearest rank: ceil(0.5*20) = 10th value
		{0.95, 19},
		{0.99, 20}, // fewer than 100 values: the 99th percentile is the maximum
		{1, 20},
		{0.01, 1},
	} {
		if got := Quantile(xs, c.q); got != c.want {
			t.Errorf("Quantile(1..20, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if xs[0] != 20 {
		t.Error("Quantile modified its input")
	}
	for _, q := range []float64{0, -1, 1.5} {
		if !math.IsNaN(Quantile(xs, q)) {
			t.Errorf("Quantile(q=%v) should be NaN", q)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of no values should be NaN")
	}
}

func TestMinPMatchesMannWhitney(t *testing.T) {
	for _, n := range [][2]int{{3, 3}, {4, 4}, {5, 5}, {3, 7}, {1, 2}} {
		a, b := make([]float64, n[0]), make([]float64, n[1])
		for i := range a {
			a[i] = float64(i)
		}
		for i := range b {
			b[i] = float64(100 + i)
		}
		if got, want := MinP(n[0], n[1]), MannWhitney(a, b); math.Abs(got-want) > 1e-12 {
			t.Errorf("MinP(%d, %d) = %v, the test of separated samples gives %v", n[0], n[1], got, want)
		}
	}
	if MinP(3, 3) < 0.05 || MinP(4, 4) >= 0.05 {
		t.Errorf("3 vs 3 must never reach 0.05 and 4 vs 4 must: MinP = %v, %v", MinP(3, 3), MinP(4, 4))
	}
}

func TestMannWhitney(t *testing.T) {
	// Completely separated samples of 5 and 5: the exact two-sided p is
	// 2/252.
	if p := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10}); math.Abs(p-2.0/252) > 1e-12 {
		t.Errorf("separated 5 vs 5: p = %v, want %v", p, 2.0/252)
	}
	// Three against three can never reach 0.05 (benchstat's "~").
	if p := MannWhitney([]float64{1, 2, 3}, []float64{4, 5, 6}); math.Abs(p-0.1) > 1e-12 {
		t.Errorf("separated 3 vs 3: p = %v, want 0.1", p)
	}
	// Interleaved samples: no evidence of a difference.
	if p := MannWhitney([]float64{1, 3, 5, 7, 9}, []float64{2, 4, 6, 8, 10}); p < 0.5 {
		t.Errorf("interleaved: p = %v, want large", p)
	}
	// Large samples with ties use the normal approximation.
	a, b := make([]float64, 30), make([]float64, 30)
	for i := range a {
		a[i], b[i] = float64(i%5), float64(i%5)+3
	}
	if p := MannWhitney(a, b); p > 1e-6 {
		t.Errorf("shifted 30 vs 30 with ties: p = %v, want tiny", p)
	}
	if p := MannWhitney(nil, b); p != 1 {
		t.Errorf("empty sample: p = %v, want 1", p)
	}
}
