package perfbudget

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/matrix"
	"github.com/rustynet/rustynet/policies"
)

const budgetsYAML = `version: 1
matrix: {nightly: n.yaml, beta: r.yaml, ga: r.yaml}
budgets:
  - cell: throughput/backend=wireguard/**
    metric: tunnel_to_raw
    min: 0.10
    basis: test
  - cell: throughput/**
    metric: tunnel_to_raw
    min: 0.05
    max: 1.5
    basis: test, looser
  - cell: route-apply/routes=1000
    metric: route_apply_p99
    max: 50
    basis: test
targets:
  - cell: throughput/backend=wireguard/**
    metric: tunnel_to_raw
    min: 0.25
    basis: ARCHITECTURE.md
regression: {alpha: 0.05, min_change: 0.05}
soak:
  duration: {nightly: 10m, beta: 2h, ga: 24h}
  sample_every: 10s
  warmup: 2m
  rate_mbps: 50
  max_rss_mib_per_hour: 64
  max_heap_live_mib_per_hour: 30
  max_goroutines_per_hour: 60
  max_fds_per_hour: 30
  max_rss_mib: 512
`

func budgets(t *testing.T) *policies.Budgets {
	t.Helper()
	b, err := policies.ParseBudgets("budgets.yaml", []byte(budgetsYAML))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJudge(t *testing.T) {
	wg, quic := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk", "throughput/backend=quic/mtu=1420/peers=2/traffic=tcp-bulk"
	results := []matrix.Result{
		{Cell: wg, Measurements: []evidence.Measurement{{Name: "tunnel_to_raw", Unit: "ratio", Values: []float64{0.17, 0.19, 0.21}}}},
		{Cell: quic, Measurements: []evidence.Measurement{{Name: "tunnel_to_raw", Unit: "ratio", Values: []float64{0.02, 0.03}}}},
		{Cell: "route-apply/routes=1000", Measurements: []evidence.Measurement{{Name: "route_apply_p99", Unit: "ms", Values: []float64{20}}}},
		{Cell: "route-apply/routes=10", Error: "netlink: permission denied"},
	}
	j := judge(results, budgets(t))
	if j.budgeted != 3 || len(j.measurements) != 3 {
		t.Errorf("budgeted %d of %d measurements, want 3 of 3", j.budgeted, len(j.measurements))
	}
	// Both budgets match the WireGuard cell: the tightest bounds apply,
	// and both sources are named.
	m := j.measurements[0]
	if m.Name != wg+":tunnel_to_raw" || *m.Budget.Min != 0.10 || *m.Budget.Max != 1.5 || !strings.Contains(m.Budget.Source, "budgets.yaml:4") ||
		!strings.Contains(m.Budget.Source, "budgets.yaml:8") || !*m.WithinBudget || m.Repetitions != 3 {
		t.Errorf("WireGuard ratio: %+v (budget %+v)", m, m.Budget)
	}
	if q := j.measurements[1]; *q.WithinBudget || q.Budget.Min == nil || *q.Budget.Min != 0.05 {
		t.Errorf("QUIC ratio 0.025 against min 0.05: %+v", q)
	}
	if len(j.problems) != 2 || !strings.Contains(strings.Join(j.problems, "\n"), "permission denied") ||
		!strings.Contains(strings.Join(j.problems, "\n"), quic+":tunnel_to_raw = 0.025 ratio (mean of 2), outside its budget >= 0.05") {
		t.Errorf("problems = %q; want the failed cell and the QUIC ratio", j.problems)
	}
	// A budget whose cell ran but measured no such metric is a problem.
	wrong := budgets(t)
	wrong.Budgets[2].Metric.Value = "route_apply_p999"
	if j := judge(results, wrong); !strings.Contains(strings.Join(j.problems, "\n"), `budgets.yaml:13: budget on metric "route_apply_p999" of route-apply/routes=1000 bounds nothing`) {
		t.Errorf("a budget on a metric nothing measured: problems = %q", j.problems)
	}
	// The target is missed (0.19 < 0.25) and reported, without blocking.
	if len(j.missed) != 1 || !strings.Contains(j.missed[0], "misses its target >= 0.25 [policies/budgets.yaml:18 (ARCHITECTURE.md)]") {
		t.Errorf("missed = %q", j.missed)
	}
}

// TestCompare writes a baseline bundle through the gate runner, then
// compares new figures with it.
func TestCompare(t *testing.T) {
	cell := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"
	base := []evidence.Measurement{
		{Name: cell + ":tunnel_throughput", Unit: "Gbit/s", Method: "iperf3", Values: []float64{2.90, 2.95, 3.00, 2.92, 2.97}},
		{Name: cell + ":cpu_per_gb", Unit: "s/GB", Method: "cpu", Values: []float64{4.5, 4.6, 4.4, 4.55, 4.45}},
		{Name: cell + ":rss_peak_node1", Unit: "MiB", Method: "rss", Values: []float64{160}},
		{Name: cell + ":steady", Unit: "ms", Method: "x", Values: []float64{1, 2, 3, 4, 5}},
		{Name: cell + ":raw_throughput", Unit: "Gbit/s", Method: "iperf3", Values: []float64{14, 14.5, 15, 14.2, 14.8}},
	}
	var reg gates.Registry
	reg.Register(gates.Spec{Name: Name, Owner: "sre", Timeout: 5 * time.Second, Run: func(ctx context.Context, r *gates.Run) error {
		for _, m := range base {
			r.Measure(m)
		}
		return nil
	}})
	pol, err := policies.ParseRelease("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [perf-budget]\n"), reg.Has)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if _, err := evidence.Keygen(keys, evidence.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	signer, _ := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	verifier, _ := evidence.LoadVerifier(filepath.Join(keys, evidence.PublicKeyFile))
	dir := filepath.Join(t.TempDir(), "baseline")
	if _, err := gates.Execute(context.Background(), gates.Options{Registry: &reg, Policy: pol, Channel: "nightly", Out: dir,
		Signer: signer, Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"}); err != nil {
		t.Fatal(err)
	}

	now := []matrix.Result{{Cell: cell, Measurements: []evidence.Measurement{
		// 20% slower, every value below every baseline value: p = 0.008.
		{Name: "tunnel_throughput", Unit: "Gbit/s", Values: []float64{2.30, 2.35, 2.40, 2.32, 2.38}},
		// 2% more CPU: significant, but under min_change.
		{Name: "cpu_per_gb", Unit: "s/GB", Values: []float64{4.6, 4.7, 4.65, 4.68, 4.62}},
		// One value a side: the test cannot speak.
		{Name: "rss_peak_node1", Unit: "MiB", Values: []float64{400}},
		// Lower is better and it fell: an improvement.
		{Name: "steady", Unit: "ms", Values: []float64{0.1, 0.2, 0.3, 0.4, 0.5}},
	}}}
	var log strings.Builder
	r := &gates.Run{Gate: Name, Log: &log, Baseline: dir, BaselineKey: verifier}
	got, err := compare(r, now, policies.Regression{Alpha: 0.05, MinChange: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "tunnel_throughput regressed: median 2.95 -> 2.35 Gbit/s (-20.3%, p=0.008, n=5+5;") {
		t.Errorf("regressions = %q; want only the throughput", got)
	}
	if !strings.Contains(log.String(), "rss_peak_node1: n=1+1 cannot show a significant change") ||
		!strings.Contains(log.String(), "3 measurements compared, 1 with too few values to compare, 1 regressions") {
		t.Errorf("log:\n%s", log.String())
	}

	// Drift between runs of one commit measured at 25% for this metric:
	// the same 20% drop is noise, not a regression.
	noisy := policies.Regression{Alpha: 0.05, MinChange: 0.05, Noise: []policies.Noise{
		{Cell: policies.Str{Value: "throughput/**"}, Metric: policies.Str{Value: "tunnel_throughput"}, MinChange: 0.25}}}
	if got, err := compare(r, now, noisy); err != nil || len(got) != 0 {
		t.Errorf("a drop within the metric's measured drift: regressions %q, %v; want none", got, err)
	}
	// The raw path measures the machine: never judged.
	raw := []matrix.Result{{Cell: cell, Measurements: []evidence.Measurement{
		{Name: "raw_throughput", Unit: "Gbit/s", Values: []float64{1, 1.1, 1.2, 1.05, 1.15}}}}}
	log.Reset()
	if got, err := compare(r, raw, policies.Regression{Alpha: 0.05, MinChange: 0.05}); err != nil || len(got) != 0 ||
		!strings.Contains(log.String(), "raw_throughput: the reference path, not judged") {
		t.Errorf("raw path: regressions %q, %v; log:\n%s", got, err, log.String())
	}

	// A baseline signed with another key is refused.
	other := t.TempDir()
	evidence.Keygen(other, evidence.ECDSAP256)
	ov, _ := evidence.LoadVerifier(filepath.Join(other, evidence.PublicKeyFile))
	r.BaselineKey = ov
	if _, err := compare(r, now, policies.Regression{Alpha: 0.05, MinChange: 0.05}); err == nil {
		t.Error("a baseline signed with another key was compared")
	}
}

func TestSuggest(t *testing.T) {
	b := budgets(t)
	wg := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"
	runs := []Run{
		{Source: "a", Values: map[string][]float64{wg + ":tunnel_to_raw": {0.18, 0.20}, "route-apply/routes=1000:route_apply_p99": {20}}},
		{Source: "b", Values: map[string][]float64{wg + ":tunnel_to_raw": {0.20, 0.22}, "route-apply/routes=1000:route_apply_p99": {19}}},
		{Source: "c", Values: map[string][]float64{"throughput/backend=quic/mtu=1420/peers=2/traffic=tcp-bulk:tunnel_to_raw": {0.02}}},
	}
	got := Suggest(b, runs)
	if len(got) != 5 {
		t.Fatalf("%d suggestions, want one per bound of every budget and target (5)", len(got))
	}
	// WireGuard floor: run means 0.19 and 0.21, spread 0.02/0.2 = 10%,
	// headroom the 25% minimum: 0.19 * 0.75 = 0.1425, rounded down.
	if s := got[0]; s.Max || len(s.Means) != 2 || s.Bound != 0.14 || s.Headroom != MinHeadroom ||
		!strings.Contains(s.Basis, "run means 0.19, 0.21 over 2 runs (spread 10%); the worst, 0.19, less 25% headroom") {
		t.Errorf("WireGuard floor: %+v", s)
	}
	// throughput/** matches QUIC's cell too (each run measured one cell):
	// means 0.19, 0.21, 0.02, spread 136%, headroom 271%: floor 0.
	if s := got[1]; s.Max || len(s.Means) != 3 || s.Bound != 0 {
		t.Errorf("loose floor over every backend: %+v", s)
	}
	// The same entry's max: the worst (highest) mean, 0.21, plus 271%:
	// 0.21 * 3.71 = 0.78, rounded up.
	if s := got[2]; !s.Max || len(s.Means) != 3 || s.Bound != 0.79 {
		t.Errorf("loose ceiling over every backend: %+v", s)
	}
	// A max: the worst mean is the highest, 20 * 1.25 = 25.
	if s := got[3]; !s.Max || s.Bound != 25 || s.Entry.Metric.Value != "route_apply_p99" {
		t.Errorf("route-apply max: %+v", s)
	}
	if s := got[4]; !s.Target {
		t.Errorf("the last entry is the target: %+v", s)
	}
	if _, err := policies.ParseBudgets("b.yaml", []byte(strings.Replace(budgetsYAML, "min: 0.10", "min: 0.10\n    max: 0.01", 1))); err == nil {
		t.Error("a budget with min above max was accepted")
	}
}

// TestSuggestMissing: a measurement no budget bounds gets the rule's
// bound, a min where higher is better and a max elsewhere; bounded and
// reported measurements get none.
func TestSuggestMissing(t *testing.T) {
	b := budgets(t)
	wg := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"
	small := "throughput/backend=wireguard/mtu=1280/peers=8/traffic=udp-small"
	units := map[string]string{wg + ":tunnel_to_raw": "ratio", small + ":tunnel_pps": "packets/s", "route-apply/routes=10:route_apply_p99": "ms"}
	runs := []Run{
		{Source: "a", Units: units, Values: map[string][]float64{wg + ":tunnel_to_raw": {0.2}, small + ":tunnel_pps": {1000, 1200}, "route-apply/routes=10:route_apply_p99": {2},
			small + ":tunnel_pps:vs_baseline": {1.01, 0.98}}}, // the paired rule's
		{Source: "b", Units: units, Values: map[string][]float64{wg + ":tunnel_to_raw": {0.2}, small + ":tunnel_pps": {900, 1100}, "route-apply/routes=10:route_apply_p99": {3}}},
	}
	got := SuggestMissing(b, runs)
	if len(got) != 2 {
		t.Fatalf("%d suggestions, want the two unbudgeted measurements: %+v", len(got), got)
	}
	// route-apply/routes=10 (sorted first): means 2 and 3, spread 40%,
	// headroom 80%: 3 * 1.8 = 5.4.
	if s := got[0]; !s.Max || s.Entry.Cell.Value != "route-apply/routes=10" || s.Bound != 5.4 || s.Entry.Max == nil {
		t.Errorf("route-apply p99: %+v", s)
	}
	// packets/s: a floor. Means 1100 and 1000, spread 9.5%, headroom 25%:
	// 1000 * 0.75 = 750.
	if s := got[1]; s.Max || s.Entry.Cell.Value != small || s.Bound != 750 || s.Entry.Min == nil {
		t.Errorf("packets/s floor: %+v", s)
	}
}

func TestRoundOut(t *testing.T) {
	for _, c := range []struct {
		x    float64
		up   bool
		want float64
	}{{0.1425, false, 0.14}, {0.1425, true, 0.15}, {25.1, true, 26}, {441.6, true, 450}, {0.0123, false, 0.012}, {3, true, 3}} {
		if got := roundOut(c.x, c.up); got != c.want {
			t.Errorf("roundOut(%v, up=%v) = %v, want %v", c.x, c.up, got, c.want)
		}
	}
}

func TestDrifts(t *testing.T) {
	name := "route-apply/routes=1000:route_apply"
	runs := []Run{
		{Source: "a", Values: map[string][]float64{name: {10, 11, 12, 13, 14}, "x/y=1:raw_pps": {1, 2, 3, 4, 5}, "x/y=1:steady": {1, 2, 3, 4, 5}}},
		{Source: "b", Values: map[string][]float64{name: {20, 21, 22, 23, 24}, "x/y=1:raw_pps": {11, 12, 13, 14, 15}, "x/y=1:steady": {1.5, 2.5, 3.5, 4.5, 5.5}}},
	}
	reg := policies.Regression{Alpha: 0.05, MinChange: 0.10}
	got := Drifts(runs, reg)
	// Only the route-apply medians (12 and 22) differ significantly, both
	// ways: +83% and -45%; the threshold is 0.83 * 1.5, rounded up. The
	// raw path is left out; "steady" overlaps and is not significant.
	if len(got) != 1 || got[0].Name != name || got[0].Pairs != 2 || len(got[0].Changes) != 2 || got[0].Threshold != 1.3 || got[0].InForce != 0.10 {
		t.Fatalf("Drifts = %+v", got)
	}
	reg.Noise = []policies.Noise{{Cell: policies.Str{Value: "route-apply/**"}, Metric: policies.Str{Value: "route_apply"}, MinChange: 1.5}}
	if m := reg.MinChangeFor("route-apply/routes=1000", "route_apply"); m != 1.5 {
		t.Errorf("MinChangeFor with a noise entry = %v, want 1.5", m)
	}
	if m := reg.MinChangeFor("route-apply/routes=1000", "route_apply_p99"); m != 0.10 {
		t.Errorf("MinChangeFor another metric = %v, want the default 0.10", m)
	}
	if d := Drifts(runs, reg); d[0].InForce != 1.5 {
		t.Errorf("in force with the noise entry: %v", d[0].InForce)
	}
}

// TestEveryMetricBounded: a metric a run measures that no budget bounds,
// and that is not listed as reported only, blocks; so does an entry that
// selects no cell of any matrix.
func TestEveryMetricBounded(t *testing.T) {
	b := budgets(t)
	cell := "route-apply/routes=1000"
	results := []matrix.Result{{Cell: cell, Measurements: []evidence.Measurement{
		{Name: "route_apply_p99", Unit: "ms", Values: []float64{20}},
		{Name: "route_apply_p50", Unit: "ms", Values: []float64{10}},
	}}}
	j := judge(results, b)
	if !strings.Contains(strings.Join(j.problems, "\n"), cell+":route_apply_p50 has no budget") {
		t.Errorf("an unbounded metric: problems = %q, want it named", j.problems)
	}
	b.Reported = append(b.Reported, policies.Reported{Cell: policies.Str{Value: "route-apply/**"}, Metric: policies.Str{Value: "route_apply_p50"}, Reason: policies.Str{Value: "the p99 is bounded"}})
	if j := judge(results, b); len(j.problems) != 0 {
		t.Errorf("with route_apply_p50 reported only: problems = %q, want none", j.problems)
	}
	cells := []matrix.Cell{{Kind: "route-apply", Params: map[string]string{"routes": "1000"}}, {Kind: "throughput",
		Params: map[string]string{"backend": "wireguard", "mtu": "1420", "peers": "2", "traffic": "tcp-bulk"}}}
	if dead := deadEntries(b, cells); len(dead) != 0 {
		t.Errorf("deadEntries = %q, want none", dead)
	}
	b.Budgets[2].Cell = policies.Str{Value: "route-apply/routes=1001", Line: 13}
	if dead := deadEntries(b, cells); len(dead) != 1 || !strings.Contains(dead[0], "budgets.yaml:13: budget for route-apply/routes=1001 selects no cell") {
		t.Errorf("a budget for a cell no matrix has: deadEntries = %q", dead)
	}
}

// TestJudgePaired: a regression the candidate shows in every round against
// the baseline beside it blocks; the same change in a metric not judged,
// a smaller one, or one in some rounds only does not.
func TestJudgePaired(t *testing.T) {
	cfg := policies.Paired{Alpha: 0.05, MinChange: 0.10, Metrics: []string{"tunnel_throughput", "cpu_per_gb", "route_apply_p50"}, Basis: "test"}
	cell := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"
	base := []float64{2.4, 2.9, 2.1, 2.6, 2.5} // drift between rounds
	scaled := func(f float64, xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = f * x
		}
		return out
	}
	for _, c := range []struct {
		name   string
		metric string
		unit   string
		cand   []float64
		blocks bool
	}{
		{"20% slower in every round", "tunnel_throughput", "Gbit/s", scaled(0.8, base), true},
		{"5% slower", "tunnel_throughput", "Gbit/s", scaled(0.95, base), false},
		{"as fast", "tunnel_throughput", "Gbit/s", base, false},
		{"25% more CPU", "cpu_per_gb", "s/GB", scaled(1.25, base), true},
		{"25% less CPU", "cpu_per_gb", "s/GB", scaled(0.75, base), false},
		{"slower in two rounds of five", "tunnel_throughput", "Gbit/s", []float64{2.4 * 0.6, 2.9, 2.1 * 0.6, 2.6, 2.5}, false},
		{"a metric not judged", "tunnel_pps", "packets/s", scaled(0.5, base), false},
		{"routes applied three times slower", "route_apply_p50", "ms", scaled(3, base), true},
		{"routes applied faster", "route_apply_p50", "ms", scaled(0.5, base), false},
	} {
		res := []matrix.Result{{Cell: cell, Paired: []matrix.Paired{{Name: c.metric, Unit: c.unit, Baseline: base, Candidate: c.cand}}}}
		v := judgePaired(res, cfg)
		if blocked := len(v.problems) > 0; blocked != c.blocks {
			t.Errorf("%s: problems %q, want blocked=%v", c.name, v.problems, c.blocks)
		}
	}
}
