package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
)

// The slo gate's SLOs and the incident gate's drills have their own
// sections, read from the gates' signed details, in both formats.
func TestOperationsSections(t *testing.T) {
	inj := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	paged, resolved := inj.Add(92*time.Second), inj.Add(150*time.Second)
	sloDetails, _ := json.Marshal(map[string]any{"slos": []map[string]any{
		{"id": "rustynet-controller-api-availability", "objective": 99.9, "attainment": 0.99995, "burn_rate": 0.05, "max_window_burn_rate": 0.4, "events": 1234, "passed": true},
		{"id": "rustynet-node-peer-reachability", "objective": 99.5, "attainment": nil, "passed": false},
	}})
	incDetails, _ := json.Marshal(map[string]any{"drills": []map[string]any{{
		"drill": "controller-killed", "passed": true, "injected": inj, "paged": paged, "mitigated": inj.Add(95 * time.Second), "resolved": resolved,
		"time_to_detect_s": 92.0, "time_to_mitigate_s": 58.0,
		"alerts":   []map[string]any{{"alert": "RustynetControllerDown", "receiver": "oncall-pager", "fired": inj.Add(62 * time.Second), "paged": paged, "resolved": resolved}},
		"problems": []string{},
	}, {"drill": "store-disk-full", "passed": false, "injected": inj, "problems": []string{"RustynetControllerStoreErrors did not fire within 4m0s"},
		"alerts": []map[string]any{{"alert": "RustynetControllerStoreErrors", "receiver": "oncall-pager"}}}}})
	in := fakeInput("slo", "", nil)
	in.Results["slo"] = evidence.GateResult{Gate: "slo", Status: evidence.StatusPass, Details: sloDetails}
	in.Results["incident"] = evidence.GateResult{Gate: "incident", Status: evidence.StatusFail, Details: incDetails}
	in.Verdict.Gates = append(in.Verdict.Gates, gates.GateVerdict{Gate: "incident", Status: evidence.StatusFail, Blocking: true})

	md, html := render(t, in)
	for _, want := range []string{
		"## Service level objectives",
		"| rustynet-controller-api-availability | 99.9% | 99.995% | 0.05 | 0.4 | 1234 | yes |",
		"| rustynet-node-peer-reachability | 99.5% | no value | no value | no value | no value | **NO** |",
		"## Incident drills",
		"### controller-killed: passed",
		"Time to detect 1m32s; time to mitigate (paged to resolved) 58s.",
		"| 21:01:02 | +62 s | fired: RustynetControllerDown |",
		"| 21:01:32 | +92 s | paged: RustynetControllerDown to oncall-pager |",
		"### store-disk-full: **FAILED**",
		"| not reached |  | paged: RustynetControllerStoreErrors to oncall-pager |",
		"- RustynetControllerStoreErrors did not fire within 4m0s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown report lacks %q", want)
		}
	}
	for _, want := range []string{`<h2 id="slos">`, `<h2 id="drills">`, "controller-killed", "99.995%", "paged: RustynetControllerDown to oncall-pager"} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// The dr gate's drills have their own section: figures, and the timeline
// counted from the first fault.
func TestDRSection(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 19, 13, 0, 0, time.UTC)
	rto := (183 * time.Millisecond).Nanoseconds()
	details, _ := json.Marshal(map[string]any{"drills": []map[string]any{{
		"drill": "region-loss-short", "passed": false, "problems": []string{"propagation RTO: endpoints of n1 never reached node-us-1; target 5s"},
		"result": map[string]any{
			"timeline": []map[string]any{{"at": t0, "what": "workload started"}, {"at": t0.Add(40 * time.Second), "what": "fault: lose region eu"},
				{"at": t0.Add(41200 * time.Millisecond), "what": "done: lose region eu"}},
			"control_plane_rto_ns": rto, "propagation_rto_ns": nil, "max_probe_gap_ns": (40 * time.Millisecond).Nanoseconds(),
			"lost_probes": 0, "acked_writes": 115, "lost_writes": 0,
		},
	}}})
	in := fakeInput("dr", "", nil)
	in.Results["dr"] = evidence.GateResult{Gate: "dr", Status: evidence.StatusFail, Details: details}
	md, html := render(t, in)
	for _, want := range []string{
		"## Disaster-recovery drills",
		"### region-loss-short: **FAILED**",
		"control-plane RTO 183ms; longest outage after it 0s; propagation RTO not reached; longest probe gap 40ms; 0 probes lost; 0 of 115 acknowledged writes lost.",
		"| 19:13:00.000 | -40.0 s | workload started |",
		"| 19:13:40.000 | +0.0 s | fault: lose region eu |",
		"| 19:13:41.200 | +1.2 s | done: lose region eu |",
		"- propagation RTO: endpoints of n1 never reached node-us-1; target 5s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown report lacks %q", want)
		}
	}
	for _, want := range []string{`<h2 id="dr-drills">`, "region-loss-short", "fault: lose region eu"} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// render writes the report of in in both formats.
func render(t *testing.T, in *Input) (md, html string) {
	t.Helper()
	var m, h bytes.Buffer
	if err := WriteMarkdown(&m, in); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&h, in); err != nil {
		t.Fatal(err)
	}
	return m.String(), h.String()
}
