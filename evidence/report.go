package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"maps"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rustynet/rustynet/internal/machine"
)

// ReportInput is everything a report shows. The caller verified the
// bundle (Verified) and recomputed the verdict (Passed, Gates).
type ReportInput struct {
	Verified *Verified
	// Results are the gates' full results, as LoadResults reads them. When
	// nil, the results the statements carry are shown.
	Results map[string]GateResult
	Passed  bool
	Channel string
	// At is when the verdict was evaluated.
	At time.Time
	// Gates are the channel's required gates, in policy order.
	Gates []ReportGate
	// PublicKeyID is the key the bundle verified with.
	PublicKeyID string
	// Scope lists the gates of a partial run; nil for a run of the whole
	// channel.
	Scope []string
}

// ReportGate is one required gate's part in the verdict.
type ReportGate struct {
	Gate string
	// Status is pass, fail, not-run, error, timeout or missing.
	Status   string
	Blocking bool
	Reason   string
	// Waiver is a waiver in force, or an expired one (Expired true).
	Waiver *ReportWaiver
}

// ReportWaiver is a waiver as the report shows it.
type ReportWaiver struct {
	Owner, Reason, Ticket string
	Expires               time.Time
	Expired               bool
}

// ResultFile is the artifact, inside a gate's directory, holding the
// gate's full result.
const ResultFile = "result.json"

// LoadResults reads artifacts/GATE/result.json for every gate statement
// of v. The files are covered by the verified manifest; each is hashed
// again as it is read, so a file changed since Verify is refused. A gate
// whose result file the manifest does not list gets the result its
// statement carries.
func LoadResults(v *Verified) (map[string]GateResult, error) {
	type listing struct {
		sha256 string
		size   int64
	}
	listed := map[string]listing{}
	for i, a := range v.Manifest.Artifacts {
		if i < len(v.Manifest.Sizes) {
			listed[a.Path] = listing{a.SHA256, v.Manifest.Sizes[i]}
		}
	}
	b, err := openBundle(v.Dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := make(map[string]GateResult, len(v.Gates))
	for name, gs := range v.Gates {
		// Only a path the manifest lists is read: manifest paths are
		// checked by Verify, so a strange gate name cannot lead outside
		// the bundle.
		rel := path.Join(ArtifactsDir, name, ResultFile)
		want, ok := listed[rel]
		if !ok || strings.Contains(name, "/") {
			out[name] = gs.Result
			continue
		}
		r, err := loadResult(b, rel, want.size, want.sha256)
		if err != nil {
			return nil, err
		}
		if r.Gate != name {
			return nil, invalid("%s is the result of gate %q, not %s", rel, r.Gate, name)
		}
		if gs.PredicateType == PredicateGateResult && r.Status != gs.Result.Status {
			return nil, invalid("%s says %s, the signed statement of gate %s says %s", rel, r.Status, name, gs.Result.Status)
		}
		out[name] = r
	}
	return out, nil
}

// loadResult decodes a gate's result file as it streams, hashing it on
// the way: the decoded result is returned only when the file is the size
// and has the digest the manifest gives.
func loadResult(b *bundleFS, rel string, size int64, sha string) (GateResult, error) {
	f, n, err := b.open(rel)
	if err != nil {
		return GateResult{}, err
	}
	defer f.Close()
	if n != size {
		return GateResult{}, invalid("%s is %d bytes, the manifest says %d (it was changed after verification)", rel, n, size)
	}
	h := sha256.New()
	lr := &io.LimitedReader{R: f, N: size + 1}
	var r GateResult
	dec := json.NewDecoder(io.TeeReader(lr, h))
	decErr := dec.Decode(&r)
	if _, err := dec.Token(); decErr == nil && !errors.Is(err, io.EOF) {
		decErr = errors.New("data after the result")
	}
	if _, err := io.Copy(h, lr); err != nil {
		return GateResult{}, invalid("%s: %w", rel, err)
	}
	if lr.N != 1 || hex.EncodeToString(h.Sum(nil)) != sha {
		return GateResult{}, invalid("%s does not match its digest in the manifest (it was changed after verification)", rel)
	}
	if decErr != nil {
		return GateResult{}, invalid("%s: %w", rel, decErr)
	}
	return r, nil
}

// SameContent reports whether the bundle's file rel holds exactly want:
// how a caller that vouches for a file derived from the evidence, such as
// a report, checks it against what it renders. The file is read as Verify
// reads (a regular file, through no symbolic link: anything else is an
// *InvalidError); a missing file is an error that wraps fs.ErrNotExist.
func (v *Verified) SameContent(rel string, want []byte) (bool, error) {
	b, err := openBundle(v.Dir)
	if err != nil {
		return false, err
	}
	defer b.Close()
	return b.sameContent(rel, want)
}

// ValidPath reports whether p is a path a bundle may hold, as Verify
// admits them: relative, of letters, digits and ._=- in components, no
// "..", and clean.
func ValidPath(p string) bool { return validRel(p) }

// ReportFile is a rendered report: its name in the bundle and content.
type ReportFile struct {
	Name string
	Data []byte
}

// Reports renders in as the files `rustynet-gate run` writes next to the
// evidence: report.html, then report.md. Rendering is deterministic: the
// same input gives the same bytes, in any process.
func Reports(in *ReportInput) ([]ReportFile, error) {
	var h, m bytes.Buffer
	if err := WriteHTML(&h, in); err != nil {
		return nil, err
	}
	if err := WriteMarkdown(&m, in); err != nil {
		return nil, err
	}
	return []ReportFile{{ReportHTML, h.Bytes()}, {ReportMD, m.Bytes()}}, nil
}

// CheckReports renders in (see Reports) and compares each report with the
// bundle's file of that name, where there is one, and returns the names of
// those it compared. A report that is not byte for byte what the verified
// evidence renders to, forged or rendered by another version, is refused
// with an *InvalidError: a reader who opens report.html after a bundle
// verified reads what the evidence says. in must be what run renders: the
// verdict under the bundle's own policy at the time it records.
func CheckReports(in *ReportInput) ([]string, error) {
	files, err := Reports(in)
	if err != nil {
		return nil, err
	}
	b, err := openBundle(in.Verified.Dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var checked []string
	for _, r := range files {
		same, err := b.sameContent(r.Name, r.Data)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !same {
			return nil, invalid("%s is not the report the verified evidence renders to: it was changed, or rendered by another version "+
				"(rustynet-gate report renders it again)", r.Name)
		}
		checked = append(checked, r.Name)
	}
	return checked, nil
}

// Limits that keep a report's size reasonable for thousands of
// measurements.
const (
	reasonMax       = 4000 // characters of a gate's reason shown
	barsPerChart    = 40   // a unit with more measurements gets several charts
	seriesMinValues = 10   // a measurement with this many values gets a line chart
	seriesBuckets   = 240  // a line chart has at most twice this many points
	maxSeriesCharts = 100  // line charts per report
	sparkWidth      = 40   // characters of a Markdown sparkline
	barWidth        = 20   // characters of a Markdown bar
)

// reportView is the content both formats show, computed once.
type reportView struct {
	Passed         bool
	Verdict        string // PASSED or BLOCKED
	WhyLead        string
	Why            []string
	Commit         string
	Channel        string
	At             string
	Created        string
	Recorded       string
	RecordedDiffer bool
	KeyID          string
	ManifestKeyID  string // set when it differs from KeyID
	DevelopmentKey bool
	Dirty          bool
	Policy         artifactView
	Machines       []machineView
	Subjects       []subjectView
	Gates          []gateView
	Waivers        []waiverView
	Measured       []measuredGate
	Artifacts      []artifactView
	Statements     []artifactView
	Notes          []string
}

type machineView struct {
	Gates string
	Env   machine.Environment
}

type subjectView struct {
	Name    string
	Digests []string // "alg:value"
}

type gateView struct {
	Gate        string
	Required    bool
	Status      string
	Class       string // a CSS class: good, bad or warnc
	Blocking    bool
	Waived      bool
	Duration    string
	Owner       string
	Reason      reasonView
	VerdictNote string
	Needs       string
}

type reasonView struct {
	First string // the first line, shortened
	Full  string // set when First does not say it all
}

type waiverView struct {
	Gate, Owner, Reason, Ticket, Expires string
	Expired                              bool
}

type measuredGate struct {
	Gate   string
	Rows   []measView
	Bars   []barChart
	Series []lineChart
}

type measView struct {
	Name, Unit, Method string
	Reps               int
	Mean, Stddev       string
	Min, Max           string
	Budget             string
	Within             string // yes, NO, or empty without a budget
	Class              string
	Bar                string // a text bar for Markdown, within the unit's group
}

type artifactView struct {
	Path   string
	Link   bool
	Size   string
	SHA256 string
}

// WriteHTML writes the report as one self-contained HTML page: inline CSS
// and inline SVG charts, no external assets, no JavaScript.
func WriteHTML(w io.Writer, in *ReportInput) error {
	rv, err := buildView(in)
	if err != nil {
		return err
	}
	return htmlReport.Execute(w, rv)
}

func buildView(in *ReportInput) (*reportView, error) {
	if in == nil || in.Verified == nil {
		return nil, errors.New("report: no verified bundle")
	}
	v := in.Verified
	m := &v.Manifest
	results := in.Results
	if results == nil {
		results = map[string]GateResult{}
		for name, gs := range v.Gates {
			results[name] = gs.Result
		}
	}
	rv := &reportView{
		Passed:         in.Passed,
		Verdict:        "BLOCKED",
		Commit:         m.Commit,
		Channel:        orElse(in.Channel, m.Channel),
		At:             fmtTime(in.At),
		Created:        fmtTime(m.Created),
		KeyID:          orElse(in.PublicKeyID, v.KeyID),
		DevelopmentKey: m.DevelopmentKey,
		Dirty:          m.Dirty,
	}
	if in.Passed {
		rv.Verdict = "PASSED"
	}
	if in.Scope != nil {
		rv.Verdict += " (partial run)"
	}
	if m.KeyID != "" && m.KeyID != rv.KeyID {
		rv.ManifestKeyID = m.KeyID
	}
	rv.Recorded, rv.RecordedDiffer = recorded(v, in.Passed)
	rv.WhyLead, rv.Why = why(in, results, rv.Channel)

	// Gates: the required ones in policy order, then any other that ran.
	order := make([]string, 0, len(results)+len(in.Gates))
	required := map[string]ReportGate{}
	for _, g := range in.Gates {
		if _, dup := required[g.Gate]; !dup {
			order = append(order, g.Gate)
		}
		required[g.Gate] = g
	}
	var others []string
	for name := range results {
		if _, ok := required[name]; !ok {
			others = append(others, name)
		}
	}
	sort.Strings(others)
	order = append(order, others...)
	for _, name := range order {
		rg, isReq := required[name]
		r, ran := results[name]
		gv := gateView{Gate: name, Required: isReq, Status: r.Status, Owner: r.Owner, Needs: strings.Join(r.Needs, ", ")}
		if isReq {
			gv.Status, gv.Blocking = rg.Status, rg.Blocking
			gv.Waived = rg.Waiver != nil && !rg.Waiver.Expired && rg.Status != StatusPass
			if rg.Reason != "" && rg.Reason != rg.Status {
				gv.VerdictNote = rg.Reason
			}
		}
		gv.Class = statusClass(gv.Status, gv.Waived)
		if ran {
			gv.Duration = fmtSeconds(r.DurationSeconds)
		}
		gv.Reason = shorten(r.Reason)
		rv.Gates = append(rv.Gates, gv)
		if isReq && rg.Waiver != nil {
			rv.Waivers = append(rv.Waivers, waiverView{Gate: name, Owner: rg.Waiver.Owner, Reason: rg.Waiver.Reason,
				Ticket: rg.Waiver.Ticket, Expires: fmtDate(rg.Waiver.Expires), Expired: rg.Waiver.Expired})
		}
	}

	rv.Policy = artifactView{Path: m.Policy, Link: linkable(m.Policy), SHA256: m.PolicySHA}
	rv.Machines = machines(order, results)
	for _, s := range v.Subjects {
		sv := subjectView{Name: s.Name}
		for _, alg := range slices.Sorted(maps.Keys(s.Digest)) {
			sv.Digests = append(sv.Digests, alg+":"+s.Digest[alg])
		}
		rv.Subjects = append(rv.Subjects, sv)
	}

	series, skipped := 0, 0
	for _, name := range order {
		r, ok := results[name]
		if !ok || len(r.Measurements) == 0 {
			continue
		}
		mg := measuredGate{Gate: name}
		for _, ms := range r.Measurements {
			mg.Rows = append(mg.Rows, measRow(ms))
		}
		for _, grp := range byUnit(r.Measurements) {
			if len(grp) < 2 {
				continue
			}
			textBars(grp, r.Measurements, mg.Rows)
			for i := 0; i < len(grp); i += barsPerChart {
				chunk := grp[i:min(i+barsPerChart, len(grp))]
				ms := make([]Measurement, len(chunk))
				for j, k := range chunk {
					ms[j] = r.Measurements[k]
				}
				title := r.Measurements[grp[0]].Unit
				if title == "" {
					title = "no unit"
				}
				if len(grp) > barsPerChart {
					title += fmt.Sprintf(" (%d–%d of %d)", i+1, i+len(chunk), len(grp))
				}
				if c, ok := newBarChart(title, ms); ok {
					mg.Bars = append(mg.Bars, c)
				}
			}
		}
		for _, ms := range r.Measurements {
			if len(ms.Values) < seriesMinValues {
				continue
			}
			if series >= maxSeriesCharts {
				skipped++
				continue
			}
			if c, ok := newLineChart(ms); ok {
				mg.Series = append(mg.Series, c)
				series++
			}
		}
		rv.Measured = append(rv.Measured, mg)
	}
	if skipped > 0 {
		rv.Notes = append(rv.Notes, fmt.Sprintf("%d more series are not charted: a report charts at most %d. Their values are in each gate's %s.",
			skipped, maxSeriesCharts, ResultFile))
	}

	for i, a := range m.Artifacts {
		av := artifactView{Path: a.Path, Link: linkable(a.Path), SHA256: a.SHA256}
		if i < len(m.Sizes) {
			av.Size = fmtBytes(m.Sizes[i])
		}
		rv.Artifacts = append(rv.Artifacts, av)
	}
	for _, in := range v.Verdict.GetInputAttestations() {
		rv.Statements = append(rv.Statements, artifactView{Path: in.GetUri(), Link: linkable(in.GetUri()), SHA256: in.GetDigest()["sha256"]})
	}
	return rv, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// recorded says what the signed verdict says, and whether it differs
// from the recomputed one.
func recorded(v *Verified, passed bool) (string, bool) {
	if v.Verdict == nil {
		return "none recorded", false
	}
	res := v.Verdict.GetVerificationResult()
	s := res
	if t := v.Verdict.GetTimeVerified(); t != nil {
		s += ", signed " + fmtTime(t.AsTime())
	}
	return s, (res == Passed) != passed
}

// why explains the verdict: a lead sentence and the gates it rests on.
func why(in *ReportInput, results map[string]GateResult, channel string) (string, []string) {
	var blocking, waived []string
	for _, g := range in.Gates {
		switch {
		case g.Blocking:
			s := g.Gate + " (" + g.Status + ")"
			if r := firstLine(results[g.Gate].Reason, 200); r != "" {
				s += ": " + r
			} else if g.Reason != "" && g.Reason != g.Status {
				s += ": " + firstLine(g.Reason, 200)
			}
			if g.Waiver != nil && g.Waiver.Expired {
				s += fmt.Sprintf("; the waiver by %s (%s) expired on %s", g.Waiver.Owner, g.Waiver.Ticket, fmtDate(g.Waiver.Expires))
			}
			blocking = append(blocking, s)
		case g.Status != StatusPass && g.Waiver != nil && !g.Waiver.Expired:
			waived = append(waived, fmt.Sprintf("%s (%s), waived by %s until %s (%s): %s", g.Gate, g.Status,
				g.Waiver.Owner, fmtDate(g.Waiver.Expires), g.Waiver.Ticket, firstLine(g.Waiver.Reason, 200)))
		}
	}
	if in.Scope != nil {
		var out []string
		for _, g := range in.Gates {
			if g.Status == StatusOutOfScope {
				out = append(out, g.Gate)
			}
		}
		lead := fmt.Sprintf("A partial run of %s: it is not a verdict on the %s channel and cannot be published as one.", strings.Join(in.Scope, ", "), channel)
		if len(out) > 0 {
			lead += fmt.Sprintf(" The channel also requires %s, which did not run.", strings.Join(out, ", "))
		}
		switch {
		case in.Passed && len(waived) == 0:
			return lead + " Every gate in the run passed.", nil
		case in.Passed:
			return lead + " Every gate in the run passed or carries a waiver in force:", waived
		}
		return lead + " Gates of the run that block:", blocking
	}
	n := len(in.Gates)
	switch {
	case in.Passed && n == 0:
		return fmt.Sprintf("The %s channel requires no gates.", channel), nil
	case in.Passed && len(waived) == 0:
		return fmt.Sprintf("All %d gates the %s channel requires passed.", n, channel), nil
	case in.Passed:
		return fmt.Sprintf("%d of the %d gates the %s channel requires passed; %d did not but carry a waiver in force:",
			n-len(waived), n, channel, len(waived)), waived
	case len(blocking) == 0:
		return "The verdict is blocked, though no gate is marked as blocking.", nil
	}
	verb := "block"
	if len(blocking) == 1 {
		verb = "blocks"
	}
	return fmt.Sprintf("%d of the %d gates the %s channel requires %s the release:", len(blocking), n, channel, verb), blocking
}

func machines(order []string, results map[string]GateResult) []machineView {
	var out []machineView
	idx := map[machine.Environment]int{}
	for _, name := range order {
		r, ok := results[name]
		if !ok || r.Environment == (machine.Environment{}) {
			continue
		}
		i, seen := idx[r.Environment]
		if !seen {
			i = len(out)
			idx[r.Environment] = i
			out = append(out, machineView{Env: r.Environment})
		}
		if out[i].Gates != "" {
			out[i].Gates += ", "
		}
		out[i].Gates += name
	}
	if len(out) == 1 {
		out[0].Gates = "all gates"
	}
	return out
}

func statusClass(status string, waived bool) string {
	switch {
	case status == StatusPass:
		return "good"
	case waived, status == StatusNotRun, status == StatusOutOfScope:
		return "warnc"
	}
	return "bad"
}

func measRow(ms Measurement) measView {
	mv := measView{Name: ms.Name, Unit: ms.Unit, Method: ms.Method, Reps: ms.Repetitions,
		Mean: fmtNum(ms.Mean), Stddev: fmtNum(ms.Stddev), Min: fmtNum(ms.Min), Max: fmtNum(ms.Max)}
	if b := ms.Budget; b != nil && (b.Max != nil || b.Min != nil) {
		mv.Budget = fmtBudget(b, ms.Unit)
		if within(ms) {
			mv.Within, mv.Class = "yes", "good"
		} else {
			mv.Within, mv.Class = "NO", "bad"
		}
		if ms.WithinBudget != nil && *ms.WithinBudget != within(ms) {
			mv.Within += " (the gate recorded otherwise)"
		}
	}
	return mv
}

// within checks the mean against the budget, as gates.Summarize does.
func within(ms Measurement) bool {
	b := ms.Budget
	return b == nil || (b.Max == nil || ms.Mean <= *b.Max) && (b.Min == nil || ms.Mean >= *b.Min)
}

func fmtBudget(b *Budget, unit string) string {
	var parts []string
	if b.Min != nil {
		parts = append(parts, "≥ "+fmtNum(*b.Min))
	}
	if b.Max != nil {
		parts = append(parts, "≤ "+fmtNum(*b.Max))
	}
	s := strings.Join(parts, " and ")
	if unit != "" {
		s += " " + unit
	}
	if b.Source != "" {
		s += " (" + b.Source + ")"
	}
	return s
}

// byUnit groups measurement indexes by unit, in order of first appearance.
func byUnit(ms []Measurement) [][]int {
	var groups [][]int
	idx := map[string]int{}
	for i, m := range ms {
		g, ok := idx[m.Unit]
		if !ok {
			g = len(groups)
			idx[m.Unit] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// textBars fills the Markdown bars of one unit's measurements, scaled to
// the largest mean of the group.
func textBars(grp []int, ms []Measurement, rows []measView) {
	var top float64
	for _, i := range grp {
		top = math.Max(top, math.Abs(ms[i].Mean))
	}
	if top == 0 || !finite(top) {
		return
	}
	for _, i := range grp {
		eighths := int(math.Round(math.Abs(ms[i].Mean) / top * barWidth * 8))
		rows[i].Bar = strings.Repeat("█", eighths/8)
		if r := eighths % 8; r > 0 {
			rows[i].Bar += string([]rune("▏▎▍▌▋▊▉")[r-1])
		}
		if ms[i].Mean < 0 {
			rows[i].Bar = "−" + rows[i].Bar
		}
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// linkable says whether a bundle path may be linked: a relative path of
// the bundle, as Verify admits them.
func linkable(p string) bool { return relRE.MatchString(p) && !strings.Contains(p, "..") }

func shorten(s string) reasonView {
	s = strings.TrimSpace(s)
	full := s
	if utf8.RuneCountInString(full) > reasonMax {
		r := []rune(full)
		full = string(r[:reasonMax]) + fmt.Sprintf("… (%d more characters in %s)", len(r)-reasonMax, ResultFile)
	}
	rv := reasonView{First: firstLine(s, 200)}
	if rv.First != s {
		rv.Full = full
	}
	return rv
}

func firstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	line, _, more := strings.Cut(s, "\n")
	line = strings.TrimSpace(line)
	if r := []rune(line); len(r) > max {
		line, more = string(r[:max]), true
	}
	if more {
		line += " …"
	}
	return line
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtDate(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	t = t.UTC()
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 {
		return t.Format(time.DateOnly)
	}
	return t.Format("2006-01-02 15:04 UTC")
}

func fmtSeconds(s float64) string {
	if !finite(s) || s < 0 {
		return "?"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case s == 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func fmtNum(f float64) string {
	if math.Trunc(f) == f && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// Charts are computed here, as coordinates; the template writes them as
// SVG, escaping every label.

type barChart struct {
	Title string
	// Common is what every bar's name shares, left out of the labels.
	Common string
	W, H   int
	AxisY  string
	X0, X1 string
	ZeroX  string
	Top    string
	Ticks  []tick
	Rows   []barRow
}

// tick is an axis label at X, Y; G is where a horizontal grid line goes.
type tick struct{ X, Y, G, Label string }

type barRow struct {
	Name, Label, Value string
	TextY              string
	BarX, BarY, BarW   string
	Class              string
	Err                bool
	ErrX1, ErrX2, ErrY string
	CapY1, CapY2       string
	Marks              []mark
}

type mark struct{ X1, Y1, X2, Y2, Class, Title string }

type lineChart struct {
	Name, Unit, Caption string
	Budget              string
	N                   int
	Min, Mean, Max      string
	Points              string
	X0, X1, Y0, Y1      string
	YTicks, XLabels     []tick
	Lines               []mark
	Spark               string
}

// Geometry of the charts, in SVG user units.
const (
	chartW     = 760
	barX0      = 220.0
	barX1      = 600.0
	barRowH    = 22.0
	barTop     = 8.0
	lineH      = 220
	linePlotX0 = 70.0
	linePlotX1 = 740.0
	linePlotY0 = 12.0
	linePlotY1 = 184.0
)

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

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
// spread (±stddev) and budgets.
func newBarChart(title string, ms []Measurement) (barChart, bool) {
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
	c := barChart{Title: title, W: chartW, H: int(axisY) + 22, AxisY: f1(axisY), X0: f1(barX0), X1: f1(barX1),
		ZeroX: f1(sx(0)), Top: f1(barTop)}
	for _, t := range ticks {
		c.Ticks = append(c.Ticks, tick{X: f1(sx(t)), Y: f1(axisY + 14), Label: fmtNum(t)})
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
		r := barRow{Name: m.Name, Label: labels[i], TextY: f1(y + 15),
			BarX: f1(x0), BarY: f1(y + 4), BarW: f1(math.Max(x1-x0, 0.5)), Class: "plain",
			Value: fmtNum(m.Mean)}
		if sd := math.Abs(m.Stddev); sd > 0 {
			r.Value += " ± " + fmtNum(sd)
			r.Err, r.ErrX1, r.ErrX2, r.ErrY = true, f1(sx(m.Mean-sd)), f1(sx(m.Mean+sd)), f1(y+11)
			r.CapY1, r.CapY2 = f1(y+6), f1(y+16)
		}
		if b := m.Budget; b != nil && (b.Max != nil || b.Min != nil) {
			r.Class = "over"
			if within(m) {
				r.Class = "ok"
			}
			if b.Max != nil {
				r.Marks = append(r.Marks, mark{X1: f1(sx(*b.Max)), X2: f1(sx(*b.Max)), Y1: f1(y + 1), Y2: f1(y + barRowH - 1),
					Class: "budget budget-max", Title: "budget: at most " + fmtNum(*b.Max) + " " + m.Unit})
			}
			if b.Min != nil {
				r.Marks = append(r.Marks, mark{X1: f1(sx(*b.Min)), X2: f1(sx(*b.Min)), Y1: f1(y + 1), Y2: f1(y + barRowH - 1),
					Class: "budget budget-min", Title: "budget: at least " + fmtNum(*b.Min) + " " + m.Unit})
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

// newLineChart charts the values of a measurement in the order they were
// taken, with its mean and budget.
func newLineChart(m Measurement) (lineChart, bool) {
	vals := m.Values
	n := len(vals)
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	vmin, vmax := lo, hi
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
	c := lineChart{Name: m.Name, Unit: m.Unit, N: n, Min: fmtNum(vmin), Mean: fmtNum(m.Mean), Max: fmtNum(vmax),
		X0: f1(linePlotX0), X1: f1(linePlotX1), Y0: f1(linePlotY0), Y1: f1(linePlotY1)}
	if m.Budget != nil && len(budgets) > 0 {
		c.Budget = fmtBudget(m.Budget, m.Unit)
	}
	c.Caption = fmt.Sprintf("%d values, min %s, mean %s, max %s", n, c.Min, c.Mean, c.Max)
	if m.Unit != "" {
		c.Caption += " " + m.Unit
	}
	for _, t := range ticks {
		c.YTicks = append(c.YTicks, tick{X: f1(linePlotX0 - 6), Y: f1(sy(t) + 4), G: f1(sy(t)), Label: fmtNum(t)})
	}
	c.XLabels = []tick{
		{X: f1(linePlotX0), Y: f1(linePlotY1 + 16), Label: "1"},
		{X: f1((linePlotX0 + linePlotX1) / 2), Y: f1(linePlotY1 + 30), Label: "value, in the order taken"},
		{X: f1(linePlotX1), Y: f1(linePlotY1 + 16), Label: strconv.Itoa(n)},
	}
	var pts strings.Builder
	for _, i := range sampleIndexes(vals) {
		fmt.Fprintf(&pts, "%s,%s ", f1(sx(i)), f1(sy(vals[i])))
	}
	c.Points = strings.TrimSpace(pts.String())
	if mean := m.Mean; mean >= lo && mean <= hi {
		c.Lines = append(c.Lines, mark{X1: c.X0, X2: c.X1, Y1: f1(sy(mean)), Y2: f1(sy(mean)), Class: "mean", Title: "mean " + c.Mean})
	}
	for i, b := range budgets {
		title := "budget: at most "
		class := "budget budget-max"
		if m.Budget.Max == nil || i == 1 {
			title, class = "budget: at least ", "budget budget-min"
		}
		c.Lines = append(c.Lines, mark{X1: c.X0, X2: c.X1, Y1: f1(sy(b)), Y2: f1(sy(b)), Class: class, Title: title + fmtNum(b) + " " + m.Unit})
	}
	c.Spark = sparkline(vals)
	return c, true
}

// sparkline draws values as a line of block characters, for Markdown.
func sparkline(vals []float64) string {
	k := min(len(vals), sparkWidth)
	means := make([]float64, k)
	for b := range k {
		i0, i1 := b*len(vals)/k, (b+1)*len(vals)/k
		var s float64
		for _, v := range vals[i0:i1] {
			s += v / float64(i1-i0)
		}
		means[b] = s
	}
	lo, hi := slices.Min(means), slices.Max(means)
	levels := []rune("▁▂▃▄▅▆▇█")
	var sb strings.Builder
	for _, v := range means {
		l := 3
		if hi > lo && finite(hi-lo) {
			l = int(math.Round((v - lo) / (hi - lo) * 7))
		}
		sb.WriteRune(levels[max(0, min(7, l))])
	}
	return sb.String()
}

var htmlReport = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rustynet release gate: {{.Verdict}}, {{.Channel}}, {{.Commit}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;max-width:1120px;margin:0 auto;padding:1em 2em}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
header.verdict{border-radius:8px;padding:1em 1.5em;margin:1em 0;color:#fff}
header.verdict.passed{background:#1a7f37}
header.verdict.blocked{background:#cf222e}
header.verdict h1{font-size:3.2em;letter-spacing:.06em;margin:0}
header.verdict p,header.verdict li{font-size:1.1em;margin:.3em 0}
header.verdict code{color:#fff}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.6em 1em;margin:.6em 0}
table{border-collapse:collapse;margin:.5em 0 1em;width:100%}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.kv th{width:12em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
pre{white-space:pre-wrap;margin:.3em 0 0}
.good{color:#1a7f37;font-weight:600}
.bad{color:#cf222e;font-weight:600}
.warnc{color:#9a6700;font-weight:600}
small{color:#59636e}
figure{margin:1em 0}
figcaption{font-weight:600;margin-bottom:.3em}
svg{max-width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
svg .bar{fill:#0969da}
svg .bar.ok{fill:#1a7f37}
svg .bar.over{fill:#cf222e}
svg .err{stroke:#1f2328;stroke-width:1.2}
svg .axis{stroke:#8c959f;stroke-width:1}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .budget{stroke-width:2.5;stroke-dasharray:5 3}
svg .budget-max{stroke:#cf222e}
svg .budget-min{stroke:#9a6700}
svg .mean{stroke:#59636e;stroke-width:1;stroke-dasharray:2 3}
svg .series{fill:none;stroke:#0969da;stroke-width:1.3}
svg text.end{text-anchor:end}
svg text.mid{text-anchor:middle}
</style>
</head>
<body>
<header class="verdict {{if .Passed}}passed{{else}}blocked{{end}}">
<h1>{{.Verdict}}</h1>
<p>Channel <b>{{.Channel}}</b>, commit <code>{{.Commit}}</code>{{if .Dirty}} plus uncommitted changes{{end}}, evaluated {{.At}}.</p>
<p>{{.WhyLead}}</p>
{{- if .Why}}
<ul>{{range .Why}}<li>{{.}}</li>{{end}}</ul>
{{- end}}
</header>
{{- if .DevelopmentKey}}
<p class="warn"><b>Development key.</b> This bundle was signed with a development key made on the spot by <code>make gate</code>. It is not a release key: the bundle is evidence for a developer, not for a release.</p>
{{- end}}
{{- if .Dirty}}
<p class="warn"><b>Dirty working tree.</b> The working tree had uncommitted changes: the evidence is about commit <code>{{.Commit}}</code> plus those changes, not about the commit alone.</p>
{{- end}}
{{- if .RecordedDiffer}}
<p class="warn"><b>The signed verdict differs.</b> The bundle's signed verdict is {{.Recorded}}; recomputed at {{.At}} the verdict is {{.Verdict}}.</p>
{{- end}}
{{- range .Notes}}
<p class="warn">{{.}}</p>
{{- end}}

<h2 id="bundle">Bundle</h2>
<table class="kv">
<tr><th>Verdict</th><td class="{{if .Passed}}good{{else}}bad{{end}}">{{.Verdict}}</td></tr>
<tr><th>Commit</th><td><code>{{.Commit}}</code></td></tr>
<tr><th>Channel</th><td>{{.Channel}}</td></tr>
<tr><th>Evaluated</th><td>{{.At}}</td></tr>
<tr><th>Bundle created</th><td>{{.Created}}</td></tr>
<tr><th>Signed verdict</th><td>{{.Recorded}}</td></tr>
<tr><th>Signing key</th><td><code>{{.KeyID}}</code>{{if .ManifestKeyID}} (the manifest names <code>{{.ManifestKeyID}}</code>){{end}}<br>
{{- if .DevelopmentKey}}<span class="bad">development key: not a release key</span>{{else}}not marked as a development key{{end}}</td></tr>
<tr><th>Working tree</th><td>{{if .Dirty}}<span class="bad">dirty: uncommitted changes were part of what was tested</span>{{else}}clean{{end}}</td></tr>
<tr><th>Policy</th><td>{{template "path" .Policy}}<br>sha256 <code>{{.Policy.SHA256}}</code></td></tr>
</table>

<h2 id="machine">Machine</h2>
{{- if .Machines}}
<table>
<tr><th>Gates</th><th>CPU</th><th>Cores</th><th>Kernel</th><th>Go</th><th>OS/arch</th></tr>
{{- range .Machines}}
<tr><td>{{.Gates}}</td><td>{{.Env.CPU}}</td><td class="num">{{.Env.Cores}}</td><td>{{.Env.Kernel}}</td><td>{{.Env.GoVersion}}</td><td>{{.Env.OS}}/{{.Env.Arch}}</td></tr>
{{- end}}
</table>
{{- else}}
<p>Not recorded.</p>
{{- end}}

<h2 id="subjects">Subjects</h2>
<table>
<tr><th>Subject</th><th>Digest</th></tr>
{{- range .Subjects}}
<tr><td>{{.Name}}</td><td>{{range $i, $d := .Digests}}{{if $i}}<br>{{end}}<code>{{$d}}</code>{{end}}</td></tr>
{{- end}}
</table>

<h2 id="gates">Gates</h2>
<table>
<tr><th>Gate</th><th>Status</th><th>Blocks</th><th>Duration</th><th>Owner</th><th>Reason</th><th>Needs</th></tr>
{{- range .Gates}}
<tr><td>{{.Gate}}{{if not .Required}} <small>(not required)</small>{{end}}</td><td class="{{.Class}}">{{.Status}}</td>
<td>{{if .Blocking}}<span class="bad">blocks</span>{{else if .Waived}}<span class="warnc">waived</span>{{else}}no{{end}}</td>
<td class="num">{{.Duration}}</td><td>{{.Owner}}</td>
<td>{{if .Reason.Full}}<details><summary>{{.Reason.First}}</summary><pre>{{.Reason.Full}}</pre></details>{{else}}{{.Reason.First}}{{end}}
{{- if .VerdictNote}}{{if .Reason.First}}<br>{{end}}<small>verdict: {{.VerdictNote}}</small>{{end}}</td>
<td>{{.Needs}}</td></tr>
{{- end}}
</table>

<h2 id="waivers">Waivers</h2>
{{- if .Waivers}}
<table>
<tr><th>Gate</th><th>Owner</th><th>Reason</th><th>Ticket</th><th>Expires</th><th>State</th></tr>
{{- range .Waivers}}
<tr><td>{{.Gate}}</td><td>{{.Owner}}</td><td>{{.Reason}}</td><td>{{.Ticket}}</td><td>{{.Expires}}</td>
<td>{{if .Expired}}<span class="bad">EXPIRED: the gate blocks</span>{{else}}<span class="warnc">in force</span>{{end}}</td></tr>
{{- end}}
</table>
{{- else}}
<p>No waiver applies.</p>
{{- end}}

<h2 id="measurements">Measurements</h2>
{{- if not .Measured}}
<p>No gate recorded measurements.</p>
{{- end}}
{{- range .Measured}}
<h3>{{.Gate}}</h3>
<table>
<tr><th>Measurement</th><th>Unit</th><th>Method</th><th>Reps</th><th>Mean</th><th>Stddev</th><th>Min</th><th>Max</th><th>Budget</th><th>Within budget</th></tr>
{{- range .Rows}}
<tr><td>{{.Name}}</td><td>{{.Unit}}</td><td>{{.Method}}</td><td class="num">{{.Reps}}</td><td class="num">{{.Mean}}</td><td class="num">{{.Stddev}}</td>
<td class="num">{{.Min}}</td><td class="num">{{.Max}}</td><td>{{.Budget}}</td><td class="{{.Class}}">{{.Within}}</td></tr>
{{- end}}
</table>
{{- $gate := .Gate}}
{{- range $c := .Bars}}
<figure>
<figcaption>{{$gate}}: mean ± stddev, {{.Title}}{{if .Common}}; every bar: {{.Common}}{{end}}</figcaption>
<svg class="bars" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-label="{{$gate}}: means in {{.Title}}">
{{- range .Ticks}}
<line class="grid" x1="{{.X}}" y1="{{$c.Top}}" x2="{{.X}}" y2="{{$c.AxisY}}"/><text class="mid" x="{{.X}}" y="{{.Y}}">{{.Label}}</text>
{{- end}}
<line class="axis" x1="{{.X0}}" y1="{{.AxisY}}" x2="{{.X1}}" y2="{{.AxisY}}"/>
<line class="axis" x1="{{.ZeroX}}" y1="{{.Top}}" x2="{{.ZeroX}}" y2="{{.AxisY}}"/>
{{- range .Rows}}
<g><title>{{.Name}}: {{.Value}}</title>
<text class="end" x="212" y="{{.TextY}}">{{.Label}}</text>
<rect class="bar {{.Class}}" x="{{.BarX}}" y="{{.BarY}}" width="{{.BarW}}" height="14"/>
{{- if .Err}}
<line class="err" x1="{{.ErrX1}}" y1="{{.ErrY}}" x2="{{.ErrX2}}" y2="{{.ErrY}}"/><line class="err" x1="{{.ErrX1}}" y1="{{.CapY1}}" x2="{{.ErrX1}}" y2="{{.CapY2}}"/><line class="err" x1="{{.ErrX2}}" y1="{{.CapY1}}" x2="{{.ErrX2}}" y2="{{.CapY2}}"/>
{{- end}}
{{- range .Marks}}
<line class="{{.Class}}" x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"><title>{{.Title}}</title></line>
{{- end}}
<text x="608" y="{{.TextY}}">{{.Value}}</text>
</g>
{{- end}}
</svg>
</figure>
{{- end}}
{{- range $c := .Series}}
<figure>
<figcaption>{{$gate}}: {{.Name}}{{if .Unit}} ({{.Unit}}){{end}}</figcaption>
<svg class="series-chart" viewBox="0 0 760 220" width="760" height="220" role="img" aria-label="{{$gate}}: {{.Name}}, {{.Caption}}">
{{- range .YTicks}}
<line class="grid" x1="{{$c.X0}}" y1="{{.G}}" x2="{{$c.X1}}" y2="{{.G}}"/><text class="end" x="{{.X}}" y="{{.Y}}">{{.Label}}</text>
{{- end}}
<line class="axis" x1="{{.X0}}" y1="{{.Y1}}" x2="{{.X1}}" y2="{{.Y1}}"/>
<line class="axis" x1="{{.X0}}" y1="{{.Y0}}" x2="{{.X0}}" y2="{{.Y1}}"/>
{{- range .XLabels}}
<text class="mid" x="{{.X}}" y="{{.Y}}">{{.Label}}</text>
{{- end}}
<polyline class="series" points="{{.Points}}"/>
{{- range .Lines}}
<line class="{{.Class}}" x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"><title>{{.Title}}</title></line>
{{- end}}
</svg>
<p><small>{{.Caption}}{{if .Budget}}; budget {{.Budget}}{{end}}.</small></p>
</figure>
{{- end}}
{{- end}}

<h2 id="artifacts">Artifacts</h2>
<table>
<tr><th>Artifact</th><th>Size</th><th>sha256</th></tr>
{{- range .Artifacts}}
<tr><td>{{template "path" .}}</td><td class="num">{{.Size}}</td><td><code>{{.SHA256}}</code></td></tr>
{{- end}}
</table>
<h3>Signed statements the verdict was computed from</h3>
<table>
<tr><th>Statement</th><th>sha256</th></tr>
{{- range .Statements}}
<tr><td>{{template "path" .}}</td><td><code>{{.SHA256}}</code></td></tr>
{{- end}}
</table>
<p><small>Paths are relative to the bundle directory. This report is derived from the bundle and is not part of the evidence; <code>rustynet-gate verify</code> checks the evidence itself.</small></p>
</body>
</html>
{{define "path"}}{{if .Link}}<a href="{{.Path}}">{{.Path}}</a>{{else}}{{.Path}}{{end}}{{end}}
`))

// WriteMarkdown writes the report as Markdown, with the content of
// WriteHTML; charts become tables (bars of block characters and
// sparklines).
func WriteMarkdown(w io.Writer, in *ReportInput) error {
	rv, err := buildView(in)
	if err != nil {
		return err
	}
	mw := &mdWriter{w: w}
	mw.markdown(rv)
	return mw.err
}

type mdWriter struct {
	w   io.Writer
	err error
}

func (m *mdWriter) printf(format string, a ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, a...)
	}
}

var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "|", `\|`, "~", `\~`, "#", `\#`,
	"<", "&lt;", ">", "&gt;", "&", "&amp;", "\r\n", " ", "\n", " ", "\r", " ")

// md escapes text from the bundle for a line or a table cell of
// Markdown: no markup, no HTML, no line breaks.
func md(s string) string { return mdEscaper.Replace(s) }

// mdCode writes s as a code span when it can be one.
func mdCode(s string) string {
	if s == "" || strings.ContainsAny(s, "`\r\n|<>&") {
		return md(s)
	}
	return "`" + s + "`"
}

func mdPath(a artifactView) string {
	if a.Link {
		return "[" + md(a.Path) + "](" + a.Path + ")"
	}
	return md(a.Path)
}

func (m *mdWriter) markdown(rv *reportView) {
	m.printf("# Rustynet release gate: %s\n\n", rv.Verdict)
	m.printf("**%s** for channel **%s**, commit %s", rv.Verdict, md(rv.Channel), mdCode(rv.Commit))
	if rv.Dirty {
		m.printf(" plus uncommitted changes")
	}
	m.printf(", evaluated %s.\n\n%s\n\n", rv.At, md(rv.WhyLead))
	for _, s := range rv.Why {
		m.printf("- %s\n", md(s))
	}
	if len(rv.Why) > 0 {
		m.printf("\n")
	}
	if rv.DevelopmentKey {
		m.printf("> **Development key.** This bundle was signed with a development key made on the spot by `make gate`. It is not a release key: the bundle is evidence for a developer, not for a release.\n\n")
	}
	if rv.Dirty {
		m.printf("> **Dirty working tree.** The working tree had uncommitted changes: the evidence is about commit %s plus those changes, not about the commit alone.\n\n", mdCode(rv.Commit))
	}
	if rv.RecordedDiffer {
		m.printf("> **The signed verdict differs.** The bundle's signed verdict is %s; recomputed at %s the verdict is %s.\n\n", md(rv.Recorded), rv.At, rv.Verdict)
	}
	for _, n := range rv.Notes {
		m.printf("> %s\n\n", md(n))
	}

	m.printf("## Bundle\n\n| | |\n|---|---|\n")
	m.printf("| Verdict | **%s** |\n| Commit | %s |\n| Channel | %s |\n| Evaluated | %s |\n| Bundle created | %s |\n| Signed verdict | %s |\n",
		rv.Verdict, mdCode(rv.Commit), md(rv.Channel), rv.At, rv.Created, md(rv.Recorded))
	m.printf("| Signing key | %s", mdCode(rv.KeyID))
	if rv.ManifestKeyID != "" {
		m.printf(" (the manifest names %s)", mdCode(rv.ManifestKeyID))
	}
	if rv.DevelopmentKey {
		m.printf(", **development key: not a release key** |\n")
	} else {
		m.printf(", not marked as a development key |\n")
	}
	if rv.Dirty {
		m.printf("| Working tree | **dirty**: uncommitted changes were part of what was tested |\n")
	} else {
		m.printf("| Working tree | clean |\n")
	}
	m.printf("| Policy | %s, sha256 %s |\n\n", mdPath(rv.Policy), mdCode(rv.Policy.SHA256))

	m.printf("## Machine\n\n")
	if len(rv.Machines) == 0 {
		m.printf("Not recorded.\n\n")
	} else {
		m.printf("| Gates | CPU | Cores | Kernel | Go | OS/arch |\n|---|---|--:|---|---|---|\n")
		for _, mc := range rv.Machines {
			e := mc.Env
			m.printf("| %s | %s | %d | %s | %s | %s/%s |\n", md(mc.Gates), md(e.CPU), e.Cores, md(e.Kernel), md(e.GoVersion), md(e.OS), md(e.Arch))
		}
		m.printf("\n")
	}

	m.printf("## Subjects\n\n| Subject | Digest |\n|---|---|\n")
	for _, s := range rv.Subjects {
		var ds []string
		for _, d := range s.Digests {
			ds = append(ds, mdCode(d))
		}
		m.printf("| %s | %s |\n", md(s.Name), strings.Join(ds, "<br>"))
	}

	m.printf("\n## Gates\n\n| Gate | Status | Blocks | Duration | Owner | Reason | Needs |\n|---|---|---|--:|---|---|---|\n")
	var long []gateView
	for _, g := range rv.Gates {
		name := md(g.Gate)
		if !g.Required {
			name += " (not required)"
		}
		blocks := "no"
		switch {
		case g.Blocking:
			blocks = "**blocks**"
		case g.Waived:
			blocks = "waived"
		}
		reason := md(g.Reason.First)
		if g.VerdictNote != "" {
			if reason != "" {
				reason += "<br>"
			}
			reason += "verdict: " + md(g.VerdictNote)
		}
		if g.Reason.Full != "" {
			long = append(long, g)
		}
		m.printf("| %s | %s | %s | %s | %s | %s | %s |\n", name, md(g.Status), blocks, md(g.Duration), md(g.Owner), reason, md(g.Needs))
	}
	m.printf("\n")
	for _, g := range long {
		var lines []string
		for l := range strings.SplitSeq(g.Reason.Full, "\n") {
			lines = append(lines, md(l))
		}
		m.printf("<details><summary>%s: full reason</summary>\n\n%s\n\n</details>\n\n", md(g.Gate), strings.Join(lines, "<br>\n"))
	}

	m.printf("## Waivers\n\n")
	if len(rv.Waivers) == 0 {
		m.printf("No waiver applies.\n\n")
	} else {
		m.printf("| Gate | Owner | Reason | Ticket | Expires | State |\n|---|---|---|---|---|---|\n")
		for _, wv := range rv.Waivers {
			state := "in force"
			if wv.Expired {
				state = "**EXPIRED**: the gate blocks"
			}
			m.printf("| %s | %s | %s | %s | %s | %s |\n", md(wv.Gate), md(wv.Owner), md(wv.Reason), md(wv.Ticket), md(wv.Expires), state)
		}
		m.printf("\n")
	}

	m.printf("## Measurements\n\n")
	if len(rv.Measured) == 0 {
		m.printf("No gate recorded measurements.\n\n")
	}
	for _, mg := range rv.Measured {
		m.printf("### %s\n\n| Measurement | Unit | Method | Reps | Mean | Stddev | Min | Max | Budget | Within budget | Mean, by unit |\n|---|---|---|--:|--:|--:|--:|--:|---|---|---|\n", md(mg.Gate))
		for _, r := range mg.Rows {
			within := md(r.Within)
			if r.Class == "bad" {
				within = "**" + within + "**"
			}
			m.printf("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", md(r.Name), md(r.Unit), md(r.Method), r.Reps,
				r.Mean, r.Stddev, r.Min, r.Max, md(r.Budget), within, r.Bar)
		}
		m.printf("\n")
		if len(mg.Series) > 0 {
			m.printf("| Series | Values | Min | Mean | Max | Budget | Trend |\n|---|--:|--:|--:|--:|---|---|\n")
			for _, c := range mg.Series {
				m.printf("| %s (%s) | %d | %s | %s | %s | %s | %s |\n", md(c.Name), md(c.Unit), c.N, c.Min, c.Mean, c.Max, md(c.Budget), c.Spark)
			}
			m.printf("\n")
		}
	}

	m.printf("## Artifacts\n\n| Artifact | Size | sha256 |\n|---|--:|---|\n")
	for _, a := range rv.Artifacts {
		m.printf("| %s | %s | %s |\n", mdPath(a), a.Size, mdCode(a.SHA256))
	}
	m.printf("\nSigned statements the verdict was computed from:\n\n| Statement | sha256 |\n|---|---|\n")
	for _, a := range rv.Statements {
		m.printf("| %s | %s |\n", mdPath(a), mdCode(a.SHA256))
	}
	m.printf("\nPaths are relative to the bundle directory. This report is derived from the bundle and is not part of the evidence; `rustynet-gate verify` checks the evidence itself.\n")
}
