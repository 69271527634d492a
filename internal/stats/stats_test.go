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
