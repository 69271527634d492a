package conformance

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/internal/agility"
)

// TestMissing: every backend the node registers must pass every case of
// the suite; a backend without a suite, a case that did not run and a case
// that skipped are each named, with the backend, and block.
func TestMissing(t *testing.T) {
	cases := []string{"Connectivity", "Replay", "Throughput"}
	// wireguard claims preshared keys: it must pass that case as well.
	casesOf := func(b string) []string {
		if b == "wireguard" {
			return append(slices.Clone(cases), "PresharedKeyRotation")
		}
		return cases
	}
	pass := func(name string) *agility.Result {
		r := &agility.Result{Backend: name, Cases: map[string]string{}}
		for _, c := range casesOf(name) {
			r.Cases[c] = "pass"
		}
		return r
	}
	wg, quic := pass("wireguard"), pass("quic")
	for _, c := range []struct {
		name    string
		results []*agility.Result
		want    []string
	}{
		{"both pass", []*agility.Result{wg, quic}, nil},
		{"quic's suite deleted", []*agility.Result{wg}, []string{"backend quic, which rustynetd registers, ran no conformance case"}},
		{"a case skipped", []*agility.Result{wg, {Backend: "quic", Cases: map[string]string{"Connectivity": "pass", "Replay": "skip", "Throughput": "pass"}}},
			[]string{"backend quic: case Replay was skipped (a skipped case counts as missing)"}},
		{"a case gone", []*agility.Result{wg, {Backend: "quic", Cases: map[string]string{"Connectivity": "pass", "Throughput": "pass"}}},
			[]string{"backend quic: case Replay did not run"}},
		{"a case failed", []*agility.Result{wg, {Backend: "quic", Cases: map[string]string{"Connectivity": "pass", "Replay": "fail", "Throughput": "pass"}}},
			[]string{"backend quic: case Replay failed: it logged nothing"}},
		{"a claimed case gone", []*agility.Result{{Backend: "wireguard", Cases: map[string]string{"Connectivity": "pass", "Replay": "pass", "Throughput": "pass"}}, quic},
			[]string{"backend wireguard: case PresharedKeyRotation did not run"}},
	} {
		got := missing(&agility.Report{Results: c.results}, []string{"quic", "wireguard"}, casesOf)
		if len(got) != len(c.want) {
			t.Errorf("%s: missing = %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) {
				t.Errorf("%s: missing[%d] = %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// TestFailureNamesTheFigure: a case that failed names, in the gate's
// reason, the backend, the case and what it logged, and a case held to a
// floor the figure measured and the floor, read from go test -json as the
// gate reads it.
func TestFailureNamesTheFigure(t *testing.T) {
	const pkg = "github.com/rustynet/rustynet/node/backend/quic"
	var events strings.Builder
	ev := func(action, test, output string) {
		fmt.Fprintf(&events, `{"Action":%q,"Package":%q,"Test":%q,"Output":%q}`+"\n", action, pkg, test, output)
	}
	for _, c := range []string{"Connectivity", "Replay"} {
		ev("run", "TestConformance/"+c, "")
		ev("pass", "TestConformance/"+c, "")
	}
	ev("run", "TestConformance/Throughput", "")
	ev("output", "TestConformance/Throughput", "    conformance.go:745: device MTU 1404\n")
	ev("output", "TestConformance/Throughput", "    conformance.go:789: conformance-metric tunnel_to_raw=0.0149 ratio\n")
	ev("output", "TestConformance/Throughput", "    conformance.go:794: TCP through the backend: 0.174 Gbit/s, 0.0149 of the raw path's 11.70 Gbit/s; quic's floor is 0.034\n")
	ev("output", "TestConformance/Throughput", "--- FAIL: TestConformance/Throughput (4.10s)\n")
	ev("fail", "TestConformance/Throughput", "")
	rep, err := agility.Parse(strings.NewReader(events.String()))
	if err != nil {
		t.Fatal(err)
	}
	got := missing(rep, []string{"quic"}, func(string) []string { return []string{"Connectivity", "Replay", "Throughput"} })
	want := "backend quic: case Throughput failed: tunnel_to_raw 0.0149 ratio, the floor 0.034; device MTU 1404; " +
		"TCP through the backend: 0.174 Gbit/s, 0.0149 of the raw path's 11.70 Gbit/s; quic's floor is 0.034"
	if len(got) != 1 || got[0] != want {
		t.Errorf("missing = %q, want [%q]", got, want)
	}
}
