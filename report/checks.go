package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/rustynet/rustynet/evidence"
)

// What the gates checked, read from the details they signed
// (gates/cryptopolicy, gates/architecture, gates/conformance) and, for
// perf-budget, from its measurements: a passing gate shows what it held
// the release to, not only that it passed. The report reads only what it
// shows, as it does for the operations gates (operations.go).
const (
	cryptoGate       = "crypto-policy"
	architectureGate = "architecture"
	conformanceGate  = "conformance"
	perfBudgetGate   = "perf-budget"
)

// checkView is what one gate checked: a sentence and a table.
type checkView struct {
	Gate    string
	Summary string
	Head    []string
	Rows    [][]cell
	// Notes are lines under the table (a perf-budget's targets missed).
	Notes []string
}

// cell is a table cell; Class colours it (good, bad, warnc), Num aligns it
// right, Code sets it as code.
type cell struct {
	Text  string
	Class string
	Num   bool
	Code  bool
}

// checkViews reads what the gates in order checked, for the gates whose
// details the report knows; a gate's details that do not decode are a
// note, not a failure to render.
func checkViews(order []string, results map[string]evidence.GateResult) ([]checkView, []string) {
	var out []checkView
	var notes []string
	for _, name := range order {
		var (
			cv  checkView
			ok  bool
			err error
		)
		switch name {
		case cryptoGate:
			cv, ok, err = cryptoChecks(results)
		case architectureGate:
			cv, ok, err = architectureChecks(results)
		case conformanceGate:
			cv, ok, err = conformanceChecks(results)
		case perfBudgetGate:
			cv, ok, err = perfBudgetChecks(results)
		}
		if err != nil {
			notes = append(notes, err.Error())
		}
		if ok {
			cv.Gate = name
			out = append(out, cv)
		}
	}
	return out, notes
}

func okCell(ok bool, yes, no string) cell {
	if ok {
		return cell{Text: yes, Class: "good"}
	}
	return cell{Text: no, Class: "bad"}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// cryptoChecks lists the crypto-policy gate's findings.
func cryptoChecks(results map[string]evidence.GateResult) (checkView, bool, error) {
	var findings []struct {
		Check  string `json:"check"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	}
	if ok, err := readDetails(results, cryptoGate, &findings); !ok {
		return checkView{}, false, err
	}
	cv := checkView{Head: []string{"Check", "Result", "Finding"}}
	failed := 0
	for _, f := range findings {
		if !f.OK {
			failed++
		}
		cv.Rows = append(cv.Rows, []cell{{Text: f.Check, Code: true}, okCell(f.OK, "ok", "FAILS"), {Text: f.Detail}})
	}
	cv.Summary = fmt.Sprintf("%s against policies/crypto.yaml (the crypto packages the shipped binaries link, the insecure modes, the built controller's and node's TLS, the QUIC backend's key-exchange pin)", plural(len(findings), "finding", "findings"))
	if failed == 0 {
		cv.Summary += "; each as the policy requires."
	} else {
		cv.Summary += fmt.Sprintf("; %d against it.", failed)
	}
	return cv, true, nil
}

// architectureChecks lists the architecture gate's rules and what broke
// each.
func architectureChecks(results map[string]evidence.GateResult) (checkView, bool, error) {
	var d struct {
		Packages   int      `json:"packages_checked"`
		Rules      []string `json:"rules"`
		Violations []string `json:"violations"`
	}
	if ok, err := readDetails(results, architectureGate, &d); !ok {
		return checkView{}, false, err
	}
	cv := checkView{Head: []string{"Dependency rule", "Result"}}
	for _, rule := range d.Rules {
		// A violation names its rule in parentheses (arch.Violation).
		var broken []string
		for _, v := range d.Violations {
			if strings.Contains(v, "("+rule+")") {
				broken = append(broken, v)
			}
		}
		c := okCell(len(broken) == 0, "holds", plural(len(broken), "violation", "violations")+": "+strings.Join(broken, "; "))
		cv.Rows = append(cv.Rows, []cell{{Text: rule}, c})
	}
	cv.Summary = fmt.Sprintf("%s of the module checked against %s on its import graph (go list)", plural(d.Packages, "package", "packages"), plural(len(d.Rules), "rule", "rules"))
	if len(d.Violations) == 0 {
		cv.Summary += "; no violation."
	} else {
		cv.Summary += fmt.Sprintf("; %s.", plural(len(d.Violations), "violation", "violations"))
	}
	return cv, true, nil
}

// conformanceChecks lists the suite's cases by backend: what each backend
// had to pass (every case, and the preshared-key ones of a backend that
// claims them) and what it did.
func conformanceChecks(results map[string]evidence.GateResult) (checkView, bool, error) {
	r, ok := results[conformanceGate]
	if !ok || len(r.Details) == 0 {
		return checkView{}, false, nil
	}
	var d struct {
		Backends []string            `json:"registered_backends"`
		Claims   map[string][]string `json:"claims"`
		Cases    map[string][]string `json:"cases"`
		Problems []string            `json:"problems"`
	}
	// The details also hold each backend's case statuses under its name.
	var statuses map[string]any
	if _, err := readDetails(results, conformanceGate, &d); err != nil {
		return checkView{}, false, err
	}
	if _, err := readDetails(results, conformanceGate, &statuses); err != nil {
		return checkView{}, false, err
	}
	if len(d.Backends) == 0 {
		return checkView{}, false, nil
	}
	var cases []string // in the suite's order, as the backends list them
	for _, b := range d.Backends {
		for _, c := range d.Cases[b] {
			if !slices.Contains(cases, c) {
				cases = append(cases, c)
			}
		}
	}
	cv := checkView{Head: append([]string{"Case"}, d.Backends...)}
	passed := map[string]int{}
	for _, c := range cases {
		row := []cell{{Text: c}}
		for _, b := range d.Backends {
			got, _ := statuses[b].(map[string]any)
			st, _ := got[c].(string)
			switch {
			case !slices.Contains(d.Cases[b], c):
				row = append(row, cell{Text: "not claimed"})
			case st == "pass":
				passed[b]++
				row = append(row, cell{Text: "pass", Class: "good"})
			case st == "":
				row = append(row, cell{Text: "NOT RUN", Class: "bad"})
			default:
				row = append(row, cell{Text: strings.ToUpper(st), Class: "bad"})
			}
		}
		cv.Rows = append(cv.Rows, row)
	}
	var each []string
	for _, b := range d.Backends {
		s := fmt.Sprintf("%s passed %d of the %d cases it must", b, passed[b], len(d.Cases[b]))
		if cl := d.Claims[b]; len(cl) > 0 {
			s += " (it claims " + strings.Join(cl, ", ") + ")"
		}
		each = append(each, s)
	}
	cv.Summary = fmt.Sprintf("The backend conformance suite on every backend the built rustynetd registers: %s.", strings.Join(each, "; "))
	cv.Notes = d.Problems
	return cv, true, nil
}

// perfBudgetChecks lists every figure the perf-budget gate held to a
// budget, with its margin, the tightest first, and the targets it missed
// (reported, not blocking).
func perfBudgetChecks(results map[string]evidence.GateResult) (checkView, bool, error) {
	r, ok := results[perfBudgetGate]
	if !ok {
		return checkView{}, false, nil
	}
	var d struct {
		Matrix  string   `json:"matrix"`
		Cells   int      `json:"cells"`
		Missed  []string `json:"targets_missed"`
		Problem []string `json:"problems"`
	}
	if _, err := readDetails(results, perfBudgetGate, &d); err != nil {
		return checkView{}, false, err
	}
	type row struct {
		m      evidence.Measurement
		margin float64 // in % of the bound; NaN when a bound is 0
		text   string
	}
	var rows []row
	for _, m := range r.Measurements {
		if b := m.Budget; b == nil || b.Max == nil && b.Min == nil {
			continue
		}
		pc, text := margin(m)
		rows = append(rows, row{m, pc, text})
	}
	if len(rows) == 0 && d.Matrix == "" {
		return checkView{}, false, nil
	}
	// The tightest first: those are what a regression reaches first.
	slices.SortStableFunc(rows, func(a, b row) int {
		x, y := a.margin, b.margin
		switch {
		case math.IsNaN(x) && math.IsNaN(y):
			return 0
		case math.IsNaN(x):
			return 1
		case math.IsNaN(y):
			return -1
		}
		return cmp.Compare(x, y)
	})
	cv := checkView{Head: []string{"Measurement", "Mean", "Budget", "Within", "Margin"}}
	n := 0 // within their budget
	for _, x := range rows {
		in := within(x.m)
		mc := cell{Text: x.text, Num: true}
		if in {
			n++
		} else {
			mc.Class = "bad"
		}
		cv.Rows = append(cv.Rows, []cell{
			{Text: x.m.Name},
			{Text: fmtNum(x.m.Mean) + " " + x.m.Unit, Num: true},
			{Text: fmtBudget(x.m.Budget, x.m.Unit)},
			okCell(in, "yes", "NO"),
			mc,
		})
	}
	cv.Summary = fmt.Sprintf("%s held to a budget of policies/budgets.yaml", plural(len(rows), "figure", "figures"))
	if d.Matrix != "" {
		cv.Summary += fmt.Sprintf(" (matrix %s, %s)", d.Matrix, plural(d.Cells, "cell", "cells"))
	}
	if n == len(rows) {
		cv.Summary += "; every one within it. "
	} else {
		cv.Summary += fmt.Sprintf("; %d outside it. ", len(rows)-n)
	}
	cv.Summary += "The margin is how far the mean is inside its bound, in % of the bound (negative: outside), the tightest first."
	for _, s := range d.Missed {
		cv.Notes = append(cv.Notes, "target missed (reported, not blocking): "+s)
	}
	return cv, true, nil
}

// margin is how far m's mean is inside its budget, in % of the bound,
// negative outside it; with two bounds, the nearer. A bound of 0 has no
// percentage: its margin is written in the unit, and the percentage is
// NaN.
func margin(m evidence.Measurement) (float64, string) {
	best, text := math.Inf(1), ""
	abs := math.Inf(1)
	consider := func(inside, bound float64) {
		if bound == 0 {
			if math.IsInf(best, 1) && inside < abs {
				abs = inside
				text = fmtNum(inside) + " " + m.Unit
			}
			return
		}
		pc := inside / math.Abs(bound) * 100
		if pc < best {
			best, text = pc, fmtNum(pc)+"%"
		}
	}
	if b := m.Budget.Max; b != nil {
		consider(*b-m.Mean, *b)
	}
	if b := m.Budget.Min; b != nil {
		consider(m.Mean-*b, *b)
	}
	if math.IsInf(best, 1) {
		return math.NaN(), strings.TrimSpace(text)
	}
	return best, text
}
