package arch

import (
	"strings"
	"testing"
)

// TestModuleBoundaries fails, naming the offending import chain, when a
// package of this module breaks a dependency rule.
func TestModuleBoundaries(t *testing.T) {
	pkgs, err := List("../..", "./...")
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, p := range pkgs {
		if strings.HasPrefix(p.ImportPath, Module) {
			seen++
		}
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages of the module; the check would prove nothing", seen)
	}
	for _, v := range Check(pkgs, Rules) {
		t.Error(v)
	}
}

// TestCheckFindsViolations proves the checker catches each rule on a
// made-up graph, and names the whole chain.
func TestCheckFindsViolations(t *testing.T) {
	const m = Module
	pkgs := []Package{
		{ImportPath: m + "/node", Imports: []string{m + "/node/helper"}},
		{ImportPath: m + "/node/helper", Imports: []string{m + "/node/backend/wireguard"}},
		{ImportPath: m + "/node/backend/wireguard", Imports: []string{"golang.zx2c4.com/wireguard/device"}},
		{ImportPath: m + "/gates/conformance", Imports: []string{"golang.zx2c4.com/wireguard/device"}},
		{ImportPath: m + "/cmd/rustynetd", Imports: []string{m + "/node/backend/wireguard", m + "/node", m + "/report"}},
		{ImportPath: m + "/node/control", Imports: []string{m + "/controller/store"}},
		{ImportPath: m + "/gates", Imports: []string{m + "/cmd/rustynet-gate"}},
		{ImportPath: m + "/controller/store"},
		{ImportPath: m + "/evidence", Imports: []string{m + "/report"}},
		{ImportPath: m + "/gates/publish", Imports: []string{m + "/evidence"}},
		{ImportPath: m + "/report"},
		{ImportPath: m + "/cmd/rustynet-gate"},
		{ImportPath: "golang.zx2c4.com/wireguard/device"},
	}
	got := map[string]string{}
	for _, v := range Check(pkgs, Rules) {
		got[v.Chain[0]+" | "+v.Rule] = strings.Join(v.Chain, " -> ")
	}
	want := map[string]string{
		m + "/node | " + Rules[0].Name:              m + "/node -> " + m + "/node/helper -> " + m + "/node/backend/wireguard",
		m + "/node/helper | " + Rules[0].Name:       m + "/node/helper -> " + m + "/node/backend/wireguard",
		m + "/gates/conformance | " + Rules[1].Name: m + "/gates/conformance -> golang.zx2c4.com/wireguard/device",
		m + "/node/control | " + Rules[2].Name:      m + "/node/control -> " + m + "/controller/store",
		m + "/gates | " + Rules[3].Name:             m + "/gates -> " + m + "/cmd/rustynet-gate",
		m + "/evidence | " + Rules[4].Name:          m + "/evidence -> " + m + "/report",
		m + "/gates/publish | " + Rules[4].Name:     m + "/gates/publish -> " + m + "/evidence -> " + m + "/report",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("violation %q: chain %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d violations %v, want %d", len(got), got, len(want))
	}
}
