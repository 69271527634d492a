package main

import (
	"slices"
	"testing"

	"github.com/rustynet/rustynet/policies"
)

// TestShippedReleasePolicy checks policies/release.yaml against the real
// registry: it names only registered gates, and GA requires every one of
// them (a gate that no release needs is dead weight or a hole).
func TestShippedReleasePolicy(t *testing.T) {
	reg := registry()
	p, err := policies.LoadRelease("../../policies/release.yaml", reg.Has)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := p.Gates("ga")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range reg.Names() {
		if !slices.Contains(ga, name) {
			t.Errorf("gate %s is registered but the ga channel does not require it", name)
		}
	}
	b, err := policies.LoadBudgets("../../policies/budgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range p.ChannelNames() {
		if _, ok := b.Matrix[ch]; !ok {
			t.Errorf("channel %s has no benchmark matrix in budgets.yaml", ch)
		}
		if _, err := b.SoakDuration(ch); err != nil {
			t.Errorf("channel %s: %v", ch, err)
		}
	}
}
