package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/machine"
)

const hostile = "<script>alert(1)</script>"

var (
	reportAt  = time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	reportEnv = machine.Environment{CPU: "AMD EPYC 7763 64-Core Processor", Cores: 8, Kernel: "6.8.0-45-generic", GoVersion: "go1.26.0", OS: "linux", Arch: "amd64"}
)

func ptr(f float64) *float64 { return &f }

// reportResults are the results of a blocked run: build passed, perf
// failed (measurements with and without budgets, a 50-value series) and
// unit failed. Package report's tests render the same run.
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
	if b := m.Budget; b != nil {
		ok := (b.Max == nil || m.Mean <= *b.Max) && (b.Min == nil || m.Mean >= *b.Min)
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
