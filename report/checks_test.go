package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
)

// auditPolicy requires every gate auditResults gives, and two that did
// not run: soak (no result at all) and dr before it in policy order.
const auditPolicy = `version: 1
channels:
  beta:
    gates: [build, soak, crypto-policy, architecture, conformance, perf-budget, slo, incident, dr]
`

func details(t testing.TB, v any) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// auditResults are a beta run in which every gate whose checks the
// report shows passed, with details shaped as those gates sign them,
// perf-budget's measurements (bars of two units, a 60-value series, a
// budget met narrowly) and the slo, incident and dr gates' sections; soak
// did not run at all.
func auditResults(t testing.TB) []evidence.GateResult {
	series := make([]float64, 60)
	for i := range series {
		series[i] = 1.2 + 0.05*math.Sin(float64(i)/5)
	}
	perf := []evidence.Measurement{
		{Name: "nodes=2/backend=wireguard/mtu=1420:throughput_ratio_to_reference", Unit: "ratio", Method: "iperf3 TCP, 10 s, paired", Values: []float64{1.0132, 0.98761, 1.0245}, Budget: &evidence.Budget{Min: ptr(0.95), Source: "policies/budgets.yaml:12 (matches wireguard-go)"}},
		{Name: "nodes=2/backend=quic/mtu=1404:throughput_ratio_to_wireguard", Unit: "ratio", Method: "iperf3 TCP, 10 s, paired", Values: []float64{0.51234, 0.50321, 0.52987}, Budget: &evidence.Budget{Min: ptr(0.5), Source: "policies/budgets.yaml:18"}},
		{Name: "nodes=10000/store=bolt:netmap_propagation_p99", Unit: "s", Method: "one change to 10,000 long-polls", Values: []float64{0.61234, 0.70456, 0.65789}, Budget: &evidence.Budget{Max: ptr(1), Source: "policies/budgets.yaml:30"}},
		{Name: "nodes=1000/routes=1000:route_apply_p99", Unit: "s", Method: "netlink, 1,000 routes", Values: series, Budget: &evidence.Budget{Max: ptr(1.5)}},
		{Name: "registrations:rate", Unit: "1/s", Method: "controller, 30 s", Values: []float64{1234.567, 1301.25}, Budget: &evidence.Budget{Min: ptr(1000)}},
	}
	for i := range perf {
		perf[i] = gates.Summarize(perf[i])
	}
	inj := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	return []evidence.GateResult{
		{Gate: "build", Owner: "release-eng", Status: evidence.StatusPass, DurationSeconds: 41.2, Environment: reportEnv},
		{Gate: "crypto-policy", Owner: "security", Status: evidence.StatusPass, DurationSeconds: 62, Environment: reportEnv,
			Details: details(t, []map[string]any{
				{"check": "dependency-graph", "ok": true, "detail": "crypto/ecdh, crypto/mlkem, golang.org/x/crypto/chacha20poly1305 map to allowed algorithms; no removed algorithm is linked"},
				{"check": "controller-refuses-tls12", "ok": true, "detail": "the built controller refused a TLS 1.2-only client: tls: protocol version not supported"},
				{"check": "quic-pq-pin", "ok": true, "detail": "TestClassicalRefused and TestCheckState ran and passed"},
			})},
		{Gate: "architecture", Owner: "release-eng", Status: evidence.StatusPass, DurationSeconds: 3.4, Environment: reportEnv,
			Details: details(t, map[string]any{"packages_checked": 97, "violations": []string{},
				"rules": []string{"only the composition root imports backend implementations", "nothing imports a command"}})},
		{Gate: "conformance", Owner: "data-plane", Status: evidence.StatusPass, DurationSeconds: 75, Environment: reportEnv,
			Details: details(t, map[string]any{
				"registered_backends": []string{"wireguard", "quic"},
				"claims":              map[string][]string{"wireguard": {"preshared-keys"}, "quic": {"post-quantum"}},
				"cases":               map[string][]string{"wireguard": {"Connectivity", "Replay", "PresharedKeyRotation"}, "quic": {"Connectivity", "Replay"}},
				"wireguard":           map[string]string{"Connectivity": "pass", "Replay": "pass", "PresharedKeyRotation": "pass"},
				"quic":                map[string]string{"Connectivity": "pass", "Replay": "pass"},
				"problems":            []string{},
			})},
		{Gate: "perf-budget", Owner: "sre", Status: evidence.StatusPass, DurationSeconds: 1800, Environment: reportEnv, Measurements: perf,
			Details: details(t, map[string]any{"matrix": "beta", "cells": 5, "budgeted": 5, "problems": []string{},
				"targets_missed": []string{"nodes=2/backend=quic/mtu=1404:throughput_ratio_to_wireguard = 0.5151 ratio (mean of 3) misses its target >= 0.6 [ARCHITECTURE.md]"}})},
		{Gate: "slo", Owner: "sre", Status: evidence.StatusPass, DurationSeconds: 600, Environment: reportEnv,
			Details: details(t, map[string]any{"slos": []map[string]any{
				{"id": "rustynet-controller-api-availability", "objective": 99.95, "attainment": 0.999987654, "burn_rate": 0.0246913, "max_window_burn_rate": 0.4, "events": 123456, "passed": true},
			}})},
		{Gate: "incident", Owner: "sre", Status: evidence.StatusPass, DurationSeconds: 300, Environment: reportEnv,
			Details: details(t, map[string]any{"drills": []map[string]any{{
				"drill": "controller-killed", "passed": true, "injected": inj, "paged": inj.Add(92 * time.Second), "mitigated": inj.Add(95 * time.Second),
				"resolved": inj.Add(150 * time.Second), "time_to_detect_s": 92.0, "time_to_mitigate_s": 58.0,
				"alerts": []map[string]any{{"alert": "RustynetControllerDown", "receiver": "oncall-pager", "fired": inj.Add(62 * time.Second), "paged": inj.Add(92 * time.Second)}},
			}}})},
		{Gate: "dr", Owner: "sre", Status: evidence.StatusNotRun, Reason: "needs docker: no Docker engine answers on /var/run/docker.sock", Needs: []string{"docker"}, Environment: reportEnv},
	}
}

// TestChecks: the gates that passed show what they checked, in both
// formats: crypto-policy's findings, architecture's rules and packages,
// conformance's cases by backend, and every perf budget with its margin,
// the tightest first.
func TestChecks(t *testing.T) {
	s, v := newSigner(t, evidence.Ed25519)
	in := reportInput(t, writeBundle(t, s, testBundle{channel: "beta", policy: auditPolicy, results: auditResults(t), resultFiles: true}), v)
	md, html := render(t, in)
	for _, want := range []string{
		"## What the gates checked",
		"### crypto-policy",
		"3 findings against policies/crypto.yaml",
		"| `controller-refuses-tls12` | ok | the built controller refused a TLS 1.2-only client: tls: protocol version not supported |",
		"97 packages of the module checked against 2 rules on its import graph (go list); no violation.",
		"| nothing imports a command | holds |",
		"wireguard passed 3 of the 3 cases it must (it claims preshared-keys); quic passed 2 of the 2 cases it must (it claims post-quantum).",
		"| Case | wireguard | quic |",
		"| PresharedKeyRotation | pass | not claimed |",
		"5 figures held to a budget of policies/budgets.yaml (matrix beta, 5 cells); every one within it.",
		// The tightest first: 0.515 is 3.03% above its floor of 0.5.
		"|---|---|---|---|---|\n| nodes=2/backend=quic/mtu=1404:throughput\\_ratio\\_to\\_wireguard | 0.515 ratio | ≥ 0.5 ratio (policies/budgets.yaml:18) | yes | 3.03% |",
		"| nodes=10000/store=bolt:netmap\\_propagation\\_p99 | 0.658 s | ≤ 1 s (policies/budgets.yaml:30) | yes | 34.2% |",
		"| registrations:rate | 1268 1/s | ≥ 1000 1/s | yes | 26.8% |",
		"- target missed (reported, not blocking): nodes=2/backend=quic/mtu=1404:throughput\\_ratio\\_to\\_wireguard = 0.5151 ratio",
		// An objective is shown as set, a figure to 3 significant digits.
		"| rustynet-controller-api-availability | 99.95% | 99.999% | 0.0247 | 0.4 | 123456 | yes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown report lacks %q", want)
		}
	}
	for _, want := range []string{`<h2 id="checked">What the gates checked</h2>`, "<code>quic-pq-pin</code>", `<td class="good">pass</td><td>not claimed</td>`, `<td class="num">3.03%</td>`} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// TestGatesThatDidNotRunLast: in the gates table, the gates that ran come
// first, then those that did not (not-run, missing), each group in policy
// order.
func TestGatesThatDidNotRunLast(t *testing.T) {
	s, v := newSigner(t, evidence.Ed25519)
	in := reportInput(t, writeBundle(t, s, testBundle{channel: "beta", policy: auditPolicy, results: auditResults(t), resultFiles: true}), v)
	rv, err := buildView(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range rv.Gates {
		got = append(got, g.Gate+" "+string(g.Status))
	}
	want := []string{"build pass", "crypto-policy pass", "architecture pass", "conformance pass", "perf-budget pass", "slo pass", "incident pass",
		"soak missing", "dr not-run"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("gates table = %q, want %q", got, want)
	}
}

// TestFmtNum: a measured figure to three significant digits, its whole
// part never cut; a set figure as it was written.
func TestFmtNum(t *testing.T) {
	for _, c := range []struct {
		f    float64
		want string
	}{
		{0, "0"}, {42, "42"}, {123456, "123456"}, {1.23456, "1.23"}, {0.0123456, "0.0123"}, {12.3456, "12.3"},
		{99.96, "100"}, {1234.567, "1235"}, {-0.5151, "-0.515"}, {0.000012345, "1.23e-05"}, {1.5e16, "1.5e+16"}, {math.Inf(1), "+Inf"},
	} {
		if got := fmtNum(c.f); got != c.want {
			t.Errorf("fmtNum(%v) = %q, want %q", c.f, got, c.want)
		}
	}
	for _, c := range []struct {
		f    float64
		want string
	}{{99.95, "99.95"}, {0.015, "0.015"}, {1.5e6, "1500000"}, {1e-6, "1e-06"}} {
		if got := fmtExact(c.f); got != c.want {
			t.Errorf("fmtExact(%v) = %q, want %q", c.f, got, c.want)
		}
	}
}
