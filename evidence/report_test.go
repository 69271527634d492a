package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/rustynet/rustynet/internal/machine"
)

const hostile = "<script>alert(1)</script>"

var (
	reportAt  = time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	reportEnv = machine.Environment{CPU: "AMD EPYC 7763 64-Core Processor", Cores: 8, Kernel: "6.8.0-45-generic", GoVersion: "go1.26.0", OS: "linux", Arch: "amd64"}
)

func ptr(f float64) *float64 { return &f }

// reportResults are the results of a blocked run: build passed, perf
// failed (an expired waiver, measurements with and without budgets, a
// 50-value series) and unit failed under a waiver in force.
func reportResults() []GateResult {
	series := make([]float64, 50)
	for i := range series {
		series[i] = 12 + 3*math.Sin(float64(i)/4)
	}
	perf := []Measurement{
		{Name: "handshake latency", Unit: "ms", Method: "wall clock of 20 handshakes", Values: []float64{40, 42, 44}, Budget: &Budget{Max: ptr(50), Source: "release.yaml: budgets.handshake"}},
		{Name: "connect latency " + hostile, Unit: "ms", Method: "wall clock", Values: []float64{8, 9, 10, 11}},
		{Name: "throughput", Unit: "Mbit/s", Method: "iperf3, 10 s", Values: []float64{840, 850, 860}, Budget: &Budget{Min: ptr(900)}},
		{Name: "soak rtt", Unit: "ms", Method: "ping every minute for 50 minutes", Values: series, Budget: &Budget{Max: ptr(20)}},
	}
	for i := range perf {
		perf[i] = summarize(perf[i])
	}
	return []GateResult{
		{Gate: "build", Owner: "release-eng", Status: StatusPass, DurationSeconds: 41.2, Environment: reportEnv},
		{Gate: "perf", Owner: "perf-team " + hostile, Status: StatusFail, Reason: "throughput below budget " + hostile + "\nsecond line of the reason",
			DurationSeconds: 3050, Needs: []string{"root", "docker"}, Environment: reportEnv, Measurements: perf},
		{Gate: "unit", Owner: "core", Status: StatusFail, Reason: "2 tests failed", DurationSeconds: 12.5, Environment: reportEnv},
	}
}

// summarize is gates.Summarize, which this package cannot import.
func summarize(m Measurement) Measurement {
	m.Repetitions = len(m.Values)
	m.Min, m.Max = m.Values[0], m.Values[0]
	var sum float64
	for _, v := range m.Values {
		sum += v
		m.Min, m.Max = math.Min(m.Min, v), math.Max(m.Max, v)
	}
	m.Mean = sum / float64(len(m.Values))
	var ss float64
	for _, v := range m.Values {
		ss += (v - m.Mean) * (v - m.Mean)
	}
	m.Stddev = math.Sqrt(ss / float64(len(m.Values)-1))
	if m.Budget != nil {
		ok := within(m)
		m.WithinBudget = &ok
	}
	return m
}

// writeReportBundle writes a bundle as gates.Execute does: every gate's
// result as artifacts/GATE/result.json, then its statement (the unit gate
// as a test result), the manifest and the verdict.
func writeReportBundle(t testing.TB, s *Signer) string {
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := NewWriter(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := w.WritePolicy("release.yaml", []byte("version: 1\nchannels:\n  beta:\n    gates: [build, perf, unit]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var gateRefs []ArtifactRef
	for _, res := range reportResults() {
		res.Channel, res.Started = "beta", reportAt.Add(-time.Hour)
		raw, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		ref, err := w.WriteArtifact(res.Gate+"/result.json", raw)
		if err != nil {
			t.Fatal(err)
		}
		res.Artifacts = append(res.Artifacts, ref)
		var pred any = res
		predType := PredicateGateResult
		if res.Gate == "unit" {
			predType = PredicateTestResult
			if pred, err = TestResultPredicate(false, []string{"pkg.TestA"}, []string{"pkg.TestB", "pkg.TestC"}, "", nil); err != nil {
				t.Fatal(err)
			}
		}
		st, err := NewStatement(subjects, predType, pred)
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
	mref, err := w.SignManifest(Manifest{Commit: commit, Channel: "beta", Created: reportAt.Add(-time.Hour), Policy: pol.Path,
		PolicySHA: pol.SHA256, DevelopmentKey: true, Dirty: true})
	if err != nil {
		t.Fatal(err)
	}
	vst, err := VerdictStatement(VerdictInput{Subjects: subjects, Commit: commit, Channel: "beta", Policy: pol, Manifest: mref,
		Gates: gateRefs, Passed: false, At: reportAt, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SignStatement(VerdictName, vst); err != nil {
		t.Fatal(err)
	}
	return dir
}

func blockedGates() []ReportGate {
	return []ReportGate{
		{Gate: "build", Status: StatusPass},
		{Gate: "perf", Status: StatusFail, Blocking: true, Reason: "fail; the waiver by bob@example.com (PERF-7) expired on 2026-10-01",
			Waiver: &ReportWaiver{Owner: "bob@example.com", Reason: "new NIC", Ticket: "PERF-7", Expires: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Expired: true}},
		{Gate: "unit", Status: StatusFail, Reason: "fail, waived by alice@example.com until 2027-01-15 (RN-42): flaky on arm64",
			Waiver: &ReportWaiver{Owner: "alice@example.com", Reason: "flaky on arm64 " + hostile, Ticket: "RN-42", Expires: time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)}},
	}
}

// reportInput verifies the bundle in dir and loads its results.
func reportInput(t *testing.T, dir string, v *Verifier) *ReportInput {
	ver, err := Verify(dir, v, "")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	res, err := LoadResults(ver)
	if err != nil {
		t.Fatalf("LoadResults: %v", err)
	}
	kid, _ := v.KeyID()
	return &ReportInput{Verified: ver, Results: res, Passed: false, Channel: "beta", At: reportAt, Gates: blockedGates(), PublicKeyID: kid}
}

func TestLoadResults(t *testing.T) {
	s, v := newSigner(t, ECDSAP256)
	dir := writeReportBundle(t, s)
	ver, err := Verify(dir, v, "")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	res, err := LoadResults(ver)
	if err != nil {
		t.Fatalf("LoadResults: %v", err)
	}
	if got := len(res["perf"].Measurements); got != 4 {
		t.Errorf("LoadResults: perf has %d measurements, want 4", got)
	}
	// The unit gate's statement is a test result; its result file has the
	// owner and the environment the statement lacks.
	if u := res["unit"]; u.Owner != "core" || u.Environment != reportEnv {
		t.Errorf("LoadResults: unit = %+v, want the result file's owner and environment", u)
	}

	t.Run("changed after verification", func(t *testing.T) {
		p := filepath.Join(dir, ArtifactsDir, "perf", ResultFile)
		data, _ := os.ReadFile(p)
		os.WriteFile(p, bytes.Replace(data, []byte(`"fail"`), []byte(`"pass"`), 1), 0o644)
		if _, err := LoadResults(ver); !isInvalid(err) {
			t.Errorf("LoadResults of a changed result file = %v, want invalid", err)
		}
	})

	t.Run("no result files", func(t *testing.T) {
		s, v := newSigner(t, ECDSAP256)
		ver, err := Verify(writeBundle(t, s), v, "")
		if err != nil {
			t.Fatal(err)
		}
		res, err := LoadResults(ver)
		if err != nil {
			t.Fatalf("LoadResults: %v", err)
		}
		if res["build"].Status != StatusPass || res["unit"].Status != StatusPass {
			t.Errorf("LoadResults = %+v, want the statements' results", res)
		}
	})
}

// TestReportsDeterministic renders the same input again and again: the
// bytes must not change (CheckReports compares them with the files run
// wrote in another process).
func TestReportsDeterministic(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	in := reportInput(t, writeReportBundle(t, s), v)
	first, err := Reports(in)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Reports(reportInput(t, in.Verified.Dir, v))
		if err != nil {
			t.Fatal(err)
		}
		for i := range first {
			if !bytes.Equal(first[i].Data, again[i].Data) {
				t.Fatalf("Reports rendered %s differently from the same evidence", first[i].Name)
			}
		}
	}
}

// TestCheckReports forges the reports of a bundle: a report that is not
// what the evidence renders to must be refused; the rendered ones, or
// none, accepted.
func TestCheckReports(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	good := writeReportBundle(t, s)
	files, err := Reports(reportInput(t, good, v))
	if err != nil {
		t.Fatal(err)
	}
	if names, err := CheckReports(reportInput(t, good, v)); err != nil || len(names) != 0 {
		t.Errorf("CheckReports without reports = %q, %v; want none checked", names, err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(good, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := CheckReports(reportInput(t, good, v)); err != nil || !slices.Equal(names, []string{ReportHTML, ReportMD}) {
		t.Errorf("CheckReports of the rendered reports = %q, %v; want both checked", names, err)
	}
	for _, c := range []struct {
		what, name string
		change     func([]byte) []byte
	}{
		{"a forged PASSED report.html", ReportHTML, func([]byte) []byte { return []byte("<!doctype html><h1>PASSED</h1>") }},
		{"report.html with BLOCKED made PASSED", ReportHTML, func(d []byte) []byte { return bytes.ReplaceAll(d, []byte("BLOCKED"), []byte("PASSED!")) }},
		{"report.md one byte longer", ReportMD, func(d []byte) []byte { return append(d, '\n') }},
		{"an empty report.md", ReportMD, func([]byte) []byte { return nil }},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := copyDir(t, good)
			data, err := os.ReadFile(filepath.Join(dir, c.name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, c.name), c.change(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = CheckReports(reportInput(t, dir, v))
			if !isInvalid(err) || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), "not the report the verified evidence renders to") {
				t.Errorf("CheckReports with %s = %v, want invalid naming %s", c.what, err, c.name)
			}
		})
	}
}

func TestWriteHTML(t *testing.T) {
	s, v := newSigner(t, ECDSAP256)
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
		"policy/release.yaml", in.Verified.Manifest.PolicySHA,
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
	s, v := newSigner(t, ECDSAP256)
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
	s, v := newSigner(t, ECDSAP256)
	ver, err := Verify(writeBundle(t, s), v, "")
	if err != nil {
		t.Fatal(err)
	}
	in := &ReportInput{Verified: ver, Passed: true, Channel: "nightly", At: reportAt,
		Gates: []ReportGate{{Gate: "build", Status: StatusPass}, {Gate: "unit", Status: StatusPass}}}
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
	var ms []Measurement
	for i := range 3000 {
		m := Measurement{Name: fmt.Sprintf("m%04d", i), Unit: []string{"ms", "MB", "count"}[i%3], Values: []float64{float64(i), float64(i + 1)}}
		if i%20 == 0 {
			m.Values = make([]float64, 10000)
			for j := range m.Values {
				m.Values[j] = float64(j % 97)
			}
		}
		if i%7 == 0 {
			m.Budget = &Budget{Max: ptr(1500)}
		}
		ms = append(ms, summarize(m))
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

// fakeInput is a report input of one gate without a bundle on disk.
func fakeInput(gate, reason string, ms []Measurement) *ReportInput {
	commit := subjects[0].Digest["gitCommit"]
	r := GateResult{Gate: gate, Owner: "o", Status: StatusFail, Reason: reason, Environment: reportEnv, Measurements: ms}
	return &ReportInput{
		Verified: &Verified{
			Manifest: Manifest{Commit: commit, Channel: "beta", Policy: "policy/release.yaml", PolicySHA: strings.Repeat("0", 64),
				Artifacts: []ArtifactRef{{Path: "artifacts/" + gate + "/result.json", SHA256: strings.Repeat("1", 64)}}, Sizes: []int64{10}},
			Subjects: subjects,
			Gates:    map[string]*GateStatement{gate: {Name: gate, Result: r}},
		},
		Results: map[string]GateResult{gate: r},
		Channel: "beta", At: reportAt,
		Gates: []ReportGate{{Gate: gate, Status: StatusFail, Blocking: true, Reason: reason,
			Waiver: &ReportWaiver{Owner: reason, Reason: reason, Ticket: reason, Expired: true}}},
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
		ms := []Measurement{
			{Name: name, Unit: unit, Method: reason, Values: vals, Mean: x, Stddev: x, Min: x, Max: x, Repetitions: 12, Budget: &Budget{Max: &x, Source: reason}},
			{Name: reason, Unit: unit, Mean: -x, Stddev: x, Budget: &Budget{Min: &x}},
		}
		in := fakeInput("g", reason, ms)
		in.Gates = append(in.Gates, ReportGate{Gate: name, Status: reason, Reason: reason})
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

// TestSameContent compares a file of a verified bundle with bytes: equal,
// different, missing, and a symbolic link, which is refused.
func TestSameContent(t *testing.T) {
	s, v := newSigner(t, Ed25519)
	dir := writeBundle(t, s)
	ver, err := Verify(dir, v, "")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("<!doctype html><h1>BLOCKED</h1>")
	if err := os.WriteFile(filepath.Join(dir, ReportHTML), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		want []byte
		same bool
	}{{data, true}, {data[:len(data)-1], false}, {append(slices.Clone(data), '\n'), false}, {bytes.ToUpper(data), false}} {
		if same, err := ver.SameContent(ReportHTML, c.want); same != c.same || err != nil {
			t.Errorf("SameContent(%q, %q) = %v, %v; want %v", ReportHTML, c.want, same, err, c.same)
		}
	}
	if _, err := ver.SameContent(ReportMD, data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SameContent of a missing %s = %v, want fs.ErrNotExist", ReportMD, err)
	}
	if err := os.Symlink(filepath.Join(dir, ReportHTML), filepath.Join(dir, ReportMD)); err != nil {
		t.Skip(err)
	}
	if _, err := ver.SameContent(ReportMD, data); !isInvalid(err) {
		t.Errorf("SameContent of a symbolic link = %v, want invalid", err)
	}
}

func TestValidPath(t *testing.T) {
	for p, want := range map[string]bool{
		"artifacts/perf/result.json": true, "policy/release.yaml": true, "a=b/c-d_e.f": true,
		"": false, "/etc/shadow": false, "../x": false, "a/../b": false, "a/./b": false, "a//b": false, "a/b/": false,
		"javascript:alert(1)": false, "a b": false, `a\b`: false,
	} {
		if got := ValidPath(p); got != want {
			t.Errorf("ValidPath(%q) = %v, want %v", p, got, want)
		}
	}
}
