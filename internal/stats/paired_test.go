package stats

import (
	"math"
	"testing"
)

func TestSignedRankLess(t *testing.T) {
	for _, c := range []struct {
		d    []float64
		want float64
	}{
		// Five pairs all worse: only 1 of 32 signings is as extreme.
		{[]float64{-1, -2, -3, -4, -5}, 1.0 / 32},
		{[]float64{1, 2, 3, 4, 5}, 1},
		// Ranks 1..5; positive ranks sum to 1: signings with a sum of at
		// most 1 are {} and {1}.
		{[]float64{0.1, -2, -3, -4, -5}, 2.0 / 32},
		// Zeros dropped: as four pairs all worse.
		{[]float64{0, -1, -2, -3, -4}, 1.0 / 16},
		{nil, 1},
	} {
		if got := SignedRankLess(c.d); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("SignedRankLess(%v) = %v, want %v", c.d, got, c.want)
		}
	}
	// Tied magnitudes share a rank: {-1, 1} gives ranks 1.5, 1.5; the
	// positive sum 1.5 is reached or beaten by 3 of 4 signings.
	if got := SignedRankLess([]float64{-1, 1}); math.Abs(got-0.75) > 1e-12 {
		t.Errorf("SignedRankLess(-1, 1) = %v, want 0.75", got)
	}
	if got := GeoMean([]float64{0.5, 2}); math.Abs(got-1) > 1e-12 {
		t.Errorf("GeoMean(0.5, 2) = %v, want 1", got)
	}
}
