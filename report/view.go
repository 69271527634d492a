package report

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/machine"
	"github.com/rustynet/rustynet/policies"
)

// reasonMax is how many characters of a gate's reason a report shows.
const reasonMax = 4000

// view is the content both formats show, computed once.
type view struct {
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
	Checks         []checkView // what the gates checked, from their details
	Measured       []measuredGate
	SLOs           []sloRow    // the slo gate's SLOs, when it ran
	Drills         []drillView // the incident gate's drills, when it ran
	DRDrills       []drillView // the dr gate's drills, when it ran
	Artifacts      []artifactView
	Statements     []artifactView
	Notes          []string
	// The launch checklist, when the channel requires sign-offs.
	Checklist []checklistRow
	Signoffs  []signoffView
	Required  string // the roles the channel requires, joined
	Awaiting  string // the roles whose sign-off is missing, joined
}

type checklistRow struct {
	Role, Item, What string
	Evidence         string // "gate field, want W" for an automated item
	Observed         string
	Met              bool
	Manual           bool
	SignedBy         string // "name at time", joined
}

type signoffView struct {
	Role, Signer, KeyID, Time, Note, File string
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
	Status      evidence.Status
	Class       string // good, bad or warnc: how the status reads
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
	Series []seriesView
}

type measView struct {
	Name, Unit, Method string
	Reps               int
	Mean, Stddev       string
	Min, Max           string
	Budget             string
	Within             string // yes, NO, or empty without a budget
	Class              string // good or bad: how Within reads
	Bar                string // a text bar for Markdown, within the unit's group
}

// seriesView is a measurement with enough values to chart them in order.
type seriesView struct {
	Name, Unit, Caption string
	Budget              string
	N                   int
	Min, Mean, Max      string
	Chart               lineChart
	Spark               string // a sparkline for Markdown
}

type artifactView struct {
	Path   string
	Link   bool
	Size   string
	SHA256 string
}

// waiver is the waiver a gate's verdict names: the one in force, or else
// one that expired (expired true).
func waiver(g gates.GateVerdict) (w *policies.Waiver, expired bool) {
	if g.Waiver == nil && g.Expired != nil {
		return g.Expired, true
	}
	return g.Waiver, false
}

func buildView(in *Input) (*view, error) {
	if in == nil || in.Evidence == nil {
		return nil, errors.New("report: no verified bundle")
	}
	if in.Verdict == nil {
		return nil, errors.New("report: no verdict")
	}
	v, verdict := in.Evidence, in.Verdict
	m := &v.Manifest
	results := in.Results
	if results == nil {
		results = map[string]evidence.GateResult{}
		for name, gs := range v.Gates {
			results[name] = gs.Result
		}
	}
	rv := &view{
		Passed:         verdict.Passed,
		Verdict:        "BLOCKED",
		Commit:         m.Commit,
		Channel:        orElse(verdict.Channel, m.Channel),
		At:             fmtTime(verdict.At),
		Created:        fmtTime(m.Created),
		KeyID:          v.KeyID,
		DevelopmentKey: m.DevelopmentKey,
		Dirty:          m.Dirty,
	}
	switch {
	case verdict.AwaitingSignoff():
		rv.Verdict = "AWAITING SIGN-OFF"
	case verdict.Passed:
		rv.Verdict = "PASSED"
	}
	rv.Required, rv.Awaiting = strings.Join(verdict.Required, ", "), strings.Join(verdict.Awaiting, ", ")
	for _, s := range verdict.Signed {
		p := s.Predicate
		rv.Signoffs = append(rv.Signoffs, signoffView{Role: p.Role, Signer: p.Signer, KeyID: p.KeyID, Time: fmtTime(p.Time), Note: p.Note, File: s.File})
	}
	for _, st := range in.Checklist {
		row := checklistRow{Role: st.Role, Item: st.Item.ID.Value, What: st.Item.What.Value, Observed: st.Observed, Met: st.Met, Manual: st.Item.Manual}
		if !st.Item.Manual {
			row.Evidence = fmt.Sprintf("%s %s, want %s", st.Item.Gate.Value, st.Item.Field.Value, st.Item.Want.Value)
		}
		var by []string
		for _, p := range st.SignedBy {
			by = append(by, fmt.Sprintf("%s at %s", p.Signer, fmtTime(p.Time)))
		}
		row.SignedBy = strings.Join(by, "; ")
		rv.Checklist = append(rv.Checklist, row)
	}
	if verdict.Partial() {
		rv.Verdict += " (partial run)"
	}
	if verdict.WhatIf() {
		rv.Verdict += " as of " + fmtTime(verdict.EffectiveTime)
	}
	if m.KeyID != "" && m.KeyID != rv.KeyID {
		rv.ManifestKeyID = m.KeyID
	}
	rv.Recorded, rv.RecordedDiffer = recorded(v, verdict.Passed)
	rv.WhyLead, rv.Why = why(verdict, results, rv.Channel)

	// Gates: the required ones in policy order, then any other that ran.
	order := make([]string, 0, len(results)+len(verdict.Gates))
	required := map[string]gates.GateVerdict{}
	for _, g := range verdict.Gates {
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
			gv.Waived = rg.Waiver != nil && rg.Status != evidence.StatusPass
			if rg.Reason != "" && rg.Reason != string(rg.Status) {
				gv.VerdictNote = rg.Reason
			}
		}
		gv.Class = statusClass(gv.Status, gv.Waived)
		if ran {
			gv.Duration = fmtSeconds(r.DurationSeconds)
		}
		gv.Reason = shorten(r.Reason)
		rv.Gates = append(rv.Gates, gv)
		if w, expired := waiver(rg); isReq && w != nil {
			rv.Waivers = append(rv.Waivers, waiverView{Gate: name, Owner: w.Owner.Value, Reason: w.Reason.Value,
				Ticket: w.Ticket.Value, Expires: fmtDate(w.Expires.Time), Expired: expired})
		}
	}
	// The gates that ran first: what did not run says nothing of the
	// commit, and a reader looks for what did. Each group keeps the order
	// above.
	slices.SortStableFunc(rv.Gates, func(a, b gateView) int {
		return cmp.Compare(didNotRun(a.Status), didNotRun(b.Status))
	})

	rv.Policy = artifactView{Path: m.Policy, Link: evidence.ValidPath(m.Policy), SHA256: m.PolicySHA}
	rv.Machines = machines(order, results)
	for _, s := range v.Subjects {
		sv := subjectView{Name: s.Name}
		for _, alg := range slices.Sorted(maps.Keys(s.Digest)) {
			sv.Digests = append(sv.Digests, alg+":"+s.Digest[alg])
		}
		rv.Subjects = append(rv.Subjects, sv)
	}

	var notes []string
	rv.Checks, notes = checkViews(order, results)
	rv.Notes = append(rv.Notes, notes...)
	var err error
	if rv.SLOs, err = sloRows(results); err != nil {
		rv.Notes = append(rv.Notes, err.Error())
	}
	if rv.Drills, err = drillViews(results); err != nil {
		rv.Notes = append(rv.Notes, err.Error())
	}
	if rv.DRDrills, err = drDrillViews(results); err != nil {
		rv.Notes = append(rv.Notes, err.Error())
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
				ms := make([]evidence.Measurement, len(chunk))
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
			if s, ok := newSeries(ms); ok {
				mg.Series = append(mg.Series, s)
				series++
			}
		}
		rv.Measured = append(rv.Measured, mg)
	}
	if skipped > 0 {
		rv.Notes = append(rv.Notes, fmt.Sprintf("%d more series are not charted: a report charts at most %d. Their values are in each gate's %s.",
			skipped, maxSeriesCharts, evidence.ResultFile))
	}

	for i, a := range m.Artifacts {
		av := artifactView{Path: a.Path, Link: evidence.ValidPath(a.Path), SHA256: a.SHA256}
		if i < len(m.Sizes) {
			av.Size = fmtBytes(m.Sizes[i])
		}
		rv.Artifacts = append(rv.Artifacts, av)
	}
	for _, in := range v.Verdict.GetInputAttestations() {
		rv.Statements = append(rv.Statements, artifactView{Path: in.GetUri(), Link: evidence.ValidPath(in.GetUri()), SHA256: in.GetDigest()["sha256"]})
	}
	return rv, nil
}

// newSeries is a measurement's values charted in order, with what the
// chart's caption and the Markdown table say of them.
func newSeries(m evidence.Measurement) (seriesView, bool) {
	c, ok := newLineChart(m)
	if !ok {
		return seriesView{}, false
	}
	s := seriesView{Name: m.Name, Unit: m.Unit, N: len(m.Values), Min: fmtNum(slices.Min(m.Values)), Mean: fmtNum(m.Mean),
		Max: fmtNum(slices.Max(m.Values)), Chart: c, Spark: sparkline(m.Values)}
	if b := m.Budget; b != nil && (b.Max != nil || b.Min != nil) {
		s.Budget = fmtBudget(b, m.Unit)
	}
	s.Caption = fmt.Sprintf("%d values, min %s, mean %s, max %s", s.N, s.Min, s.Mean, s.Max)
	if m.Unit != "" {
		s.Caption += " " + m.Unit
	}
	return s, true
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// recorded says what the signed verdict says, and whether it differs
// from the recomputed one.
func recorded(v *evidence.Verified, passed bool) (string, bool) {
	if v.Verdict == nil {
		return "none recorded", false
	}
	res := v.Verdict.GetVerificationResult()
	s := res
	if t := v.Verdict.GetTimeVerified(); t != nil {
		s += ", signed " + fmtTime(t.AsTime())
	}
	return s, (res == evidence.Passed) != passed
}

// why explains the verdict: a lead sentence and the gates it rests on.
func why(verdict *gates.Verdict, results map[string]evidence.GateResult, channel string) (string, []string) {
	lead, items := whyVerdict(verdict, results, channel)
	if verdict.WhatIf() {
		lead = fmt.Sprintf("A what-if run, judged as of %s (--effective-time): what would block then, with this tree as it is. It is not a verdict on the commit today and cannot be published. ", fmtTime(verdict.EffectiveTime)) + lead
	}
	return lead, items
}

func whyVerdict(verdict *gates.Verdict, results map[string]evidence.GateResult, channel string) (string, []string) {
	var blocking, waived []string
	for _, g := range verdict.Gates {
		w, expired := waiver(g)
		switch {
		case g.Blocking:
			s := g.Gate + " (" + string(g.Status) + ")"
			if r := firstLine(results[g.Gate].Reason, 200); r != "" {
				s += ": " + r
			} else if g.Reason != "" && g.Reason != string(g.Status) {
				s += ": " + firstLine(g.Reason, 200)
			}
			if w != nil && expired {
				s += fmt.Sprintf("; the waiver by %s (%s) expired on %s", w.Owner.Value, w.Ticket.Value, fmtDate(w.Expires.Time))
			}
			blocking = append(blocking, s)
		case g.Status != evidence.StatusPass && w != nil && !expired:
			waived = append(waived, fmt.Sprintf("%s (%s), waived by %s until %s (%s): %s", g.Gate, g.Status,
				w.Owner.Value, fmtDate(w.Expires.Time), w.Ticket.Value, firstLine(w.Reason.Value, 200)))
		}
	}
	if verdict.Partial() {
		var out []string
		for _, g := range verdict.Gates {
			if g.Status == gates.StatusOutOfScope {
				out = append(out, g.Gate)
			}
		}
		lead := fmt.Sprintf("A partial run of %s: it is not a verdict on the %s channel and cannot be published as one.", strings.Join(verdict.Scope, ", "), channel)
		if len(out) > 0 {
			lead += fmt.Sprintf(" The channel also requires %s, which did not run.", strings.Join(out, ", "))
		}
		switch {
		case verdict.Passed && len(waived) == 0:
			return lead + " Every gate in the run passed.", nil
		case verdict.Passed:
			return lead + " Every gate in the run passed or carries a waiver in force:", waived
		}
		return lead + " Gates of the run that block:", blocking
	}
	n := len(verdict.Gates)
	if verdict.AwaitingSignoff() {
		lead := fmt.Sprintf("Every gate the %s channel requires passed", channel)
		if len(waived) > 0 {
			lead += " or carries a waiver in force"
		}
		return lead + fmt.Sprintf("; the channel also requires the sign-off of %s, and awaits %s (see the launch checklist).",
			strings.Join(verdict.Required, ", "), strings.Join(verdict.Awaiting, ", ")), waived
	}
	switch {
	case verdict.Passed && n == 0:
		return fmt.Sprintf("The %s channel requires no gates.", channel), nil
	case verdict.Passed && len(waived) == 0 && len(verdict.Signed) > 0:
		return fmt.Sprintf("All %d gates the %s channel requires passed, and %s signed it off.", n, channel, strings.Join(verdict.Required, ", ")), nil
	case verdict.Passed && len(waived) == 0:
		return fmt.Sprintf("All %d gates the %s channel requires passed.", n, channel), nil
	case verdict.Passed:
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

func machines(order []string, results map[string]evidence.GateResult) []machineView {
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

// didNotRun is 1 for the statuses of a gate that did not run (for want of
// a need, not at all, or outside a partial run), 0 for the others.
func didNotRun(s evidence.Status) int {
	switch s {
	case evidence.StatusNotRun, evidence.StatusMissing, evidence.StatusOutOfScope:
		return 1
	}
	return 0
}

func statusClass(status evidence.Status, waived bool) string {
	switch {
	case status == evidence.StatusPass:
		return "good"
	case waived, status == evidence.StatusNotRun, status == evidence.StatusOutOfScope:
		return "warnc"
	}
	return "bad"
}

func measRow(ms evidence.Measurement) measView {
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
func within(ms evidence.Measurement) bool {
	b := ms.Budget
	return b == nil || (b.Max == nil || ms.Mean <= *b.Max) && (b.Min == nil || ms.Mean >= *b.Min)
}

func fmtBudget(b *evidence.Budget, unit string) string {
	var parts []string
	if b.Min != nil {
		parts = append(parts, "≥ "+fmtExact(*b.Min))
	}
	if b.Max != nil {
		parts = append(parts, "≤ "+fmtExact(*b.Max))
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
func byUnit(ms []evidence.Measurement) [][]int {
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

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func shorten(s string) reasonView {
	s = strings.TrimSpace(s)
	full := s
	if utf8.RuneCountInString(full) > reasonMax {
		r := []rune(full)
		full = string(r[:reasonMax]) + fmt.Sprintf("… (%d more characters in %s)", len(r)-reasonMax, evidence.ResultFile)
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

// fmtNum writes a measured figure to three significant digits, as much as
// one run's figure carries, without dropping a digit of its whole part
// (1234.5 is 1235, not 1.23e+03): a whole number as it is, an exponent only
// below 0.0001 and from 10^15.
func fmtNum(f float64) string {
	a := math.Abs(f)
	switch {
	case math.Trunc(f) == f && a < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case !finite(f), a < 1e-4, a >= 1e15:
		return strconv.FormatFloat(f, 'g', 3, 64)
	case a >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

// fmtExact writes a figure someone set (a budget's bound, an SLO's
// objective) as it was written: rounding 99.95 to 100 would misstate it.
func fmtExact(f float64) string {
	if a := math.Abs(f); a >= 1e-4 && a < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// fmtTick writes an axis tick: a multiple of a round step, written with
// the digits that tell it from its neighbours (and without the float
// noise of adding steps).
func fmtTick(f float64) string {
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
