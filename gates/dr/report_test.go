package dr

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/machine"
)

// TestWriteReport: the report holds the run's commit, machine, and each
// drill's targets beside its measured figures, the restore confidence
// with its interval and each restore; a bundle without the gate is an
// error that says what to run.
func TestWriteReport(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	drills, pol, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	rto, ttr, scale := 240*time.Millisecond, 4100*time.Millisecond, 21*time.Second
	c := &ConfidenceResult{Seed: 7}
	for i := range 20 {
		c.Restores = append(c.Restores, Restore{Backup: i + 7, Took: 6 * time.Second, RecordsOK: 300, RecordsTotal: 300, NodesBack: 6, NodesTotal: 6, PairsOK: 30, PairsTotal: 30, Complete: true})
	}
	c.compute()
	d := details{Channel: "beta", Policy: PolicyFile, PolicyDigest: pol.Digest, Drills: []drillDetail{
		{Drill: "region-loss", File: "scenarios/dr/region-loss.yaml", Passed: true, Result: Result{ControlPlaneRTO: &rto, AckedWrites: 500, FirstFault: t0,
			Events: []Event{{At: t0, What: "topology up"}, {At: t0.Add(time.Minute), What: "fault: lose region us"}}}},
		{Drill: "restore", File: "scenarios/dr/restore.yaml", Passed: false, Problems: []string{"time to restore 61s, over the target of 1m0s"},
			Result: Result{AckedWrites: 400, Restore: &RestoreResult{Backup: 6, BackupAge: 9 * time.Second, TimeToRestore: &ttr, WritesAfterBackup: 27},
				AtScale: &ScaleResult{Nodes: 10000, Took: &scale}, Confidence: c}},
	}}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	v := &evidence.Verified{Dir: "out/x", KeyID: "SHA256:abc", Manifest: evidence.Manifest{Commit: "0123abcd", Channel: "beta", Created: t0, Scope: []string{"build", "dr"}},
		Gates: map[string]*evidence.GateStatement{Name: {Name: Name, Result: evidence.GateResult{Gate: Name, Status: evidence.StatusFail, Reason: "1 problems",
			Environment: machine.Environment{CPU: "AMD EPYC", Cores: 2, Kernel: "6.18", GoVersion: "go1.26.8", OS: "linux", Arch: "amd64"}, Details: raw}}}}
	var b strings.Builder
	if err := WriteReport(&b, v, drills, pol); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"`0123abcd`", "a partial run of build, dr", "AMD EPYC, 2 cores", "**The gate did not pass**: 1 problems",
		"## region-loss", "| control-plane RTO | ≤ 3.000 s | 240 ms |",
		"## restore", "missed: time to restore 61s", "| backup age at the loss (RPO) | ≤ 20.000 s | 9.000 s (27 writes acknowledged after it began) |",
		"| time to restore | ≤ 60.000 s | 4.100 s |", "| time to restore 10000 nodes | ≤ 60.000 s | 21.000 s |",
		"1.000 (20 of 20 restores complete; 95% interval [0.832, 1.000])", "| 20 | 26 | 300/300 | 6/6 | 30/30 | 6.000 s |",
		"- +60.000 s fault: lose region us",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	v.Gates = map[string]*evidence.GateStatement{}
	if err := WriteReport(&b, v, drills, pol); err == nil || !strings.Contains(err.Error(), "holds no dr gate result") {
		t.Errorf("a bundle without the gate: %v", err)
	}
}
