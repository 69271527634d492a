package report

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
)

// near reports whether a and b agree to well under the tenth of a unit
// the charts are drawn to.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestAxis(t *testing.T) {
	for _, c := range []struct {
		lo, hi         float64
		n              int
		wantLo, wantHi float64
		ticks          []float64
	}{
		{-10, 50, 5, -20, 60, []float64{-20, 0, 20, 40, 60}},
		{0, 20, 4, 0, 20, []float64{0, 5, 10, 15, 20}},
		{0.13, 0.87, 4, 0, 1, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{3, 3, 4, 2.8, 3.2, []float64{2.8000000000000003, 2.9000000000000004, 3, 3.1, 3.2}},
		{0, 0, 5, -1, 1, []float64{-1, -0.5, 0, 0.5, 1}},
	} {
		lo, hi, ticks, ok := axis(c.lo, c.hi, c.n)
		if !ok || !near(lo, c.wantLo) || !near(hi, c.wantHi) || len(ticks) != len(c.ticks) {
			t.Errorf("axis(%v, %v, %d) = %v, %v, %v, %v; want %v, %v, %v", c.lo, c.hi, c.n, lo, hi, ticks, ok, c.wantLo, c.wantHi, c.ticks)
			continue
		}
		for i := range ticks {
			if !near(ticks[i], c.ticks[i]) {
				t.Errorf("axis(%v, %v, %d) ticks = %v, want %v", c.lo, c.hi, c.n, ticks, c.ticks)
				break
			}
		}
	}
	for _, c := range [][2]float64{{0, math.Inf(1)}, {math.NaN(), 1}, {-math.MaxFloat64, math.MaxFloat64}} {
		if _, _, _, ok := axis(c[0], c[1], 5); ok {
			t.Errorf("axis(%v, %v, 5) = ok, want no axis", c[0], c[1])
		}
	}
}

// TestBarChart checks the geometry of a bar chart: where the axis, the
// bars, the error bars and the budget marks go.
func TestBarChart(t *testing.T) {
	ms := []evidence.Measurement{
		{Name: "cell/peers=2:rtt", Unit: "ms", Mean: 40, Stddev: 2, Budget: &evidence.Budget{Max: ptr(50)}},
		{Name: "cell/peers=4:rtt", Unit: "ms", Mean: -10},
	}
	c, ok := newBarChart("ms", ms)
	if !ok {
		t.Fatal("newBarChart: no chart")
	}
	// The axis spans -20..60 over x 220..600: 4.75 units a millisecond,
	// 0 at 315.
	sx := func(v float64) float64 { return 220 + (v+20)*4.75 }
	if c.Title != "ms" || c.Common != "cell, rtt" || c.W != 760 || c.H != 76 || !near(c.AxisY, 54) || !near(c.X0, 220) || !near(c.X1, 600) ||
		!near(c.ZeroX, 315) || !near(c.Top, 8) {
		t.Errorf("newBarChart = %+v; want a chart 760×76, its axis at y 54 from x 220 to 600, 0 at x 315", c)
	}
	var labels []string
	for i, tk := range c.Ticks {
		labels = append(labels, tk.Label)
		if !near(tk.X, sx(float64(-20+20*i))) || !near(tk.Y, 68) {
			t.Errorf("tick %d = %+v, want at x %v, y 68", i, tk, sx(float64(-20+20*i)))
		}
	}
	if !slices.Equal(labels, []string{"-20", "0", "20", "40", "60"}) {
		t.Errorf("tick labels = %q", labels)
	}
	if len(c.Rows) != 2 {
		t.Fatalf("newBarChart has %d rows, want 2", len(c.Rows))
	}
	a, b := c.Rows[0], c.Rows[1]
	// a: a bar from 0 to 40, the spread 38..42, the budget at 50.
	if a.Label != "peers=2" || a.Value != "40 ± 2" || !near(a.TextY, 23) || !near(a.BarX, 315) || !near(a.BarY, 12) || !near(a.BarW, 190) ||
		!a.HasBudget || !a.Within || !a.Err || !near(a.ErrX1, sx(38)) || !near(a.ErrX2, sx(42)) || !near(a.ErrY, 19) ||
		!near(a.CapY1, 14) || !near(a.CapY2, 24) {
		t.Errorf("row a = %+v", a)
	}
	if len(a.Marks) != 1 || a.Marks[0].Kind != markBudgetMax || !near(a.Marks[0].X1, sx(50)) || !near(a.Marks[0].X2, sx(50)) ||
		!near(a.Marks[0].Y1, 9) || !near(a.Marks[0].Y2, 29) || a.Marks[0].Title != "budget: at most 50 ms" {
		t.Errorf("row a's marks = %+v, want the budget's maximum at x %v", a.Marks, sx(50))
	}
	// b: a negative mean, a bar from -10 to 0, no spread, no budget.
	if b.Label != "peers=4" || b.Value != "-10" || !near(b.BarX, sx(-10)) || !near(b.BarY, 34) || !near(b.BarW, 47.5) || b.HasBudget || b.Err || len(b.Marks) != 0 {
		t.Errorf("row b = %+v", b)
	}

	// A mean over its minimum budget; a zero mean still gets a sliver.
	c, _ = newBarChart("MB", []evidence.Measurement{{Name: "x", Unit: "MB", Mean: 0, Budget: &evidence.Budget{Min: ptr(5), Max: ptr(8)}}})
	if r := c.Rows[0]; !r.HasBudget || r.Within || !near(r.BarW, 0.5) || len(r.Marks) != 2 || r.Marks[1].Kind != markBudgetMin {
		t.Errorf("a zero mean under its budget's minimum = %+v", r)
	}
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, ok := newBarChart("ms", []evidence.Measurement{{Name: "x", Mean: x}}); ok {
			t.Errorf("newBarChart of a mean of %v: a chart, want none", x)
		}
	}
}

// TestLineChart checks the geometry of a line chart: every value a point
// in order, across the plot, and the mean and budget lines.
func TestLineChart(t *testing.T) {
	m := gates.Summarize(evidence.Measurement{Name: "rtt", Unit: "ms", Values: []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Budget: &evidence.Budget{Max: ptr(20)}})
	c, ok := newLineChart(m)
	if !ok {
		t.Fatal("newLineChart: no chart")
	}
	// The axis spans 0..20 over y 184..12; values are 670/9 apart in x.
	sy := func(v float64) float64 { return 184 - v/20*172 }
	if !near(c.X0, 70) || !near(c.X1, 740) || !near(c.Y0, 12) || !near(c.Y1, 184) || len(c.Points) != 10 {
		t.Fatalf("newLineChart = %+v", c)
	}
	for i, p := range c.Points {
		if !near(p.X, 70+float64(i)*670/9) || !near(p.Y, sy(float64(i))) {
			t.Errorf("point %d = %+v, want (%v, %v)", i, p, 70+float64(i)*670/9, sy(float64(i)))
		}
	}
	var labels []string
	for i, tk := range c.YTicks {
		labels = append(labels, tk.Label)
		if v := float64(5 * i); !near(tk.G, sy(v)) || !near(tk.Y, sy(v)+4) || !near(tk.X, 64) {
			t.Errorf("y tick %d = %+v, want its grid line at y %v", i, tk, sy(v))
		}
	}
	if !slices.Equal(labels, []string{"0", "5", "10", "15", "20"}) {
		t.Errorf("y tick labels = %q", labels)
	}
	if len(c.XLabels) != 3 || c.XLabels[0].Label != "1" || c.XLabels[2].Label != "10" || !near(c.XLabels[2].X, 740) {
		t.Errorf("x labels = %+v, want 1 at the left, 10 at the right", c.XLabels)
	}
	want := []mark{
		{X1: 70, X2: 740, Y1: sy(4.5), Y2: sy(4.5), Kind: markMean, Title: "mean 4.5"},
		{X1: 70, X2: 740, Y1: sy(20), Y2: sy(20), Kind: markBudgetMax, Title: "budget: at most 20 ms"},
	}
	if len(c.Lines) != len(want) {
		t.Fatalf("lines = %+v, want %+v", c.Lines, want)
	}
	for i, l := range c.Lines {
		w := want[i]
		if l.Kind != w.Kind || l.Title != w.Title || !near(l.X1, w.X1) || !near(l.X2, w.X2) || !near(l.Y1, w.Y1) || !near(l.Y2, w.Y2) {
			t.Errorf("line %d = %+v, want %+v", i, l, w)
		}
	}

	for _, vals := range [][]float64{{1}, {1, math.NaN()}, {0, math.Inf(1)}} {
		if _, ok := newLineChart(evidence.Measurement{Values: vals}); ok {
			t.Errorf("newLineChart of %v: a chart, want none", vals)
		}
	}
}

// TestSampleIndexes checks that a long series is drawn with a bounded
// number of points, in order, that keep its extremes.
func TestSampleIndexes(t *testing.T) {
	short := make([]float64, 2*seriesBuckets)
	if got := sampleIndexes(short); len(got) != len(short) || got[len(got)-1] != len(short)-1 {
		t.Errorf("sampleIndexes of %d values drew %d, want every one", len(short), len(got))
	}
	long := make([]float64, 100000)
	for i := range long {
		long[i] = math.Sin(float64(i) / 300)
	}
	long[12345], long[67890] = 5, -5
	got := sampleIndexes(long)
	if len(got) > 2*seriesBuckets || !slices.IsSorted(got) || !slices.Contains(got, 12345) || !slices.Contains(got, 67890) {
		t.Errorf("sampleIndexes of %d values drew %d (sorted %v), want at most %d, in order, with the extremes",
			len(long), len(got), slices.IsSorted(got), 2*seriesBuckets)
	}
}

func TestBarLabels(t *testing.T) {
	wg, quic := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk", "throughput/backend=quic/mtu=1420/peers=2/traffic=tcp-bulk"
	got, common := barLabels([]string{wg + ":raw_throughput", wg + ":tunnel_throughput", quic + ":raw_throughput", quic + ":tunnel_throughput"}, 34)
	// "backend=wireguard:tunnel_throughput" is 35 runes: every label's
	// keys go.
	want := []string{"wireguard:raw_throughput", "wireguard:tunnel_throughput", "quic:raw_throughput", "quic:tunnel_throughput"}
	if !slices.Equal(got, want) || common != "throughput, mtu=1420, peers=2, traffic=tcp-bulk" {
		t.Errorf("barLabels = %q, common %q; want %q", got, common, want)
	}
	// Nothing shared, still too long: the middle goes, the metric stays.
	got, common = barLabels([]string{wg + ":tunnel_rtt_p50", "route-apply/routes=1000:route_apply_p99"}, 34)
	if common != "" || len([]rune(got[0])) != 34 || !strings.HasSuffix(got[0], ":tunnel_rtt_p50") || got[1] != "route-apply/1000:route_apply_p99" {
		t.Errorf("barLabels of unrelated names = %q, common %q", got, common)
	}
	// One bar: its whole name, nothing taken as common.
	if got, common := barLabels([]string{"build_time"}, 34); got[0] != "build_time" || common != "" {
		t.Errorf("barLabels of one name = %q, %q", got, common)
	}
}
