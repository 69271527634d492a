package incident

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/promstack"
	"github.com/rustynet/rustynet/internal/require"
	slospec "github.com/rustynet/rustynet/internal/slo"
	"github.com/rustynet/rustynet/internal/testbed"
)

// The postmortem draft has the standard's sections, in its order, and a
// timeline from the measurements.
func TestPostmortemFollowsStandard(t *testing.T) {
	std, err := os.ReadFile(filepath.Join("..", "..", "documents", "operations", "postmortem-standard.md"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	_, sections, _ := strings.Cut(string(std), "\n## Sections\n")
	for line := range strings.SplitSeq(sections, "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			want = append(want, h)
		}
	}
	if len(want) < 5 {
		t.Fatalf("the standard lists %d sections: %q", len(want), want)
	}
	inj := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	fired, paged, mit, res := inj.Add(70*time.Second), inj.Add(95*time.Second), inj.Add(100*time.Second), inj.Add(160*time.Second)
	ttd, ttm := 95.0, 65.0
	r := &Result{Drill: "controller-killed", File: "scenarios/incidents/controller-killed.yaml", Summary: "The controller dies.", Fault: "SIGKILL",
		Injected: &inj, Paged: &paged, Mitigated: &mit, Resolved: &res, TimeToDetect: &ttd, TimeToMitigate: &ttm,
		Alerts: []AlertTimes{{Alert: "RustynetControllerDown", Receiver: "oncall-pager", Fired: &fired, Paged: &paged, Resolved: &res, Resolves: true}}, Passed: true}
	md := string(Postmortem(r, "sre"))
	var got []string
	for line := range strings.SplitSeq(md, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			got = append(got, h)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("draft sections %q, the standard's %q", got, want)
	}
	for _, s := range []string{"| 2026-12-02 10:00:00Z | +0s | injected: SIGKILL |", "+70s | fired: RustynetControllerDown", "+95s | paged: RustynetControllerDown delivered to oncall-pager",
		"**Time to detect** (injected to paged): 95 s", "**Time to mitigate** (paged to resolved): 65 s"} {
		if !strings.Contains(md, s) {
			t.Errorf("draft lacks %q:\n%s", s, md)
		}
	}
	r.Passed, r.Problems, r.Resolved, r.TimeToMitigate = false, []string{"RustynetControllerDown did not resolve within 3m0s of the mitigation"}, nil, nil
	md = string(Postmortem(r, "sre"))
	if !strings.Contains(md, "| Fix: RustynetControllerDown did not resolve") || !strings.Contains(md, "| not reached |") {
		t.Errorf("a failed drill's draft lacks its action item or its unreached step:\n%s", md)
	}
}

// TestDrills runs real drills: each its own mesh, Prometheus and
// Alertmanager, with the repository's rules, routing and runbooks.
// RUSTYNET_DRILLS names them (comma-separated, or "all"); by default the
// certificate drill, the shortest, runs. The incident gate runs them all.
func TestDrills(t *testing.T) {
	require.Root(t)
	require.Command(t, promstack.PrometheusBin)
	require.Command(t, promstack.AlertmanagerBin)
	require.Command(t, "iptables")
	require.Command(t, "openssl")
	require.Command(t, "curl")
	require.Command(t, "amtool")
	root := filepath.Join("..", "..")
	drills, err := LoadAll(root)
	if err != nil {
		t.Fatal(err)
	}
	names := os.Getenv("RUSTYNET_DRILLS")
	if names == "" {
		names = "certificate-expiring"
	}
	if names != "all" {
		want := strings.Split(names, ",")
		drills = slices.DeleteFunc(drills, func(d *Scenario) bool { return !slices.Contains(want, d.Name) })
		if len(drills) != len(want) {
			t.Fatalf("RUSTYNET_DRILLS=%s: not every name is a drill of %s", names, Dir)
		}
	}
	bin := t.TempDir()
	if err := testbed.BuildDaemons(bin); err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Glob(filepath.Join(root, slospec.RulesDir, "*.yml"))
	alerts, err := slospec.LoadAlerts(root)
	if err != nil {
		t.Fatal(err)
	}
	_, routes, err := Routes(context.Background(), filepath.Join(root, AlertmanagerFile), alerts)
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Root: root, ControllerBin: filepath.Join(bin, "rustynet-controller"), DaemonBin: filepath.Join(bin, "rustynetd"),
		Work: t.TempDir(), Log: testLog{t}, Rules: rules, Alertmanager: filepath.Join(root, AlertmanagerFile),
		ScrapeInterval: scrapeInterval, EvalPeriod: evalInterval, Routes: routes}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range drills {
		wg.Go(func() {
			res, err := Run(ctx, env, d)
			if err != nil {
				t.Errorf("drill %s could not run: %v", d.Name, err)
				return
			}
			t.Logf("drill %s: detect %s, mitigate %s, script %s, SLIs at detection %v, problems %q\n%s", d.Name, fsecs(res.TimeToDetect), fsecs(res.TimeToMitigate), fsecs(res.ScriptSeconds), res.SLIs, res.Problems, res.ScriptOutput)
			for _, p := range res.Problems {
				t.Errorf("drill %s: %s", d.Name, p)
			}
			// The gate signs the result as JSON.
			if _, err := json.Marshal(res); err != nil {
				t.Errorf("drill %s: its result is not JSON: %v", d.Name, err)
			}
			if res.Passed && (res.TimeToDetect == nil || res.Resolved == nil) {
				t.Errorf("drill %s passed without a measured detection and resolution", d.Name)
			}
		})
	}
	wg.Wait()
}

// testLog writes the drills' log to the test's: shown with -v or on
// failure, safe from every drill's goroutine.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
