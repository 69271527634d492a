// Package agility builds the backend agility report from a run of the
// backend conformance suite: which cases each backend passes, and the
// figures the suite measured (throughput against the raw path, recovery
// times). The report is generated, never edited by hand.
package agility

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/machine"
)

// BackendsPrefix is the import path under which backends live.
const BackendsPrefix = "github.com/rustynet/rustynet/node/backend/"

// event is one line of `go test -json`.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// Metric is one figure the suite logged.
type Metric struct {
	Value float64
	Unit  string
}

// Result is what one backend did in the suite.
type Result struct {
	Backend  string
	Cases    map[string]string // case -> pass, fail or skip
	Metrics  map[string]Metric
	Failures map[string][]string // case -> output of the failed case
	Elapsed  time.Duration
	// Required are the cases the backend must pass: the suite's, less
	// those of a property it does not claim (conformance.CaseNamesFor),
	// which the suite does not run on it. Nil: every case that ran.
	Required []string
}

// Report is the whole run.
type Report struct {
	Results    []*Result
	Properties map[string]string // case -> property
	Order      []string          // cases in the order they ran
	Env        machine.Environment
	Commit     string
	Generated  time.Time
	Command    string
}

var (
	metricRE   = regexp.MustCompile(`conformance-metric (\S+)=(\S+) (.+)$`)
	propertyRE = regexp.MustCompile(`property: (.+)$`)
)

// Parse reads `go test -json` output of the conformance tests.
func Parse(r io.Reader) (*Report, error) {
	rep := &Report{Properties: map[string]string{}}
	byPkg := map[string]*Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // not a test event (build output)
		}
		name, ok := strings.CutPrefix(e.Package, BackendsPrefix)
		if !ok || strings.Contains(name, "/") || name == "conformance" {
			continue
		}
		res := byPkg[name]
		if res == nil {
			res = &Result{Backend: name, Cases: map[string]string{}, Metrics: map[string]Metric{}, Failures: map[string][]string{}}
			byPkg[name] = res
		}
		c, isCase := strings.CutPrefix(e.Test, "TestConformance/")
		if e.Test == "TestConformance" && (e.Action == "pass" || e.Action == "fail") {
			res.Elapsed = time.Duration(e.Elapsed * float64(time.Second))
		}
		if !isCase {
			continue
		}
		top, _, _ := strings.Cut(c, "/")
		switch e.Action {
		case "run":
			if !slices.Contains(rep.Order, top) {
				rep.Order = append(rep.Order, top)
			}
		case "pass", "fail", "skip":
			if top == c || res.Cases[top] == "" {
				res.Cases[top] = e.Action
			}
			if e.Action == "fail" {
				res.Cases[top] = "fail"
			}
		case "output":
			line := strings.TrimRight(e.Output, "\n")
			if m := metricRE.FindStringSubmatch(line); m != nil {
				v, err := strconv.ParseFloat(m[2], 64)
				if err == nil {
					res.Metrics[m[1]] = Metric{v, m[3]}
				}
			} else if m := propertyRE.FindStringSubmatch(line); m != nil {
				rep.Properties[top] = m[1]
			} else if strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "===") && !strings.HasPrefix(strings.TrimSpace(line), "---") {
				res.Failures[top] = append(res.Failures[top], strings.TrimSpace(line))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(byPkg)) {
		res := byPkg[k]
		for c, st := range res.Cases {
			if st != "fail" {
				delete(res.Failures, c)
			}
		}
		rep.Results = append(rep.Results, res)
	}
	// WireGuard, the default, first.
	slices.SortStableFunc(rep.Results, func(a, b *Result) int {
		switch {
		case a.Backend == b.Backend:
			return 0
		case a.Backend == "wireguard":
			return -1
		case b.Backend == "wireguard":
			return 1
		}
		return strings.Compare(a.Backend, b.Backend)
	})
	if len(rep.Results) == 0 {
		return nil, fmt.Errorf("no conformance results in the input")
	}
	return rep, nil
}

// sourcePrefix is the "file.go:LINE: " testing writes before each line a
// test logs.
var sourcePrefix = regexp.MustCompile(`^\S+\.go:\d+: `)

// FailureText is what the failed case c logged, on one line: each line
// without its source position, joined by "; " (empty when c did not fail
// or logged nothing).
func (r *Result) FailureText(c string) string {
	lines := make([]string, 0, len(r.Failures[c]))
	for _, l := range r.Failures[c] {
		lines = append(lines, sourcePrefix.ReplaceAllString(l, ""))
	}
	return strings.Join(lines, "; ")
}

// Passed reports whether the backend passed every case it must (see
// Required; without it, every case in order, the cases that ran).
func (r *Result) Passed(order []string) bool {
	if r.Required != nil {
		order = r.Required
	}
	for _, c := range order {
		if r.Cases[c] != "pass" {
			return false
		}
	}
	return len(order) > 0
}

// claimed reports whether the backend must pass case c.
func (r *Result) claimed(c string) bool {
	return r.Required == nil || slices.Contains(r.Required, c)
}

// ParseBackends reads rustynetd --list-backends: one backend a line, its
// name and then what it claims.
func ParseBackends(out string) ([]string, map[string][]string) {
	var names []string
	claims := map[string][]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		names = append(names, f[0])
		claims[f[0]] = f[1:]
	}
	return names, claims
}

// Markdown writes the report.
func (rep *Report) Markdown(w io.Writer) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Backend agility report\n\n")
	p("Generated from a run of the backend conformance suite (`node/backend/conformance`); do not edit by hand, regenerate with `make agility-report`.\n\n")
	p("- Generated: %s\n", rep.Generated.UTC().Format(time.RFC3339))
	p("- Commit: `%s`\n", rep.Commit)
	p("- Machine: %s\n", rep.Env)
	p("- Command: `%s`\n\n", rep.Command)

	p("## Verdict\n\n")
	p("| backend | suite | time |\n| --- | --- | --- |\n")
	for _, r := range rep.Results {
		verdict := "**fails**"
		switch {
		case r.Passed(rep.Order) && r.Required != nil && len(r.Required) < len(rep.Order):
			verdict = "passes every case it must (the others test a property it does not claim)"
		case r.Passed(rep.Order):
			verdict = "passes every case"
		}
		p("| %s | %s | %.1f s |\n", r.Backend, verdict, r.Elapsed.Seconds())
	}
	p("\nWireGuard is the default. Passing the suite is necessary, not sufficient, for a support claim: a backend also needs its security review (documents/agility/).\n\n")

	p("## Cases\n\n| case | property |")
	for _, r := range rep.Results {
		p(" %s |", r.Backend)
	}
	p("\n| --- | --- |")
	for range rep.Results {
		p(" --- |")
	}
	p("\n")
	for _, c := range rep.Order {
		p("| %s | %s |", c, rep.Properties[c])
		for _, r := range rep.Results {
			st := r.Cases[c]
			switch {
			case st == "" && !r.claimed(c):
				st = "not claimed"
			case st == "":
				st = "not run"
			}
			p(" %s |", st)
		}
		p("\n")
	}

	p("\n## Measured in the same run\n\n")
	names := map[string]bool{}
	for _, r := range rep.Results {
		for k := range r.Metrics {
			names[k] = true
		}
	}
	p("| figure |")
	for _, r := range rep.Results {
		p(" %s |", r.Backend)
	}
	p("\n| --- |")
	for range rep.Results {
		p(" --- |")
	}
	p("\n")
	for _, k := range slices.Sorted(maps.Keys(names)) {
		p("| %s |", k)
		for _, r := range rep.Results {
			if m, ok := r.Metrics[k]; ok {
				p(" %s %s |", strconv.FormatFloat(m.Value, 'g', 4, 64), m.Unit)
			} else {
				p(" - |")
			}
		}
		p("\n")
	}
	p("\nThroughput is TCP over two instances on wireguard-go's userspace netstack device (the gVisor TCP stack bounds it) against TCP over the raw veth path between the same two namespaces, 2 s each, one run; both ends share the machine's cores. Kernel-TUN throughput is in the performance matrix.\n")
	p("\nSet-up (setup_*) is measured in the Replay case through a UDP relay that forwards both ways from the start: the two instances are given each other's key with no endpoint, then the path, and one sends a 200-byte packet at once; the figures run from the moment the path is given to that packet's delivery, and count every datagram the relay carried, both ways. A backend that connects as soon as it is configured and one that shakes hands on the first packet are timed alike, and which side's key is lower does not matter. One run.\n")

	for _, r := range rep.Results {
		if len(r.Failures) == 0 {
			continue
		}
		p("\n## Failures of %s\n\n", r.Backend)
		for _, c := range slices.Sorted(maps.Keys(r.Failures)) {
			p("### %s\n\n```\n%s\n```\n\n", c, strings.Join(r.Failures[c], "\n"))
		}
	}
	return nil
}
