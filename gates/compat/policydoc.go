// Package compat holds the compatibility policy's published form and the
// checks that keep the policy, the API's capability history and the
// controller's deprecation announcements in step.
package compat

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/policies"
)

// PolicyFile is the compatibility policy, relative to the repository root.
const PolicyFile = "policies/compat.yaml"

// SupportDoc is the support policy generated from it.
const SupportDoc = "documents/compatibility/support-policy.md"

// Versions lists the capability versions of the API's history, oldest
// first.
func Versions() []int {
	var out []int
	for _, r := range api.History {
		out = append(out, int(r.Version))
	}
	return out
}

// Load reads the compatibility policy under root; resolve, if not nil,
// says whether a release's commit exists.
func Load(root string, resolve func(commit string) error) (*policies.Compat, error) {
	return policies.LoadCompat(filepath.Join(root, PolicyFile), Versions(), resolve)
}

// CheckAnnouncements compares the policy's deprecations with the ones the
// controller announces (api.Deprecations) and with the oldest version it
// serves, as of now. Each problem says what to change.
func CheckAnnouncements(pol *policies.Compat, now time.Time) []string {
	var problems []string
	inAPI := map[int]api.Deprecation{}
	for _, d := range api.Deprecations {
		inAPI[int(d.Version)] = d
	}
	for _, d := range pol.Deprecations {
		v := d.Capability.Value
		a, ok := inAPI[v]
		want := api.Deprecation{Version: api.CapabilityVersion(v), Announced: day(d.Announced.Time), Sunset: day(d.Sunset.Time)}
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s:%d: capability version %d is deprecated in the policy but the controller does not announce it: add %+v to api.Deprecations", PolicyFile, d.Capability.Line, v, want))
		case a != want:
			problems = append(problems, fmt.Sprintf("%s:%d: capability version %d: the controller announces %s to %s, the policy %s to %s", PolicyFile, d.Capability.Line, v, a.Announced, a.Sunset, want.Announced, want.Sunset))
		}
		delete(inAPI, v)
	}
	for _, v := range slices.Sorted(maps.Keys(inAPI)) {
		problems = append(problems, fmt.Sprintf("api.Deprecations announces the removal of capability version %d, which %s does not deprecate", v, PolicyFile))
	}
	// A version dropped (the minimum raised past it) must have been
	// deprecated, its sunset come.
	for _, r := range api.History {
		if r.Version >= api.MinSupportedCapabilityVersion {
			break
		}
		d, ok := pol.DeprecationOf(int(r.Version))
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("capability version %d is no longer served (MinSupportedCapabilityVersion %d) but was never deprecated in %s", r.Version, api.MinSupportedCapabilityVersion, PolicyFile))
		case now.Before(d.Sunset.Time):
			problems = append(problems, fmt.Sprintf("capability version %d is no longer served (MinSupportedCapabilityVersion %d) before its announced sunset %s (%s:%d)", r.Version, api.MinSupportedCapabilityVersion, day(d.Sunset.Time), PolicyFile, d.Sunset.Line))
		}
	}
	// And the support window keeps every version it covers.
	for _, v := range pol.SupportedCapabilities(now, int(api.CurrentCapabilityVersion)) {
		if api.CapabilityVersion(v) < api.MinSupportedCapabilityVersion {
			problems = append(problems, fmt.Sprintf("capability version %d is inside the support window on %s but no longer served (MinSupportedCapabilityVersion %d)", v, day(now), api.MinSupportedCapabilityVersion))
		}
	}
	return problems
}

// API is what the compat gate judges of this build's control API as of a
// time (gates/compat/apicheck prints it for the tree under test).
type API struct {
	// Capability is the current capability version; Served the oldest
	// the controller serves; Supported those the policy's window covers.
	Capability int   `json:"capability"`
	Served     int   `json:"min_served_capability"`
	Supported  []int `json:"supported_capabilities"`
	// Problems are CheckAnnouncements's.
	Problems []string `json:"problems"`
}

// CheckAPI judges this build's control API against pol as of now.
func CheckAPI(pol *policies.Compat, now time.Time) API {
	cur := int(api.CurrentCapabilityVersion)
	return API{Capability: cur, Served: int(api.MinSupportedCapabilityVersion), Supported: pol.SupportedCapabilities(now, cur),
		Problems: CheckAnnouncements(pol, now)}
}

// AsOf is the date the published policy describes: the newest date among
// its inputs (the policy's releases and announcements, the API's
// history), so that the document changes only when they do.
func AsOf(pol *policies.Compat) time.Time {
	var newest time.Time
	see := func(t time.Time) {
		if t.After(newest) {
			newest = t
		}
	}
	for _, r := range pol.Releases {
		see(r.Date.Time)
	}
	for _, d := range pol.Deprecations {
		see(d.Announced.Time)
		if d.Removed != nil {
			see(d.Removed.Time)
		}
	}
	for _, r := range api.History {
		if t, err := time.Parse(time.DateOnly, r.Date); err == nil {
			see(t)
		}
	}
	return newest
}

// WriteSupportPolicy writes the support policy (Markdown) from the
// compatibility policy and the API's capability history, as of AsOf.
func WriteSupportPolicy(w io.Writer, pol *policies.Compat) error {
	asOf := AsOf(pol)
	current := int(api.CurrentCapabilityVersion)
	supported := pol.SupportedCapabilities(asOf, current)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Compatibility and support policy\n\n")
	p("Generated by `make compat-docs` from `%s` (sha256 `%s`) and the capability-version history in `controller/api/version.go`. Do not edit it: a test fails when it is stale.\n\n",
		PolicyFile, pol.Digest[:16])
	p("## Windows\n\n")
	p("- **Support.** A capability version of the control API is served for %d months after the first release that speaks it, and whatever the last %d releases speak is served whatever its age: the longer of the two.\n",
		pol.Support.Months.Value, pol.Support.Releases.Value)
	p("- **Deprecation.** A removal is announced at least %d months before its sunset, and never falls inside the support window. From the announcement on, every answer to a client of that version carries the `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) headers; the node shows them in `rustynet status`. `rustynet_controller_requests_by_capability_total` counts the controller's requests by the client's version: who a removal would break.\n",
		pol.Deprecation.NoticeMonths.Value)
	p("- **Removal.** Only after its sunset does a release stop serving a version (it raises `MinSupportedCapabilityVersion`). An older client is then answered `426 Upgrade Required`, with the release to upgrade to.\n\n")

	p("## Support matrix, as of %s\n\n", day(asOf))
	p("| capability version | first release | released | served until at least | status |\n|---|---|---|---|---|\n")
	for _, r := range api.History {
		v := int(r.Version)
		first, released := r.Release, r.Date
		if fr, ok := pol.FirstRelease(v); ok {
			first, released = fr.Name.Value, day(fr.Date.Time)
		}
		until := "the support window's end"
		if fr, ok := pol.FirstRelease(v); ok {
			until = day(fr.Date.AddDate(0, pol.Support.Months.Value, 0)) + fmt.Sprintf(", and while one of the last %d releases speaks it", pol.Support.Releases.Value)
		} else if v == current {
			first += " (this release)"
			until = fmt.Sprintf("%d months after its release, and while one of the last %d releases speaks it", pol.Support.Months.Value, pol.Support.Releases.Value)
		}
		status := "supported"
		if !slices.Contains(supported, v) {
			status = "outside the support window"
		}
		if d, ok := pol.DeprecationOf(v); ok {
			until = day(d.Sunset.Time) + " (its sunset)"
			status = fmt.Sprintf("deprecated since %s", day(d.Announced.Time))
			if d.Removed != nil {
				status = fmt.Sprintf("removed on %s", day(d.Removed.Time))
			}
		}
		if r.Version < api.MinSupportedCapabilityVersion {
			status = "no longer served (426)"
		}
		if v == current {
			status = "current"
		}
		p("| %d | %s | %s | %s | %s |\n", v, first, released, until, status)
	}
	p("\nWhat each version adds is in `controller/api/version.go` (`History`).\n\n")

	p("## Releases\n\nThe earlier releases the `compat` gate builds, each from its commit with the same Go toolchain, to run against the release under test.\n\n")
	p("| release | commit | date | capability version |\n|---|---|---|---|\n")
	for _, r := range pol.Releases {
		p("| %s | `%s` | %s | %d |\n", r.Name.Value, r.Commit.Value, day(r.Date.Time), r.Capability.Value)
	}
	issues := map[string][]string{}
	var ids []string
	for _, r := range pol.Releases {
		for _, i := range r.KnownIssues {
			if issues[i.Value] == nil {
				ids = append(ids, i.Value)
			}
			issues[i.Value] = append(issues[i.Value], r.Name.Value)
		}
	}
	if len(ids) > 0 {
		p("\n### Known issues\n\nDefects a release shipped with that a later release fixed. Upgrading either node of a pair avoids them; the compat gate allows for them only between two nodes that both have them.\n\n")
		for _, id := range ids {
			p("- **%s** (%s): %s.\n", id, strings.Join(issues[id], ", "), policies.KnownIssues[id])
		}
	}

	p("\n## Upgrade paths\n\n")
	var from []string
	for _, r := range pol.StoreUpgradeReleases() {
		from = append(from, r.Name.Value)
	}
	p("- **Controller store.** A controller opens the data dir of each of the last %d releases (today %s) and migrates it in place. An older data dir is upgraded through an intermediate release. A release that raises the store's schema version leaves a data dir that earlier releases refuse, with an error that names its schema version and the newest they know: take a backup (`rustynet-controller backup`) before upgrading; restoring it is the way back. Within one schema version an earlier release serves the data dir again. The compat gate starts each of those releases' controllers on the data dir this release upgraded and checks which of the two holds.\n",
		pol.Upgrades.StoreFrom.Value, strings.Join(from, ", "))
	p("- **Nodes.** A node of any supported release upgrades straight to the new one.\n")
	p("- **Order.** The controller first (it serves every supported node), then the nodes one by one, each keeping its data plane up while it restarts.\n\n")

	p("## Deprecation calendar\n\n")
	if len(pol.Deprecations) == 0 {
		p("No removal is announced.\n")
	} else {
		p("| capability version | announced | sunset | removed | why | ticket |\n|---|---|---|---|---|---|\n")
		for _, d := range pol.Deprecations {
			removed := "not yet"
			if d.Removed != nil {
				removed = day(d.Removed.Time)
			}
			p("| %d | %s | %s | %s | %s | %s |\n", d.Capability.Value, day(d.Announced.Time), day(d.Sunset.Time), removed, d.Reason.Value, d.Ticket.Value)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// CurrentCapability is the capability version this tree speaks.
func CurrentCapability() api.CapabilityVersion { return api.CurrentCapabilityVersion }
