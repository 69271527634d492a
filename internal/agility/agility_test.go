package agility

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `{"Action":"run","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance"}
{"Action":"run","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Connectivity"}
{"Action":"output","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Connectivity","Output":"    conformance.go:100: property: Packets MUST flow.\n"}
{"Action":"pass","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Connectivity","Elapsed":0.01}
{"Action":"run","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Throughput"}
{"Action":"output","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Throughput","Output":"    conformance.go:108: conformance-metric tunnel_to_raw=0.0325 ratio\n"}
{"Action":"pass","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance/Throughput","Elapsed":4}
{"Action":"pass","Package":"github.com/rustynet/rustynet/node/backend/wireguard","Test":"TestConformance","Elapsed":5}
{"Action":"run","Package":"github.com/rustynet/rustynet/node/backend/quic","Test":"TestConformance/Connectivity"}
{"Action":"output","Package":"github.com/rustynet/rustynet/node/backend/quic","Test":"TestConformance/Connectivity","Output":"    conformance.go:241: a packet was not delivered\n"}
{"Action":"fail","Package":"github.com/rustynet/rustynet/node/backend/quic","Test":"TestConformance/Connectivity","Elapsed":10}
{"Action":"run","Package":"github.com/rustynet/rustynet/node/backend/quic","Test":"TestConformance/Throughput"}
{"Action":"pass","Package":"github.com/rustynet/rustynet/node/backend/quic","Test":"TestConformance/Throughput","Elapsed":4}
not json: build output
`

func TestParseAndRender(t *testing.T) {
	rep, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Backend != "wireguard" {
		t.Fatalf("results = %+v, want wireguard first of two", rep.Results)
	}
	wg, q := rep.Results[0], rep.Results[1]
	if !wg.Passed(rep.Order) || q.Passed(rep.Order) {
		t.Errorf("Passed: wireguard %v, quic %v; want true, false", wg.Passed(rep.Order), q.Passed(rep.Order))
	}
	if m := wg.Metrics["tunnel_to_raw"]; m.Value != 0.0325 || m.Unit != "ratio" {
		t.Errorf("metric = %+v", m)
	}
	if rep.Properties["Connectivity"] != "Packets MUST flow." {
		t.Errorf("property = %q", rep.Properties["Connectivity"])
	}
	if got := q.Failures["Connectivity"]; len(got) != 1 || !strings.Contains(got[0], "not delivered") {
		t.Errorf("failure output = %q", got)
	}
	if got := q.FailureText("Connectivity"); got != "a packet was not delivered" {
		t.Errorf("FailureText(Connectivity) = %q, want the line without its source position", got)
	}
	var buf bytes.Buffer
	if err := rep.Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{"| wireguard | passes every case |", "| quic | **fails** |", "| Connectivity | Packets MUST flow. | pass | fail |", "## Failures of quic"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	if _, err := Parse(strings.NewReader("")); err == nil {
		t.Error("Parse of nothing succeeded")
	}
}

// TestRequired: a backend passes when it passes the cases it must; a case
// of a property it does not claim, which the suite does not run on it,
// reads "not claimed", not "not run", and does not fail it.
func TestRequired(t *testing.T) {
	const claimsOut = "wireguard preshared-keys\nquic post-quantum\n\n"
	names, claims := ParseBackends(claimsOut)
	if strings.Join(names, " ") != "wireguard quic" || strings.Join(claims["wireguard"], " ") != "preshared-keys" || strings.Join(claims["quic"], " ") != "post-quantum" {
		t.Fatalf("ParseBackends(%q) = %q, %q", claimsOut, names, claims)
	}
	wg := &Result{Backend: "wireguard", Cases: map[string]string{"Connectivity": "pass", "PresharedKeyRotation": "pass"}, Required: []string{"Connectivity", "PresharedKeyRotation"}}
	q := &Result{Backend: "quic", Cases: map[string]string{"Connectivity": "pass"}, Required: []string{"Connectivity"}}
	rep := &Report{Results: []*Result{wg, q}, Order: []string{"Connectivity", "PresharedKeyRotation"}, Properties: map[string]string{}}
	if !q.Passed(rep.Order) {
		t.Error("quic, which passed every case it must, does not pass")
	}
	if q.Required = []string{"Connectivity", "PresharedKeyRotation"}; q.Passed(rep.Order) {
		t.Error("quic passes without running a case it must")
	}
	q.Required = []string{"Connectivity"}
	var buf bytes.Buffer
	if err := rep.Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| quic | passes every case it must (the others test a property it does not claim) |", "| PresharedKeyRotation |  | pass | not claimed |"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}
