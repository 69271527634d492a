package conformance

import (
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
			[]string{"backend quic: case Replay: fail"}},
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
