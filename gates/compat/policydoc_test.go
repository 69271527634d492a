package compat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/bundledoc"
	"github.com/rustynet/rustynet/policies"
)

func load(t *testing.T) *policies.Compat {
	t.Helper()
	pol, err := Load("../..", nil)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestSupportPolicyCurrent: the published support policy is what the
// policy and the capability history generate now.
func TestSupportPolicyCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := WriteSupportPolicy(&want, load(t)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("../..", SupportDoc))
	if err != nil {
		t.Fatalf("%v: generate it with make compat-docs", err)
	}
	// A copy rendered from a bundle (rustynet-gate docs) starts with
	// its provenance; the rest is what the policies generate.
	if !bytes.Equal(bundledoc.StripProvenance(got), want.Bytes()) {
		t.Errorf("%s is stale: regenerate it with make compat-docs", SupportDoc)
	}
	pol := load(t)
	cur := api.History[len(api.History)-1]
	var from []string
	for _, r := range pol.StoreUpgradeReleases() {
		from = append(from, r.Name.Value)
	}
	for _, s := range []string{"| 1 | v0.1.0 | 2026-11-25 | 2027-12-02 (its sunset) | deprecated since 2026-12-04 |",
		fmt.Sprintf("| %d | %s (this release) |", cur.Version, cur.Release),
		"| v0.2.0 | `49a2269b78eb205d459e2bfb4b43cd6c30e862f2` | 2026-12-02 | 2 |", "today " + strings.Join(from, ", ")} {
		if !strings.Contains(want.String(), s) {
			t.Errorf("the support policy lacks %q:\n%s", s, want.String())
		}
	}
}

// TestAnnouncementsMatch: the controller announces exactly the policy's
// deprecations, and serves every version the support window covers.
func TestAnnouncementsMatch(t *testing.T) {
	if ps := CheckAnnouncements(load(t), time.Now()); len(ps) > 0 {
		t.Errorf("the policy and the controller disagree:\n%s", strings.Join(ps, "\n"))
	}
}

// TestAnnouncementsDisagree: a sunset moved in the policy, a deprecation
// the controller does not announce, and one the policy does not make are
// each found.
func TestAnnouncementsDisagree(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	pol := load(t)
	pol.Deprecations[0].Sunset.Time = pol.Deprecations[0].Sunset.AddDate(0, 1, 0)
	if ps := CheckAnnouncements(pol, now); len(ps) != 1 || !strings.Contains(ps[0], "capability version 1: the controller announces 2026-12-04 to 2027-12-02, the policy 2026-12-04 to 2028-01-02") {
		t.Errorf("sunset moved: %q", ps)
	}
	pol = load(t)
	pol.Deprecations = pol.Deprecations[1:]
	if ps := CheckAnnouncements(pol, now); len(ps) != 1 || !strings.Contains(ps[0], "announces the removal of capability version 1, which policies/compat.yaml does not deprecate") {
		t.Errorf("deprecation dropped from the policy: %q", ps)
	}
	pol = load(t)
	extra := pol.Deprecations[0]
	extra.Capability.Value = 3
	pol.Deprecations = append(pol.Deprecations, extra)
	if ps := CheckAnnouncements(pol, now); len(ps) != 1 || !strings.Contains(ps[0], "capability version 3 is deprecated in the policy but the controller does not announce it") {
		t.Errorf("deprecation the controller does not make: %q", ps)
	}
}
