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

	var md, html bytes.Buffer
	if err := WriteMarkdown(&md, in); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&html, in); err != nil {
		t.Fatal(err)
	}
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
		if !strings.Contains(md.String(), want) {
			t.Errorf("the Markdown report lacks %q", want)
		}
	}
	for _, want := range []string{`<h2 id="slos">`, `<h2 id="drills">`, "controller-killed", "99.995%", "paged: RustynetControllerDown to oncall-pager"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md.String())
	}
}
