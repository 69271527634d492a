package policies

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

var knownCapabilities = []int{1, 2, 3}

// gitResolve says whether a commit exists in this repository, as the
// compat gate resolves a release's commit.
func gitResolve(commit string) error {
	out, err := exec.Command("git", "cat-file", "-e", commit+"^{commit}").CombinedOutput()
	if err != nil {
		return errors.New("no such commit in this repository" + strings.TrimSpace(" "+string(out)))
	}
	return nil
}

func TestCompatPolicyLoads(t *testing.T) {
	var resolve func(string) error
	if _, err := os.Stat("../.git"); err == nil {
		resolve = gitResolve
	} else {
		t.Log("not a git checkout: the releases' commits are not resolved")
	}
	c, err := LoadCompat("compat.yaml", knownCapabilities, resolve)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Releases) < 2 {
		t.Errorf("%d earlier releases; the gate needs an N-1 and an N-2", len(c.Releases))
	}
	// The store upgrades straight from N-2 and N-1: the last two.
	n := len(c.Releases)
	if got := c.StoreUpgradeReleases(); len(got) != 2 || got[0].Name != c.Releases[n-2].Name || got[1].Name != c.Releases[n-1].Name {
		t.Errorf("store upgrades from %v, want the last two releases", got)
	}
}

const compatBase = `version: 1
support:
  months: 12
  releases: 3
deprecation:
  notice_months: 6
upgrades:
  store_from: 2
  nodes: any-supported
  order: [controller, nodes]
releases:
  - name: v0.1.0
    commit: 174583815be0c6d999e376443bd4741d404d3d6f
    date: 2026-01-10
    capability: 1
  - name: v0.2.0
    commit: 49a2269b78eb205d459e2bfb4b43cd6c30e862f2
    date: 2026-06-01
    capability: 2
`

func TestCompatRefusals(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(compatBase, old) {
			t.Fatalf("the base policy has no %q", old)
		}
		return strings.Replace(compatBase, old, new, 1)
	}
	dep := func(s string) string { return compatBase + "deprecations:\n" + s }
	for _, c := range []struct {
		name, yaml string
		resolve    func(string) error
		line       int
		contains   string
	}{
		{"unknown field", replace("  releases: 3\n", "  releases: 3\n  weeks: 2\n"), nil, 5, "field weeks not found"},
		{"support shorter than notice", replace("  months: 12\n", "  months: 3\n"), nil, 3, "shorter than the deprecation notice (6 months)"},
		{"no support", replace("  releases: 3\n", "  releases: 0\n"), nil, 4, "support.releases: 0"},
		{"not a number", replace("  store_from: 2\n", "  store_from: two\n"), nil, 8, `"two" is not a whole number`},
		{"nodes", replace("any-supported", "latest"), nil, 9, `upgrades.nodes: "latest"`},
		{"order", replace("[controller, nodes]", "[nodes, controller]"), nil, 10, "the controller serves every supported node"},
		{"short commit", replace("174583815be0c6d999e376443bd4741d404d3d6f", "1745838"), nil, 13, "full 40-digit"},
		{"missing commit", compatBase, func(c string) error {
			if c == "49a2269b78eb205d459e2bfb4b43cd6c30e862f2" {
				return errors.New("no such commit")
			}
			return nil
		}, 17, "release v0.2.0: commit 49a2269b78eb205d459e2bfb4b43cd6c30e862f2: no such commit"},
		{"unknown capability", replace("    capability: 2\n", "    capability: 9\n"), nil, 19, "capability version 9 is not in the API's history"},
		{"out of order", replace("date: 2026-06-01", "date: 2025-06-01"), nil, 16, "oldest first"},
		{"bad name", replace("name: v0.2.0", "name: 0.2"), nil, 16, `release "0.2"`},
		{"unknown issue", replace("    capability: 1\n", "    capability: 1\n    known_issues: [slow]\n"), nil, 16,
			`release v0.1.0: known issue "slow": want one of wireguard-crossed-initiations`},
		{"short notice", dep("  - capability: 2\n    announced: 2026-12-04\n    sunset: 2027-06-01\n    reason: r\n    ticket: t\n"), nil, 23,
			"sunset 2027-06-01 is less than 6 months after its announcement (2026-12-04): the earliest is 2027-06-04"},
		{"inside the support window", dep("  - capability: 2\n    announced: 2026-09-01\n    sunset: 2027-03-01\n    reason: r\n    ticket: t\n"), nil, 23,
			"sunset 2027-03-01 is inside its support window: first released in v0.2.0 on 2026-06-01, it is supported for 12 months, until 2027-06-01"},
		{"removed before sunset", dep("  - capability: 1\n    announced: 2026-01-10\n    sunset: 2027-01-10\n    removed: 2026-12-01\n    reason: r\n    ticket: t\n"), nil, 24,
			"removed 2026-12-01, before its announced sunset 2027-01-10"},
		{"no ticket", dep("  - capability: 1\n    announced: 2026-01-10\n    sunset: 2027-01-10\n    reason: r\n"), nil, 21, "want a reason and a ticket"},
		{"twice", dep("  - capability: 1\n    announced: 2026-01-10\n    sunset: 2027-01-10\n    reason: r\n    ticket: t\n  - capability: 1\n    announced: 2026-01-10\n    sunset: 2027-01-10\n    reason: r\n    ticket: t\n"), nil, 26, "deprecated twice"},
	} {
		_, err := ParseCompat("compat.yaml", []byte(c.yaml), knownCapabilities, c.resolve)
		var pe *Error
		if !errors.As(err, &pe) || pe.Line != c.line || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("%s: ParseCompat = %v, want line %d containing %q", c.name, err, c.line, c.contains)
		}
	}
	if _, err := ParseCompat("compat.yaml", []byte(compatBase), knownCapabilities, nil); err != nil {
		t.Errorf("the base policy: %v", err)
	}
	c, err := ParseCompat("compat.yaml", []byte(strings.Replace(compatBase, "    capability: 1\n", "    capability: 1\n    known_issues: [wireguard-crossed-initiations]\n", 1)), knownCapabilities, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Releases[0].HasIssue(IssueCrossedInitiations) || c.Releases[1].HasIssue(IssueCrossedInitiations) {
		t.Errorf("known issues: v0.1.0 %v, v0.2.0 %v; want only v0.1.0's", c.Releases[0].KnownIssues, c.Releases[1].KnownIssues)
	}
}

// TestSupportWindow: a version is supported for support.months after its
// first release, and while one of the last support.releases releases (the
// new one included) speaks it.
func TestSupportWindow(t *testing.T) {
	c, err := ParseCompat("compat.yaml", []byte(compatBase), knownCapabilities, nil)
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		now     string
		current int
		want    []int
	}{
		{"2026-12-01", 3, []int{1, 2, 3}},
		// v0.1.0 is past its 12 months, but still among the last 3 releases.
		{"2027-03-01", 3, []int{1, 2, 3}},
		// With the release after v0.2.0 at version 2 too, v0.1.0 is 4 back.
		{"2027-03-01", 2, []int{1, 2}},
	} {
		if got := c.SupportedCapabilities(day(tc.now), tc.current); !slices.Equal(got, tc.want) {
			t.Errorf("supported at %s with the new release at %d: %v, want %v", tc.now, tc.current, got, tc.want)
		}
	}
	// Only 2 releases kept: v0.1.0 falls out once its 12 months are over.
	two, err := ParseCompat("compat.yaml", []byte(strings.Replace(compatBase, "releases: 3", "releases: 2", 1)), knownCapabilities, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := two.SupportedCapabilities(day("2027-03-01"), 3); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("supported at 2027-03-01 keeping 2 releases: %v, want [2 3]", got)
	}
	if got := two.SupportedReleases(day("2027-03-01"), 3); len(got) != 1 || got[0].Name.Value != "v0.2.0" {
		t.Errorf("releases to run at 2027-03-01 keeping 2 releases: %v, want v0.2.0", got)
	}
	if got := two.SupportedCapabilities(day("2026-12-01"), 3); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("supported at 2026-12-01 keeping 2 releases: %v, want [1 2 3] (v0.1.0 is within its 12 months)", got)
	}
}
