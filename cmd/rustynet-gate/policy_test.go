package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	// The launch checklist names only registered gates and the fields
	// their evidence declares; GA requires every role's sign-off, and
	// every role has items and a signer.
	cl, err := loadChecklist(p, "../../policies/release.yaml", reg)
	if err != nil || cl == nil {
		t.Fatalf("the shipped checklist: %v", err)
	}
	if got := p.Signoffs("ga"); !slices.Equal(got, policies.Roles) {
		t.Errorf("ga requires the sign-offs %v, want every role %v", got, policies.Roles)
	}
	for _, role := range policies.Roles {
		if len(cl.Items(role)) == 0 || len(p.Signers[role]) == 0 {
			t.Errorf("role %s: %d checklist items, %d signers; want some of each", role, len(cl.Items(role)), len(p.Signers[role]))
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

// TestRunRefusesAFarWaiver: a policy whose waiver expires more than 90 days
// ahead is refused before any gate runs (exit 2, naming the line).
func TestRunRefusesAFarWaiver(t *testing.T) {
	dir := t.TempDir()
	far := time.Now().Add(200 * 24 * time.Hour).Format(time.DateOnly)
	pol := filepath.Join(dir, "release.yaml")
	os.WriteFile(pol, []byte("version: 1\nchannels:\n  nightly:\n    gates: [build, unit]\nwaivers:\n  - gate: unit\n    owner: a@b.c\n    reason: flaky\n    ticket: RN-1\n    expires: "+far+"\n"), 0o600)
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--policy", pol, "--channel", "nightly", "--out", filepath.Join(dir, "out")}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "release.yaml:10") || !strings.Contains(stderr.String(), "more than 90 days") {
		t.Errorf("run with a waiver expiring %s: exit %d, %q; want 2 naming line 10", far, code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("run wrote a bundle for a refused policy")
	}
}
