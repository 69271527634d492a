package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/machine"
	"github.com/rustynet/rustynet/policies"
)

const hostile = "<script>alert(1)</script>"

var (
	reportAt  = time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	reportEnv = machine.Environment{CPU: "AMD EPYC 7763 64-Core Processor", Cores: 8, Kernel: "6.8.0-45-generic", GoVersion: "go1.26.0", OS: "linux", Arch: "amd64"}
	subjects  = []evidence.Subject{
		{Name: "git+commit", Digest: map[string]string{"gitCommit": "0123456789abcdef0123456789abcdef01234567"}},
		{Name: "rustynetd", Digest: map[string]string{"sha256": strings.Repeat("ab", 32)}},
	}
)

func ptr(f float64) *float64 { return &f }

func newSigner(t testing.TB, alg string) (*evidence.Signer, *evidence.Verifier) {
	dir := t.TempDir()
	if _, err := evidence.Keygen(dir, alg); err != nil {
		t.Fatal(err)
	}
	s, err := evidence.LoadSigner(filepath.Join(dir, evidence.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := evidence.LoadVerifier(filepath.Join(dir, evidence.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// reportResults are the results of a blocked run: build passed, perf
// failed (an expired waiver, measurements with and without budgets, a
// 50-value series) and unit failed under a waiver in force.
func reportResults() []evidence.GateResult {
	series := make([]float64, 50)
	for i := range series {
		series[i] = 12 + 3*math.Sin(float64(i)/4)
	}
	perf := []evidence.Measurement{
		{Name: "handshake latency", Unit: "ms", Method: "wall clock of 20 handshakes", Values: []float64{40, 42, 44}, Budget: &evidence.Budget{Max: ptr(50), Source: "release.yaml: budgets.handshake"}},
		{Name: "connect latency " + hostile, Unit: "ms", Method: "wall clock", Values: []float64{8, 9, 10, 11}},
		{Name: "throughput", Unit: "Mbit/s", Method: "iperf3, 10 s", Values: []float64{840, 850, 860}, Budget: &evidence.Budget{Min: ptr(900)}},
		{Name: "soak rtt", Unit: "ms", Method: "ping every minute for 50 minutes", Values: series, Budget: &evidence.Budget{Max: ptr(20)}},
	}
	for i := range perf {
		perf[i] = gates.Summarize(perf[i])
	}
	return []evidence.GateResult{
		{Gate: "build", Owner: "release-eng", Status: evidence.StatusPass, DurationSeconds: 41.2, Environment: reportEnv},
		{Gate: "perf", Owner: "perf-team " + hostile, Status: evidence.StatusFail, Reason: "throughput below budget " + hostile + "\nsecond line of the reason",
			DurationSeconds: 3050, Needs: []string{"root", "docker"}, Environment: reportEnv, Measurements: perf},
		{Gate: "unit", Owner: "core", Status: evidence.StatusFail, Reason: "2 tests failed", DurationSeconds: 12.5, Environment: reportEnv},
	}
}

// reportPolicy is the blocked run's policy: perf's waiver expired before
// reportAt, unit's is in force.
const reportPolicy = `version: 1
channels:
  beta:
    gates: [build, perf, unit]
waivers:
  - gate: perf
    owner: bob@example.com
    reason: new NIC
    ticket: PERF-7
    expires: 2026-10-01
  - gate: unit
    owner: alice@example.com
    reason: "flaky on arm64 <script>alert(1)</script>"
    ticket: RN-42
    expires: 2027-01-15
`

// testBundle is what writeBundle writes.
type testBundle struct {
	channel, policy string
	results         []evidence.GateResult
	// resultFiles writes each gate's result as artifacts/GATE/result.json,
	// as gates.Execute does.
	resultFiles bool
	passed      bool
	dev, dirty  bool
}

// writeBundle writes a bundle as gates.Execute does: every gate's result
// (as a result file when b.resultFiles), then its statement (the unit
// gate as a test result), the manifest and the verdict.
func writeBundle(t testing.TB, s *evidence.Signer, b testBundle) string {
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := evidence.NewWriter(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte(b.policy))
	if err != nil {
		t.Fatal(err)
	}
	var gateRefs []evidence.ArtifactRef
	for _, res := range b.results {
		res.Channel, res.Started = b.channel, reportAt.Add(-time.Hour)
		if b.resultFiles {
			raw, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			ref, err := w.WriteArtifact(res.Gate+"/"+evidence.ResultFile, raw)
			if err != nil {
				t.Fatal(err)
			}
			res.Artifacts = append(res.Artifacts, ref)
		}
		var pred any = res
		predType := evidence.PredicateGateResult
		if res.Gate == "unit" {
			predType = evidence.PredicateTestResult
			failed := []string{"pkg.TestB", "pkg.TestC"}
			if res.Status == evidence.StatusPass {
				failed = nil
			}
			if pred, err = evidence.TestResultPredicate(failed == nil, []string{"pkg.TestA"}, failed, "", nil); err != nil {
				t.Fatal(err)
			}
		}
		st, err := evidence.NewStatement(subjects, predType, pred)
		if err != nil {
			t.Fatal(err)
		}
		sref, err := w.SignStatement(res.Gate, st)
		if err != nil {
			t.Fatal(err)
		}
		gateRefs = append(gateRefs, sref)
	}
	commit := subjects[0].Digest["gitCommit"]
	mref, err := w.SignManifest(evidence.Manifest{Commit: commit, Channel: b.channel, Created: reportAt.Add(-time.Hour), Policy: pol.Path,
		PolicySHA: pol.SHA256, DevelopmentKey: b.dev, Dirty: b.dirty})
	if err != nil {
		t.Fatal(err)
	}
	vst, err := evidence.VerdictStatement(evidence.VerdictInput{Subjects: subjects, Commit: commit, Channel: b.channel, Policy: pol, Manifest: mref,
		Gates: gateRefs, Passed: b.passed, At: reportAt, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SignStatement(evidence.VerdictName, vst); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeReportBundle writes the blocked run of reportResults, signed with a
// development key, from a dirty tree.
func writeReportBundle(t testing.TB, s *evidence.Signer) string {
	return writeBundle(t, s, testBundle{channel: "beta", policy: reportPolicy, results: reportResults(), resultFiles: true, dev: true, dirty: true})
}

// reportInput verifies the bundle in dir and judges it by its own policy
// at the time it records, as verify does: the input of the reports run
// writes.
func reportInput(t testing.TB, dir string, v *evidence.Verifier) *Input {
	ver, err := evidence.Verify(dir, v, "")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	pol, err := policies.ParseRelease(ver.Manifest.Policy, ver.Policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]evidence.Status{}
	for name, g := range ver.Gates {
		statuses[name] = g.Result.Status
	}
	channel, _ := evidence.Channel(ver.Verdict)
	verdict, err := gates.Evaluate(pol, channel, statuses, ver.Verdict.GetTimeVerified().AsTime(), nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := Recorded(&gates.Verification{Evidence: ver, Recorded: verdict, Policy: pol, Own: pol})
	if err != nil {
		t.Fatalf("Recorded: %v", err)
	}
	return in
}

// TestInput checks the verdict the blocked bundle is judged to: what the
// other tests' reports show.
func TestInput(t *testing.T) {
	s, v := newSigner(t, evidence.ECDSAP256)
	in := reportInput(t, writeReportBundle(t, s), v)
	g := in.Verdict.Gates
	if in.Verdict.Passed || len(g) != 3 || g[1].Gate != "perf" || !g[1].Blocking || g[1].Expired == nil ||
		g[2].Gate != "unit" || g[2].Blocking || g[2].Waiver == nil {
		t.Fatalf("the blocked bundle's verdict = %+v; want perf blocking under an expired waiver, unit waived", in.Verdict)
	}
	if got := len(in.Results["perf"].Measurements); got != 4 {
		t.Errorf("Recorded: perf has %d measurements, want the result file's 4", got)
	}
}

func isInvalid(err error) bool {
	var ie *evidence.InvalidError
	return errors.As(err, &ie)
}

// TestReportsDeterministic renders the same input again and again: the
// bytes must not change (Check compares them with the files run wrote in
// another process).
func TestReportsDeterministic(t *testing.T) {
	s, v := newSigner(t, evidence.Ed25519)
	in := reportInput(t, writeReportBundle(t, s), v)
	first, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Render(reportInput(t, in.Evidence.Dir, v))
		if err != nil {
			t.Fatal(err)
		}
		for i := range first {
			if !bytes.Equal(first[i].Data, again[i].Data) {
				t.Fatalf("Render rendered %s differently from the same evidence", first[i].Name)
			}
		}
	}
}

// TestCheck forges the reports of a bundle: a report that is not what the
// evidence renders to must be refused; the rendered ones, or none,
// accepted.
func TestCheck(t *testing.T) {
	s, v := newSigner(t, evidence.Ed25519)
	good := writeReportBundle(t, s)
	if names, err := Check(reportInput(t, good, v)); err != nil || len(names) != 0 {
		t.Errorf("Check without reports = %q, %v; want none checked", names, err)
	}
	if err := WriteFiles(reportInput(t, good, v)); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	if names, err := Check(reportInput(t, good, v)); err != nil || !slices.Equal(names, []string{evidence.ReportHTML, evidence.ReportMD}) {
		t.Errorf("Check of the rendered reports = %q, %v; want both checked", names, err)
	}
	for _, c := range []struct {
		what, name string
		change     func([]byte) []byte
	}{
		{"a forged PASSED report.html", evidence.ReportHTML, func([]byte) []byte { return []byte("<!doctype html><h1>PASSED</h1>") }},
		{"report.html with BLOCKED made PASSED", evidence.ReportHTML, func(d []byte) []byte { return bytes.ReplaceAll(d, []byte("BLOCKED"), []byte("PASSED!")) }},
		{"report.md one byte longer", evidence.ReportMD, func(d []byte) []byte { return append(d, '\n') }},
		{"an empty report.md", evidence.ReportMD, func([]byte) []byte { return nil }},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "copy")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, c.name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, c.name), c.change(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Check(reportInput(t, dir, v))
			if !isInvalid(err) || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), "not the report the verified evidence renders to") {
				t.Errorf("Check with %s = %v, want invalid naming %s", c.what, err, c.name)
			}
		})
	}
}

func TestWriteHTML(t *testing.T) {
	s, v := newSigner(t, evidence.ECDSAP256)
	in := reportInput(t, writeReportBundle(t, s), v)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, in); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	out := buf.String()
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("the report does not parse as HTML: %v", err)
	}
	checkSelfContained(t, doc)

	var h1, svgs, budgets, polylines int
	var points string
	walk(doc, func(n *html.Node) {
		switch n.Data {
		case "h1":
			h1++
			if got := text(n); got != "BLOCKED" {
				t.Errorf("<h1> = %q, want BLOCKED", got)
			}
		case "svg":
			svgs++
		case "line":
			if strings.Contains(attr(n, "class"), "budget") {
				budgets++
			}
		case "polyline":
			polylines++
			points = attr(n, "points")
		}
	})
	// Bars for the three measurements in ms (the one in Mbit/s has none to
	// compare with) and a line chart of the series.
	if h1 != 1 || svgs != 2 || budgets != 3 || polylines != 1 {
		t.Errorf("report has %d <h1>, %d <svg>, %d budget lines, %d polylines; want 1, 2, 3, 1",
			h1, svgs, budgets, polylines)
	}
	if n := len(strings.Fields(points)); n != 50 {
		t.Errorf("the series chart has %d points, want 50", n)
	}
	for _, want := range []string{
		"BLOCKED",
		"0123456789abcdef0123456789abcdef01234567", // commit
		"not a release key", "Dirty working tree", "uncommitted changes",
		"AMD EPYC 7763 64-Core Processor", "6.8.0-45-generic", "go1.26.0",
		"policy/release.yaml", in.Evidence.Manifest.PolicySHA,
		"alice@example.com", "2027-01-15", "RN-42", "EXPIRED", "2026-10-01",
		"handshake latency", "≤ 50 ms", "≥ 900 Mbit/s", "release.yaml: budgets.handshake",
		`<a href="artifacts/perf/result.json">`,
		"sha256:" + strings.Repeat("ab", 32),
		"perf (fail): throughput below budget",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(out), "<script") {
		t.Errorf("the HTML report contains a raw <script")
	}
}

func TestWriteMarkdown(t *testing.T) {
	s, v := newSigner(t, evidence.ECDSAP256)
	in := reportInput(t, writeReportBundle(t, s), v)
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, in); err != nil {
		t.Fatalf("WriteMarkdown: %v", err)
	}
	out := buf.String()
	for _, want := range []string{
		"# Rustynet release gate: BLOCKED",
		"| Gate | Status | Blocks | Duration | Owner | Reason | Needs |",
		"| perf | fail | **blocks** | 50m50s |",
		"| unit | fail | waived |",
		"| Measurement | Unit | Method | Reps | Mean | Stddev | Min | Max | Budget | Within budget |",
		"| handshake latency | ms | wall clock of 20 handshakes | 3 | 42 | 2 | 40 | 44 | ≤ 50 ms (release.yaml: budgets.handshake) | yes |",
		"| throughput | Mbit/s | iperf3, 10 s | 3 | 850 | 10 | 840 | 860 | ≥ 900 Mbit/s | **NO** |",
		"| soak rtt (ms) | 50 |",
		"development key: not a release key",
		"| alice@example.com |", "2027-01-15", "**EXPIRED**",
		"[artifacts/perf/result.json](artifacts/perf/result.json)",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the Markdown report lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(out), "<script") {
		t.Errorf("the Markdown report contains a raw <script")
	}
}

func TestReportPassed(t *testing.T) {
	s, v := newSigner(t, evidence.ECDSAP256)
	dir := writeBundle(t, s, testBundle{channel: "nightly", policy: "version: 1\nchannels:\n  nightly:\n    gates: [build, unit]\n", passed: true,
		results: []evidence.GateResult{{Gate: "build", Status: evidence.StatusPass}, {Gate: "unit", Status: evidence.StatusPass}}})
	ver, err := evidence.Verify(dir, v, "")
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Evidence: ver, Verdict: &gates.Verdict{Passed: true, Channel: "nightly", At: reportAt,
		Gates: []gates.GateVerdict{{Gate: "build", Status: evidence.StatusPass}, {Gate: "unit", Status: evidence.StatusPass}}}}
	var h, m bytes.Buffer
	if err := WriteHTML(&h, in); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&m, in); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{h.String(), m.String()} {
		if !strings.Contains(out, "PASSED") || !strings.Contains(out, "All 2 gates the nightly channel requires passed.") ||
			strings.Contains(out, "BLOCKED") || strings.Contains(out, "not a release key") {
			t.Errorf("the report of a passed, release-signed bundle reads:\n%s", out)
		}
	}
}

// TestReportSize renders thousands of measurements and long series: the
// report stays a few megabytes and charts a bounded number of points.
func TestReportSize(t *testing.T) {
	var ms []evidence.Measurement
	for i := range 3000 {
		m := evidence.Measurement{Name: fmt.Sprintf("m%04d", i), Unit: []string{"ms", "MB", "count"}[i%3], Values: []float64{float64(i), float64(i + 1)}}
		if i%20 == 0 {
			m.Values = make([]float64, 10000)
			for j := range m.Values {
				m.Values[j] = float64(j % 97)
			}
		}
		if i%7 == 0 {
			m.Budget = &evidence.Budget{Max: ptr(1500)}
		}
		ms = append(ms, gates.Summarize(m))
	}
	in := fakeInput("perf", "fail", ms)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, in); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if buf.Len() > 8<<20 {
		t.Errorf("the report of 3000 measurements is %d bytes, want at most 8 MiB", buf.Len())
	}
	if n := strings.Count(out, "<polyline"); n != maxSeriesCharts {
		t.Errorf("the report has %d line charts, want %d", n, maxSeriesCharts)
	}
	if !strings.Contains(out, "50 more series are not charted") {
		t.Error("the report does not say that some series are not charted")
	}
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	walk(doc, func(n *html.Node) {
		if n.Data == "polyline" {
			if k := len(strings.Fields(attr(n, "points"))); k > 2*seriesBuckets {
				t.Errorf("a line chart has %d points, want at most %d", k, 2*seriesBuckets)
			}
		}
	})
}

// fakeInput is a report input of one gate without a bundle on disk: the
// gate failed, and its waiver, whose every field is reason, expired.
func fakeInput(gate, reason string, ms []evidence.Measurement) *Input {
	commit := subjects[0].Digest["gitCommit"]
	r := evidence.GateResult{Gate: gate, Owner: "o", Status: evidence.StatusFail, Reason: reason, Environment: reportEnv, Measurements: ms}
	s := policies.Str{Value: reason}
	return &Input{
		Evidence: &evidence.Verified{
			Manifest: evidence.Manifest{Commit: commit, Channel: "beta", Policy: "policy/release.yaml", PolicySHA: strings.Repeat("0", 64),
				Artifacts: []evidence.ArtifactRef{{Path: "artifacts/" + gate + "/result.json", SHA256: strings.Repeat("1", 64)}}, Sizes: []int64{10}},
			Subjects: subjects,
			Gates:    map[string]*evidence.GateStatement{gate: {Name: gate, Result: r}},
		},
		Results: map[string]evidence.GateResult{gate: r},
		Verdict: &gates.Verdict{Channel: "beta", At: reportAt,
			Gates: []gates.GateVerdict{{Gate: gate, Status: evidence.StatusFail, Blocking: true, Reason: reason,
				Expired: &policies.Waiver{Gate: policies.Str{Value: gate}, Owner: s, Reason: s, Ticket: s}}}},
	}
}

// FuzzWriteHTML puts arbitrary strings in reasons, owners and measurement
// names and units, and arbitrary figures in measurements: WriteHTML must
// not fail or panic, and must never emit a raw <script.
func FuzzWriteHTML(f *testing.F) {
	f.Add(hostile, "latency", "ms", 1.5)
	f.Add("</title><script>x</script>", "<svg onload=alert(1)>", `"><script>`, math.NaN())
	f.Add("a\nb\r\n<SCRIPT SRC=//x>", "]]><![CDATA[", "javascript:alert(1)", math.Inf(-1))
	f.Add("\xff\xfe<scr\x00ipt>", "{{.}}", "<!--", -1e308)
	f.Fuzz(func(t *testing.T, reason, name, unit string, x float64) {
		vals := make([]float64, 12)
		for i := range vals {
			vals[i] = x * float64(i)
		}
		ms := []evidence.Measurement{
			{Name: name, Unit: unit, Method: reason, Values: vals, Mean: x, Stddev: x, Min: x, Max: x, Repetitions: 12, Budget: &evidence.Budget{Max: &x, Source: reason}},
			{Name: reason, Unit: unit, Mean: -x, Stddev: x, Budget: &evidence.Budget{Min: &x}},
		}
		in := fakeInput("g", reason, ms)
		in.Verdict.Gates = append(in.Verdict.Gates, gates.GateVerdict{Gate: name, Status: evidence.Status(reason), Reason: reason})
		var h, m bytes.Buffer
		if err := WriteHTML(&h, in); err != nil {
			t.Fatalf("WriteHTML: %v", err)
		}
		if i := strings.Index(strings.ToLower(h.String()), "<script"); i >= 0 {
			t.Fatalf("WriteHTML emitted a raw <script: %q", h.String()[max(0, i-40):min(h.Len(), i+40)])
		}
		if err := WriteMarkdown(&m, in); err != nil {
			t.Fatalf("WriteMarkdown: %v", err)
		}
		if strings.Contains(strings.ToLower(m.String()), "<script") {
			t.Fatalf("WriteMarkdown emitted a raw <script")
		}
	})
}

// checkSelfContained fails on anything a browser would fetch or run.
func checkSelfContained(t *testing.T, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		switch n.Data {
		case "script", "link", "img", "iframe", "object", "embed", "image", "use":
			t.Errorf("the report has a <%s> element", n.Data)
		}
		for _, a := range n.Attr {
			k, val := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
			if k == "src" || k == "href" || k == "xlink:href" {
				if strings.HasPrefix(val, "http") || strings.HasPrefix(val, "//") || strings.Contains(val, ":") {
					t.Errorf("<%s %s=%q> refers outside the bundle", n.Data, a.Key, a.Val)
				}
			}
			if strings.HasPrefix(k, "on") {
				t.Errorf("<%s> has an event handler %s", n.Data, a.Key)
			}
		}
	})
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var sb strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			sb.WriteString(c.Data)
		}
	})
	return strings.TrimSpace(sb.String())
}
