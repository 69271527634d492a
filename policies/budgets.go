package policies

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// Budgets is budgets.yaml: the bounds the perf-budget gate holds the
// benchmark matrix to, how it judges a regression against a baseline, and
// the soak gate's settings.
type Budgets struct {
	Version int `yaml:"version"`
	// Matrix names the matrix file each channel runs.
	Matrix  map[string]string `yaml:"matrix"`
	Budgets []Budget          `yaml:"budgets"`
	// Targets are goals, in the same form as budgets: a figure that
	// misses one is reported, with the gap, but does not block. A target
	// met with room to spare on every run becomes a budget.
	Targets []Budget `yaml:"targets"`
	// Reported lists the metrics a matrix measures that no budget bounds,
	// each with why (the raw path measures the machine; a p99 of a few
	// hundred samples follows the VM's stalls): every other metric a run
	// measures must have a budget, or the run blocks.
	Reported   []Reported `yaml:"reported"`
	Regression Regression `yaml:"regression"`
	Soak       Soak       `yaml:"soak"`
	// Paired is how a paired run (the baseline's binaries measured beside
	// the candidate's, round by round, in one run) is judged.
	Paired Paired `yaml:"paired"`

	File   string `yaml:"-"`
	Digest string `yaml:"-"`
}

// Reported is a metric measured and reported, never bounded.
type Reported struct {
	Cell   Str `yaml:"cell"`
	Metric Str `yaml:"metric"`
	Reason Str `yaml:"reason"`
}

// IsReported reports whether a cell's metric is reported only.
func (b *Budgets) IsReported(cell, metric string) bool {
	for _, r := range b.Reported {
		if MatchCell(r.Cell.Value, cell) && (r.Metric.Value == metric || r.Metric.Value == "*") {
			return true
		}
	}
	return false
}

// Budget bounds one metric of the cells a pattern matches.
type Budget struct {
	// Cell is a pattern over cell names (see MatchCell): path.Match
	// style, a * staying within one /-separated part, and a final /**
	// matching any further parts.
	Cell   Str      `yaml:"cell"`
	Metric Str      `yaml:"metric"`
	Max    *float64 `yaml:"max"`
	Min    *float64 `yaml:"min"`
	// Basis says which measurement the bound was set from, and the
	// headroom taken.
	Basis Str `yaml:"basis"`
}

// Regression is how a run is compared with a baseline bundle.
type Regression struct {
	// Alpha is the significance level of the Mann-Whitney U test.
	Alpha float64 `yaml:"alpha"`
	// MinChange is the smallest relative change of the median that
	// counts, however significant.
	MinChange float64 `yaml:"min_change"`
	// Noise raises MinChange for metrics whose run-to-run drift is larger:
	// the test compares the values of two runs, and sees only the spread
	// within each, so the drift between runs of one commit (measured by
	// comparing such runs with each other) must be set apart by hand.
	Noise []Noise `yaml:"noise"`
}

// Noise is the drift between runs of one commit of the metrics a pattern
// matches.
type Noise struct {
	Cell      Str     `yaml:"cell"`
	Metric    Str     `yaml:"metric"`
	MinChange float64 `yaml:"min_change"`
	Basis     Str     `yaml:"basis"`
}

// MinChangeFor is the smallest relative change of a cell's metric that
// counts as a regression: MinChange, or the largest noise entry that
// matches.
func (r Regression) MinChangeFor(cell, metric string) float64 {
	m := r.MinChange
	for _, n := range r.Noise {
		if n.Metric.Value == metric && MatchCell(n.Cell.Value, cell) && n.MinChange > m {
			m = n.MinChange
		}
	}
	return m
}

// Paired is the rule for a paired run: a metric regressed when the
// geometric mean of its per-round ratios of candidate to baseline is worse
// by at least MinChange (or a noise entry's), and the one-sided Wilcoxon
// signed-rank test of their logarithms gives p < Alpha.
type Paired struct {
	Alpha     float64 `yaml:"alpha"`
	MinChange float64 `yaml:"min_change"`
	// Metrics are the metrics judged this way.
	Metrics []string `yaml:"metrics"`
	// Noise raises MinChange for metrics whose paired ratios scatter more
	// between runs of one commit against itself.
	Noise []Noise `yaml:"noise"`
	// Basis says what MinChange was set from.
	Basis string `yaml:"basis"`
}

// MinChangeFor is the smallest paired change of a cell's metric that
// counts: MinChange, or the largest noise entry that matches.
func (p Paired) MinChangeFor(cell, metric string) float64 {
	m := p.MinChange
	for _, n := range p.Noise {
		if n.Metric.Value == metric && MatchCell(n.Cell.Value, cell) && n.MinChange > m {
			m = n.MinChange
		}
	}
	return m
}

// Soak is the soak gate's settings.
type Soak struct {
	Duration    map[string]string `yaml:"duration"`
	SampleEvery string            `yaml:"sample_every"`
	Warmup      string            `yaml:"warmup"`
	// RateMbps is the steady traffic the mesh carries.
	RateMbps float64 `yaml:"rate_mbps"`
	// Growth bounds, per hour, fitted after the warmup. The memory
	// slopes (RSS and live heap) are held to their bounds only in soaks
	// of MemorySlopeFrom or longer; goroutines and descriptors in every
	// soak.
	MaxRSSSlope       float64 `yaml:"max_rss_mib_per_hour"`
	MaxHeapLiveSlope  float64 `yaml:"max_heap_live_mib_per_hour"`
	MaxGoroutineSlope float64 `yaml:"max_goroutines_per_hour"`
	MaxFDSlope        float64 `yaml:"max_fds_per_hour"`
	// MaxRSS is a ceiling any sample breaching fails the soak.
	MaxRSS float64 `yaml:"max_rss_mib"`
	// Short is the short soak, for mutation runs: the soak gate runs it
	// instead of the channel's when RUSTYNET_SOAK=short (nightly only),
	// with the same bounds.
	Short ShortSoak `yaml:"short"`
}

// ShortSoak is how long the short soak runs and how it samples.
type ShortSoak struct {
	Duration    string `yaml:"duration"`
	SampleEvery string `yaml:"sample_every"`
	Warmup      string `yaml:"warmup"`
}

// ParseBudgets decodes and checks budgets.yaml.
func ParseBudgets(file string, data []byte) (*Budgets, error) {
	var b Budgets
	if err := decode(file, data, &b); err != nil {
		return nil, err
	}
	b.File, b.Digest = file, Digest(data)
	if b.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", b.Version)}
	}
	for _, ch := range knownChannels {
		if b.Matrix[ch] == "" {
			return nil, &Error{File: file, Msg: fmt.Sprintf("matrix: no matrix file for channel %s", ch)}
		}
		if _, err := b.SoakDuration(ch); err != nil {
			return nil, &Error{File: file, Msg: err.Error()}
		}
	}
	for _, list := range []struct {
		what string
		bs   []Budget
	}{{"budget", b.Budgets}, {"target", b.Targets}} {
		for _, bu := range list.bs {
			if err := checkCellPattern(bu.Cell.Value); err != nil {
				return nil, &Error{File: file, Line: bu.Cell.Line, Msg: err.Error()}
			}
			if bu.Metric.Value == "" {
				return nil, &Error{File: file, Line: bu.Cell.Line, Msg: list.what + " names no metric"}
			}
			if bu.Max == nil && bu.Min == nil {
				return nil, &Error{File: file, Line: bu.Cell.Line, Msg: list.what + " has neither max nor min"}
			}
			if bu.Max != nil && bu.Min != nil && *bu.Min > *bu.Max {
				return nil, &Error{File: file, Line: bu.Cell.Line, Msg: fmt.Sprintf("%s min %g is above its max %g", list.what, *bu.Min, *bu.Max)}
			}
			if bu.Basis.Value == "" {
				return nil, &Error{File: file, Line: bu.Cell.Line, Msg: list.what + " does not say what it was set from (basis)"}
			}
		}
	}
	for _, r := range b.Reported {
		switch {
		case checkCellPattern(r.Cell.Value) != nil:
			return nil, &Error{File: file, Line: r.Cell.Line, Msg: "reported: " + checkCellPattern(r.Cell.Value).Error()}
		case r.Metric.Value == "":
			return nil, &Error{File: file, Line: r.Cell.Line, Msg: "reported: names no metric"}
		case strings.TrimSpace(r.Reason.Value) == "":
			return nil, &Error{File: file, Line: r.Cell.Line, Msg: "reported: says not why the metric is not bounded (reason)"}
		}
	}
	if b.Regression.Alpha <= 0 || b.Regression.Alpha >= 0.5 {
		return nil, &Error{File: file, Msg: "regression.alpha: want between 0 and 0.5"}
	}
	if b.Regression.MinChange < 0 {
		return nil, &Error{File: file, Msg: "regression.min_change: want 0 or more"}
	}
	for _, n := range b.Regression.Noise {
		switch {
		case checkCellPattern(n.Cell.Value) != nil:
			return nil, &Error{File: file, Line: n.Cell.Line, Msg: "regression.noise: " + checkCellPattern(n.Cell.Value).Error()}
		case n.Metric.Value == "":
			return nil, &Error{File: file, Line: n.Cell.Line, Msg: "regression.noise: names no metric"}
		case n.MinChange <= 0:
			return nil, &Error{File: file, Line: n.Cell.Line, Msg: "regression.noise: min_change must be positive"}
		case n.Basis.Value == "":
			return nil, &Error{File: file, Line: n.Cell.Line, Msg: "regression.noise: does not say what it was measured from (basis)"}
		}
	}
	if len(b.Paired.Metrics) > 0 {
		switch {
		case b.Paired.Alpha <= 0 || b.Paired.Alpha >= 0.5:
			return nil, &Error{File: file, Msg: "paired.alpha: want between 0 and 0.5"}
		case b.Paired.MinChange <= 0:
			return nil, &Error{File: file, Msg: "paired.min_change: want more than 0"}
		case b.Paired.Basis == "":
			return nil, &Error{File: file, Msg: "paired: does not say what min_change was measured from (basis)"}
		}
		for _, n := range b.Paired.Noise {
			switch {
			case checkCellPattern(n.Cell.Value) != nil:
				return nil, &Error{File: file, Line: n.Cell.Line, Msg: "paired.noise: " + checkCellPattern(n.Cell.Value).Error()}
			case !slices.Contains(b.Paired.Metrics, n.Metric.Value):
				return nil, &Error{File: file, Line: n.Cell.Line, Msg: fmt.Sprintf("paired.noise: metric %q is not among paired.metrics", n.Metric.Value)}
			case n.MinChange <= 0:
				return nil, &Error{File: file, Line: n.Cell.Line, Msg: "paired.noise: min_change must be positive"}
			case n.Basis.Value == "":
				return nil, &Error{File: file, Line: n.Cell.Line, Msg: "paired.noise: does not say what it was measured from (basis)"}
			}
		}
	}
	// Durations and sampling intervals must be positive; a warm-up may
	// be zero.
	soakDurations := map[string]string{"sample_every": b.Soak.SampleEvery, "warmup": b.Soak.Warmup}
	if b.Soak.Short != (ShortSoak{}) {
		soakDurations["short.duration"], soakDurations["short.sample_every"], soakDurations["short.warmup"] = b.Soak.Short.Duration, b.Soak.Short.SampleEvery, b.Soak.Short.Warmup
	}
	for _, k := range slices.Sorted(maps.Keys(soakDurations)) {
		v, err := time.ParseDuration(soakDurations[k])
		if err != nil || v < 0 || (v == 0 && !strings.HasSuffix(k, "warmup")) {
			return nil, &Error{File: file, Msg: fmt.Sprintf("soak.%s: %q is not a positive duration", k, soakDurations[k])}
		}
	}
	if b.Soak.RateMbps <= 0 || b.Soak.MaxRSSSlope <= 0 || b.Soak.MaxHeapLiveSlope <= 0 || b.Soak.MaxGoroutineSlope <= 0 || b.Soak.MaxFDSlope <= 0 || b.Soak.MaxRSS <= 0 {
		return nil, &Error{File: file, Msg: "soak: rate_mbps and every bound must be positive"}
	}
	return &b, nil
}

// LoadBudgets reads and checks a budgets file.
func LoadBudgets(p string) (*Budgets, error) {
	data, err := readFile(p)
	if err != nil {
		return nil, err
	}
	return ParseBudgets(p, data)
}

// For returns the budgets that apply to a cell's metric.
func (b *Budgets) For(cell, metric string) []Budget { return matching(b.Budgets, cell, metric) }

// TargetsFor returns the targets that apply to a cell's metric.
func (b *Budgets) TargetsFor(cell, metric string) []Budget { return matching(b.Targets, cell, metric) }

func matching(bs []Budget, cell, metric string) []Budget {
	var out []Budget
	for _, bu := range bs {
		if MatchCell(bu.Cell.Value, cell) && bu.Metric.Value == metric {
			out = append(out, bu)
		}
	}
	return out
}

// SoakFloor is the shortest soak a channel may run, whatever
// budgets.yaml says: 24 hours for GA, 2 hours for beta, 10 minutes
// nightly. A budgets file that sets less is refused, and verify holds a
// soak's signed samples to it (gates/soak).
func SoakFloor(channel string) time.Duration {
	switch channel {
	case GA:
		return 24 * time.Hour
	case Beta:
		return 2 * time.Hour
	case Nightly:
		return 10 * time.Minute
	}
	return 0
}

// MemorySlopeFrom is the shortest soak whose memory slopes (RSS and live
// heap) are held to their bounds. A WireGuard node collects every minute
// or two under the soak's stream, and what each GC finds live moves by
// 10 to 20 MiB with the buffers in flight at the time; its RSS follows
// the highest the heap has reached, which still steps up minutes into a
// run. Fitted to the few minutes a nightly soak has, either reads as
// hundreds of MiB an hour either way on a healthy node. A shorter soak
// reports both, and judges what it can: goroutines and descriptors (exact
// counts), and every sample against the RSS ceiling, which catches gross
// growth.
const MemorySlopeFrom = time.Hour

// SoakDuration is how long the soak runs on a channel: budgets.yaml's
// duration, never under the channel's floor.
func (b *Budgets) SoakDuration(channel string) (time.Duration, error) {
	d, err := time.ParseDuration(b.Soak.Duration[channel])
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("soak.duration.%s: %q is not a positive duration", channel, b.Soak.Duration[channel])
	}
	if floor := SoakFloor(channel); d < floor {
		return 0, fmt.Errorf("soak.duration.%s: %q is under the %s channel's floor of %v (policies.SoakFloor)", channel, b.Soak.Duration[channel], channel, floor)
	}
	return d, nil
}

// MatchCell reports whether a budget's cell pattern matches a cell name.
// The pattern is matched part by part (parts are separated by /) with
// path.Match, so * stays within a part; a final part ** matches any number
// of further parts, none included: "throughput/backend=wireguard/**"
// matches every WireGuard throughput cell.
func MatchCell(pattern, cell string) bool {
	pp, cp := strings.Split(pattern, "/"), strings.Split(cell, "/")
	if pp[len(pp)-1] == "**" {
		pp = pp[:len(pp)-1]
		if len(cp) < len(pp) {
			return false
		}
		cp = cp[:len(pp)]
	}
	if len(pp) != len(cp) {
		return false
	}
	for i := range pp {
		if ok, err := path.Match(pp[i], cp[i]); !ok || err != nil {
			return false
		}
	}
	return true
}

func checkCellPattern(p string) error {
	if p == "" {
		return errors.New("empty cell pattern")
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if part == "**" && i == len(parts)-1 && i > 0 {
			continue
		}
		if strings.Contains(part, "**") {
			return fmt.Errorf("cell pattern %q: ** may only be a whole last part after at least one other", p)
		}
		if _, err := path.Match(part, ""); err != nil || part == "" {
			return fmt.Errorf("cell pattern %q is malformed at part %q", p, part)
		}
	}
	return nil
}
