package report

import (
	"math"
	"strconv"
	"strings"

	"github.com/rustynet/rustynet/evidence"
)

// Charts are pure geometry: barChart and lineChart turn measurements into
// coordinates (in SVG user units, y growing downwards), what each line or
// bar stands for, and the labels to write; no markup. The HTML template
// draws them as SVG, escaping every label; the Markdown report draws its
// own text bars and sparklines (markdown.go).

// barChart is the geometry of one chart of the means of measurements of
// one unit, a bar a measurement, with their spread (±stddev) and budgets.
type barChart struct {
	Title string
	// Common is what every bar's name shares, left out of the labels.
	Common string
	// W and H are the size of the whole chart.
	W, H int
	// The value axis runs from X0 to X1 at AxisY; ZeroX is where the value
	// 0 is, and the plot starts at Top.
	AxisY  float64
	X0, X1 float64
	ZeroX  float64
	Top    float64
	// Ticks are the value axis's ticks, each with a grid line at its X.
	Ticks []tick
	Rows  []barRow
}

// tick is an axis label at X, Y; G is where a horizontal grid line goes
// (on the y axis of a line chart).
type tick struct {
	X, Y, G float64
	Label   string
}

// barRow is one measurement's bar.
type barRow struct {
	// Name is the measurement's name, Label what the chart writes for it
	// (see barLabels), Value the mean (± stddev) as written.
	Name, Label, Value string
	// TextY is the baseline of the row's label and value.
	TextY float64
	// The bar runs from the value 0 to the mean.
	BarX, BarY, BarW float64
	// HasBudget is set when the measurement has a budget; Within when its
	// mean is within it.
	HasBudget, Within bool
	// Err is set when there is a spread: an error bar from ErrX1 to ErrX2
	// at ErrY, with caps from CapY1 to CapY2.
	Err                bool
	ErrX1, ErrX2, ErrY float64
	CapY1, CapY2       float64
	// Marks are the budget's bounds.
	Marks []mark
}

// markKind says what a mark stands for.
type markKind string

const (
	markBudgetMax markKind = "max"  // a budget's upper bound
	markBudgetMin markKind = "min"  // a budget's lower bound
	markMean      markKind = "mean" // the mean of a series
)

// mark is a line from (X1, Y1) to (X2, Y2) that marks a value of Kind;
// Title says which.
type mark struct {
	X1, Y1, X2, Y2 float64
	Kind           markKind
	Title          string
}

// point is a point of a line chart's line.
type point struct{ X, Y float64 }

// lineChart is the geometry of the chart of one measurement's values in
// the order they were taken, with its mean and budget.
type lineChart struct {
	// The plot spans X0 to X1 and Y0 (top) to Y1 (bottom, the x axis).
	X0, X1, Y0, Y1 float64
	// YTicks label the value axis; XLabels the first and last value and
	// the axis itself.
	YTicks, XLabels []tick
	// Points are the values drawn (see sampleIndexes).
	Points []point
	// Lines are the mean and the budget's bounds, across the plot.
	Lines []mark
}

// Limits that keep charts readable and a report's size reasonable for
// thousands of measurements.
const (
	barsPerChart    = 40  // a unit with more measurements gets several charts
	seriesMinValues = 10  // a measurement with this many values gets a line chart
	seriesBuckets   = 240 // a line chart has at most twice this many points
	maxSeriesCharts = 100 // line charts per report
)

// Geometry of the charts, in SVG user units.
const (
	chartW     = 760
	barX0      = 220.0
	barX1      = 600.0
	barRowH    = 22.0
	barTop     = 8.0
	linePlotX0 = 70.0
	linePlotX1 = 740.0
	linePlotY0 = 12.0
	linePlotY1 = 184.0
)

// niceStep rounds a tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// axis widens [lo, hi] to whole ticks and returns the ticks.
func axis(lo, hi float64, n int) (float64, float64, []float64, bool) {
	if hi == lo {
		pad := math.Abs(lo) * 0.05
		if pad == 0 {
			pad = 1
		}
		lo, hi = lo-pad, hi+pad
	}
	step := niceStep((hi - lo) / float64(n))
	lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	if !finite(lo) || !finite(hi) || !finite(hi-lo) || hi <= lo {
		return 0, 0, nil, false
	}
	var ticks []float64
	for i := 0; i <= 2*n+2; i++ {
		t := lo + float64(i)*step
		if t > hi+step/2 {
			break
		}
		if math.Abs(t) < step*1e-9 {
			t = 0
		}
		ticks = append(ticks, t)
	}
	return lo, hi, ticks, true
}

// barLabels gives the bars of one chart labels of at most max runes that
// tell them apart. Names are CELL:METRIC with CELL a path of kind and
// key=value parts; the parts every name shares are dropped from the labels
// (and returned, for the caption), then, if any label is still too long,
// the keys of every label's key=value parts, and last the middle of a label
// that is still too long, so that the metric at its end survives.
func barLabels(names []string, max int) (labels []string, common string) {
	split := func(n string) []string { return strings.Split(strings.Replace(n, ":", "/:", 1), "/") }
	join := func(parts []string) string {
		return strings.TrimPrefix(strings.ReplaceAll(strings.Join(parts, "/"), "/:", ":"), ":")
	}
	count := map[string]int{}
	for _, n := range names {
		seen := map[string]bool{}
		for _, p := range split(n) {
			if !seen[p] {
				seen[p] = true
				count[p]++
			}
		}
	}
	var shared []string
	for _, p := range split(names[0]) {
		if len(names) > 1 && count[p] == len(names) {
			shared = append(shared, strings.TrimPrefix(p, ":"))
		}
	}
	kept := make([][]string, len(names))
	long := false
	for i, n := range names {
		for _, p := range split(n) {
			if len(names) < 2 || count[p] < len(names) {
				kept[i] = append(kept[i], p)
			}
		}
		if len(kept[i]) == 0 {
			kept[i] = split(n)
		}
		long = long || len([]rune(join(kept[i]))) > max
	}
	labels = make([]string, len(names))
	for i := range names {
		if long {
			// One label too long: every label drops its keys, so that
			// the bars read alike.
			for j, p := range kept[i] {
				if _, v, ok := strings.Cut(p, "="); ok && !strings.HasPrefix(p, ":") {
					kept[i][j] = v
				}
			}
		}
		l := join(kept[i])
		if r := []rune(l); len(r) > max {
			head := (max - 1) / 2
			l = string(r[:head]) + "…" + string(r[len(r)-(max-1-head):])
		}
		labels[i] = l
	}
	return labels, strings.Join(shared, ", ")
}

// newBarChart charts the means of measurements of one unit with their
// spread (±stddev) and budgets. It reports false when the figures span no
// axis that can be drawn (infinities, NaN).
func newBarChart(title string, ms []evidence.Measurement) (barChart, bool) {
	lo, hi := 0.0, 0.0
	for _, m := range ms {
		sd := math.Abs(m.Stddev)
		lo, hi = math.Min(lo, math.Min(m.Mean, m.Mean-sd)), math.Max(hi, math.Max(m.Mean, m.Mean+sd))
		if b := m.Budget; b != nil {
			for _, x := range []*float64{b.Max, b.Min} {
				if x != nil {
					lo, hi = math.Min(lo, *x), math.Max(hi, *x)
				}
			}
		}
	}
	lo, hi, ticks, ok := axis(lo, hi, 5)
	if !ok {
		return barChart{}, false
	}
	sx := func(x float64) float64 { return barX0 + (x-lo)/(hi-lo)*(barX1-barX0) }
	axisY := barTop + float64(len(ms))*barRowH + 2
	c := barChart{Title: title, W: chartW, H: int(axisY) + 22, AxisY: axisY, X0: barX0, X1: barX1, ZeroX: sx(0), Top: barTop}
	for _, t := range ticks {
		c.Ticks = append(c.Ticks, tick{X: sx(t), Y: axisY + 14, Label: fmtTick(t)})
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	labels, common := barLabels(names, 34)
	c.Common = common
	for i, m := range ms {
		y := barTop + float64(i)*barRowH
		x0, x1 := sx(math.Min(0, m.Mean)), sx(math.Max(0, m.Mean))
		r := barRow{Name: m.Name, Label: labels[i], TextY: y + 15, BarX: x0, BarY: y + 4, BarW: math.Max(x1-x0, 0.5), Value: fmtNum(m.Mean)}
		if sd := math.Abs(m.Stddev); sd > 0 {
			r.Value += " ± " + fmtNum(sd)
			r.Err, r.ErrX1, r.ErrX2, r.ErrY = true, sx(m.Mean-sd), sx(m.Mean+sd), y+11
			r.CapY1, r.CapY2 = y+6, y+16
		}
		if b := m.Budget; b != nil && (b.Max != nil || b.Min != nil) {
			r.HasBudget, r.Within = true, within(m)
			if b.Max != nil {
				r.Marks = append(r.Marks, mark{X1: sx(*b.Max), X2: sx(*b.Max), Y1: y + 1, Y2: y + barRowH - 1,
					Kind: markBudgetMax, Title: "budget: at most " + fmtExact(*b.Max) + " " + m.Unit})
			}
			if b.Min != nil {
				r.Marks = append(r.Marks, mark{X1: sx(*b.Min), X2: sx(*b.Min), Y1: y + 1, Y2: y + barRowH - 1,
					Kind: markBudgetMin, Title: "budget: at least " + fmtExact(*b.Min) + " " + m.Unit})
			}
		}
		c.Rows = append(c.Rows, r)
	}
	return c, true
}

// sampleIndexes picks the values a line chart draws: all of them, or the
// lowest and highest of each of seriesBuckets buckets.
func sampleIndexes(vals []float64) []int {
	n := len(vals)
	var out []int
	if n <= 2*seriesBuckets {
		for i := range n {
			out = append(out, i)
		}
		return out
	}
	for b := range seriesBuckets {
		i0, i1 := b*n/seriesBuckets, (b+1)*n/seriesBuckets
		lo, hi := i0, i0
		for i := i0; i < i1; i++ {
			if vals[i] < vals[lo] {
				lo = i
			}
			if vals[i] > vals[hi] {
				hi = i
			}
		}
		out = append(out, min(lo, hi))
		if hi != lo {
			out = append(out, max(lo, hi))
		}
	}
	return out
}

// newLineChart charts the values of a measurement (at least two) in the
// order they were taken, with its mean and budget. It reports false when
// the figures span no axis that can be drawn.
func newLineChart(m evidence.Measurement) (lineChart, bool) {
	vals := m.Values
	n := len(vals)
	if n < 2 {
		return lineChart{}, false
	}
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	var budgets []float64
	if b := m.Budget; b != nil {
		for _, x := range []*float64{b.Max, b.Min} {
			if x != nil {
				budgets = append(budgets, *x)
				lo, hi = math.Min(lo, *x), math.Max(hi, *x)
			}
		}
	}
	lo, hi, ticks, ok := axis(lo, hi, 4)
	if !ok {
		return lineChart{}, false
	}
	sx := func(i int) float64 { return linePlotX0 + float64(i)/float64(n-1)*(linePlotX1-linePlotX0) }
	sy := func(v float64) float64 { return linePlotY1 - (v-lo)/(hi-lo)*(linePlotY1-linePlotY0) }
	c := lineChart{X0: linePlotX0, X1: linePlotX1, Y0: linePlotY0, Y1: linePlotY1}
	for _, t := range ticks {
		c.YTicks = append(c.YTicks, tick{X: linePlotX0 - 6, Y: sy(t) + 4, G: sy(t), Label: fmtTick(t)})
	}
	c.XLabels = []tick{
		{X: linePlotX0, Y: linePlotY1 + 16, Label: "1"},
		{X: (linePlotX0 + linePlotX1) / 2, Y: linePlotY1 + 30, Label: "value, in the order taken"},
		{X: linePlotX1, Y: linePlotY1 + 16, Label: strconv.Itoa(n)},
	}
	for _, i := range sampleIndexes(vals) {
		c.Points = append(c.Points, point{sx(i), sy(vals[i])})
	}
	if mean := m.Mean; mean >= lo && mean <= hi {
		c.Lines = append(c.Lines, mark{X1: c.X0, X2: c.X1, Y1: sy(mean), Y2: sy(mean), Kind: markMean, Title: "mean " + fmtNum(mean)})
	}
	for i, b := range budgets {
		title, kind := "budget: at most ", markBudgetMax
		if m.Budget.Max == nil || i == 1 {
			title, kind = "budget: at least ", markBudgetMin
		}
		c.Lines = append(c.Lines, mark{X1: c.X0, X2: c.X1, Y1: sy(b), Y2: sy(b), Kind: kind, Title: title + fmtExact(b) + " " + m.Unit})
	}
	return c, true
}

// f1 writes a coordinate, to a tenth of a unit.
func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
