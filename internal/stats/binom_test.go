package stats

import (
	"math"
	"testing"
)

// The reference intervals are R's binom.test(k, n)$conf.int.
func TestClopperPearson(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{20, 20, 0.8315665, 1},
		{0, 20, 0, 0.1684335},
		{10, 20, 0.2719578, 0.7280422},
		{19, 20, 0.7512672, 0.9987349},
		{1, 1, 0.025, 1},
	} {
		lo, hi := ClopperPearson(c.k, c.n, 0.95)
		if math.Abs(lo-c.lo) > 1e-6 || math.Abs(hi-c.hi) > 1e-6 {
			t.Errorf("ClopperPearson(%d, %d) = [%.7f, %.7f], want [%.7f, %.7f]", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
	for _, bad := range [][2]int{{0, 0}, {-1, 5}, {6, 5}} {
		if lo, hi := ClopperPearson(bad[0], bad[1], 0.95); !math.IsNaN(lo) || !math.IsNaN(hi) {
			t.Errorf("ClopperPearson(%d, %d) = [%v, %v], want NaN: no interval", bad[0], bad[1], lo, hi)
		}
	}
}
