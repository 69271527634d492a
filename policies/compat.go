package policies

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Compat is compat.yaml: how long a capability version of the control API
// is supported, how far ahead its removal is announced, which upgrade
// paths are supported, the earlier releases (each by commit, so that the
// compat gate can build them) and the capability versions announced for
// removal.
type Compat struct {
	File, Digest string
	Version      int           `yaml:"version"`
	Support      SupportWindow `yaml:"support"`
	Deprecation  struct {
		// NoticeMonths: a removal is announced at least this many months
		// before it takes effect (its sunset).
		NoticeMonths Int `yaml:"notice_months"`
	} `yaml:"deprecation"`
	Upgrades     Upgrades                `yaml:"upgrades"`
	Releases     []EarlierRelease        `yaml:"releases"`
	Deprecations []CapabilityDeprecation `yaml:"deprecations"`
}

// SupportWindow says which capability versions the controller serves: each
// one first released within the last Months, and whatever the last
// Releases releases speak, whichever keeps more.
type SupportWindow struct {
	Months   Int `yaml:"months"`
	Releases Int `yaml:"releases"`
}

// Upgrades are the supported upgrade paths.
type Upgrades struct {
	// StoreFrom: the controller's store upgrades directly from the release
	// this many before the new one (2: from N-2 to N) and from every
	// release in between.
	StoreFrom Int `yaml:"store_from"`
	// Nodes: which node releases upgrade directly to the new one. Only
	// "any-supported": every release whose capability version is
	// supported.
	Nodes Str `yaml:"nodes"`
	// Order of a rolling upgrade: the controller first, then the nodes.
	Order []Str `yaml:"order"`
}

// EarlierRelease is an earlier release: its name, the commit it was built from,
// its date, the capability version it speaks, and the known issues (of
// KnownIssues) it shipped with.
type EarlierRelease struct {
	Name        Str   `yaml:"name"`
	Commit      Str   `yaml:"commit"`
	Date        Time  `yaml:"date"`
	Capability  Int   `yaml:"capability"`
	KnownIssues []Str `yaml:"known_issues"`
}

// HasIssue says whether the release shipped with the known issue id.
func (r EarlierRelease) HasIssue(id string) bool {
	return slices.ContainsFunc(r.KnownIssues, func(s Str) bool { return s.Value == id })
}

// IssueCrossedInitiations: the release's wireguard-go lacks the fixes of
// third_party/wireguard-go for crossed handshake initiations.
const IssueCrossedInitiations = "wireguard-crossed-initiations"

// KnownIssues are the defects a release may be listed with in
// policies/compat.yaml, each with what it does to a mixed mesh. The
// compatibility checks act on them, so an id must be one of these.
var KnownIssues = map[string]string{
	IssueCrossedInitiations: "its wireguard-go lacks the crossed-initiation fixes of third_party/wireguard-go: when two nodes of such releases start handshakes at once (as they do when they learn of each other), the pair can lose its traffic one way for up to 15 s, until WireGuard's new-handshake timer fires; a node of a later release on either side of the pair avoids it",
}

// CapabilityDeprecation announces the removal of a capability version:
// clients that speak it are told (the Deprecation and Sunset headers) from
// Announced, and served until Sunset at least. Removed, once set, is when a
// release stopped serving it, never before Sunset.
type CapabilityDeprecation struct {
	Capability Int   `yaml:"capability"`
	Announced  Time  `yaml:"announced"`
	Sunset     Time  `yaml:"sunset"`
	Removed    *Time `yaml:"removed"`
	Reason     Str   `yaml:"reason"`
	Ticket     Str   `yaml:"ticket"`
}

// Int is an integer with its line.
type Int struct {
	Value int
	Line  int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (i *Int) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &Error{Line: n.Line, Msg: fmt.Sprintf("%q is not a whole number", trunc(n.Value))}
	}
	i.Value, i.Line = v, n.Line
	return nil
}

// Upgrade paths and orders compat.yaml may name.
const (
	NodesAnySupported = "any-supported"
	UpgradeController = "controller"
	UpgradeNodes      = "nodes"
)

var (
	releaseRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	commitRE  = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// ParseCompat decodes and checks compat.yaml. known lists the capability
// versions of the API's history (controller/api.History), oldest first;
// resolve, if not nil, says whether a commit exists (a release naming one
// that does not is refused, as the gate could not build it).
func ParseCompat(file string, data []byte, known []int, resolve func(commit string) error) (*Compat, error) {
	var c Compat
	if err := decode(file, data, &c); err != nil {
		return nil, err
	}
	c.File, c.Digest = file, Digest(data)
	bad := func(line int, format string, args ...any) error {
		return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Version != 1 {
		return nil, bad(1, "version %d: this build reads version 1", c.Version)
	}
	positive := func(i Int, what string) error {
		if i.Value < 1 {
			return bad(i.Line, "%s: %d; want at least 1", what, i.Value)
		}
		return nil
	}
	for _, f := range []struct {
		v    Int
		what string
	}{{c.Support.Months, "support.months"}, {c.Support.Releases, "support.releases"},
		{c.Deprecation.NoticeMonths, "deprecation.notice_months"}, {c.Upgrades.StoreFrom, "upgrades.store_from"}} {
		if err := positive(f.v, f.what); err != nil {
			return nil, err
		}
	}
	if c.Support.Months.Value < c.Deprecation.NoticeMonths.Value {
		return nil, bad(c.Support.Months.Line, "support.months: %d is shorter than the deprecation notice (%d months): a version could be removed before its removal was announced for the whole notice",
			c.Support.Months.Value, c.Deprecation.NoticeMonths.Value)
	}
	if c.Upgrades.Nodes.Value != NodesAnySupported {
		return nil, bad(c.Upgrades.Nodes.Line, "upgrades.nodes: %q; want %s", trunc(c.Upgrades.Nodes.Value), NodesAnySupported)
	}
	if len(c.Upgrades.Order) != 2 || c.Upgrades.Order[0].Value != UpgradeController || c.Upgrades.Order[1].Value != UpgradeNodes {
		line := 0
		if len(c.Upgrades.Order) > 0 {
			line = c.Upgrades.Order[0].Line
		}
		return nil, bad(line, "upgrades.order: want [%s, %s]: the controller serves every supported node, so it is upgraded first", UpgradeController, UpgradeNodes)
	}
	isKnown := func(i Int, what string) error {
		if !slices.Contains(known, i.Value) {
			return bad(i.Line, "%s: capability version %d is not in the API's history (%v)", what, i.Value, known)
		}
		return nil
	}
	names := map[string]bool{}
	for k, r := range c.Releases {
		if !releaseRE.MatchString(r.Name.Value) {
			return nil, bad(r.Name.Line, "release %q: want a name such as v1.2.3", trunc(r.Name.Value))
		}
		if names[r.Name.Value] {
			return nil, bad(r.Name.Line, "release %s listed twice", r.Name.Value)
		}
		names[r.Name.Value] = true
		if !commitRE.MatchString(r.Commit.Value) {
			return nil, bad(r.Commit.Line, "release %s: commit %q: want the full 40-digit hex object name", r.Name.Value, trunc(r.Commit.Value))
		}
		if resolve != nil {
			if err := resolve(r.Commit.Value); err != nil {
				return nil, bad(r.Commit.Line, "release %s: commit %s: %v", r.Name.Value, r.Commit.Value, err)
			}
		}
		if r.Date.IsZero() {
			return nil, bad(r.Name.Line, "release %s has no date", r.Name.Value)
		}
		if err := isKnown(r.Capability, "release "+r.Name.Value); err != nil {
			return nil, err
		}
		for _, i := range r.KnownIssues {
			if _, ok := KnownIssues[i.Value]; !ok {
				return nil, bad(i.Line, "release %s: known issue %q: want one of %s", r.Name.Value, trunc(i.Value), strings.Join(slices.Sorted(maps.Keys(KnownIssues)), ", "))
			}
		}
		if k > 0 {
			prev := c.Releases[k-1]
			if r.Date.Before(prev.Date.Time) || r.Capability.Value < prev.Capability.Value || !semverLess(prev.Name.Value, r.Name.Value) {
				return nil, bad(r.Name.Line, "release %s: releases are listed oldest first, each with a later name, date and capability version than the one before (%s)", r.Name.Value, prev.Name.Value)
			}
		}
	}
	seen := map[int]bool{}
	for _, d := range c.Deprecations {
		if err := isKnown(d.Capability, "deprecation"); err != nil {
			return nil, err
		}
		if seen[d.Capability.Value] {
			return nil, bad(d.Capability.Line, "capability version %d is deprecated twice", d.Capability.Value)
		}
		seen[d.Capability.Value] = true
		switch {
		case d.Announced.IsZero() || d.Sunset.IsZero():
			return nil, bad(d.Capability.Line, "deprecation of capability version %d: want both announced and sunset", d.Capability.Value)
		case d.Reason.Value == "" || d.Ticket.Value == "":
			return nil, bad(d.Capability.Line, "deprecation of capability version %d: want a reason and a ticket", d.Capability.Value)
		}
		if earliest := d.Announced.AddDate(0, c.Deprecation.NoticeMonths.Value, 0); d.Sunset.Before(earliest) {
			return nil, bad(d.Sunset.Line, "capability version %d: sunset %s is less than %d months after its announcement (%s): the earliest is %s",
				d.Capability.Value, day(d.Sunset.Time), c.Deprecation.NoticeMonths.Value, day(d.Announced.Time), day(earliest))
		}
		if first, ok := c.FirstRelease(d.Capability.Value); ok {
			if end := first.Date.AddDate(0, c.Support.Months.Value, 0); d.Sunset.Before(end) {
				return nil, bad(d.Sunset.Line, "capability version %d: sunset %s is inside its support window: first released in %s on %s, it is supported for %d months, until %s",
					d.Capability.Value, day(d.Sunset.Time), first.Name.Value, day(first.Date.Time), c.Support.Months.Value, day(end))
			}
		}
		if d.Removed != nil && d.Removed.Before(d.Sunset.Time) {
			return nil, bad(d.Removed.Line, "capability version %d: removed %s, before its announced sunset %s", d.Capability.Value, day(d.Removed.Time), day(d.Sunset.Time))
		}
	}
	return &c, nil
}

// LoadCompat reads and checks a compat policy (see ParseCompat).
func LoadCompat(path string, known []int, resolve func(commit string) error) (*Compat, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCompat(path, data, known, resolve)
}

// FirstRelease returns the first listed release that speaks capability
// version v.
func (c *Compat) FirstRelease(v int) (EarlierRelease, bool) {
	for _, r := range c.Releases {
		if r.Capability.Value == v {
			return r, true
		}
	}
	return EarlierRelease{}, false
}

// SupportedCapabilities returns the capability versions the support window
// keeps at time now, ascending: those of the last support.releases releases
// (current, the release being made, speaking version current, counts as
// one), and each version first released within support.months of now. A
// version no release has spoken yet is current's own.
func (c *Compat) SupportedCapabilities(now time.Time, current int) []int {
	keep := map[int]bool{current: true}
	rels := c.Releases
	if n := c.Support.Releases.Value - 1; len(rels) > n {
		rels = rels[len(rels)-n:]
	}
	for _, r := range rels {
		keep[r.Capability.Value] = true
	}
	for _, r := range c.Releases {
		if first, _ := c.FirstRelease(r.Capability.Value); now.Before(first.Date.AddDate(0, c.Support.Months.Value, 0)) {
			keep[r.Capability.Value] = true
		}
	}
	var out []int
	for v := range keep {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// SupportedReleases returns the earlier releases whose capability version
// is supported at now: the ones the compat gate builds and runs against
// the new release.
func (c *Compat) SupportedReleases(now time.Time, current int) []EarlierRelease {
	keep := c.SupportedCapabilities(now, current)
	var out []EarlierRelease
	for _, r := range c.Releases {
		if slices.Contains(keep, r.Capability.Value) {
			out = append(out, r)
		}
	}
	return out
}

// StoreUpgradeReleases returns the releases whose data dir the new
// release's controller must open directly: the last upgrades.store_from.
func (c *Compat) StoreUpgradeReleases() []EarlierRelease {
	rels := c.Releases
	if n := c.Upgrades.StoreFrom.Value; len(rels) > n {
		rels = rels[len(rels)-n:]
	}
	return rels
}

// DeprecationOf returns the deprecation of capability version v, if it is
// deprecated.
func (c *Compat) DeprecationOf(v int) (CapabilityDeprecation, bool) {
	for _, d := range c.Deprecations {
		if d.Capability.Value == v {
			return d, true
		}
	}
	return CapabilityDeprecation{}, false
}

func semverLess(a, b string) bool {
	pa, pb := releaseRE.FindStringSubmatch(a), releaseRE.FindStringSubmatch(b)
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return false
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }
