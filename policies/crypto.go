package policies

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Crypto is crypto.yaml: every algorithm and option the product uses, each
// allowed, deprecated (from a date) or removed (from a date); the insecure
// compatibility modes the code has, all off by default; and the exceptions
// that turn one on for a while.
type Crypto struct {
	Version int `yaml:"version"`
	// Cadence bounds how long an algorithm stays deprecated: each is
	// removed at most MaxDeprecatedMonths after its deprecation, on the
	// removal date it states.
	Cadence struct {
		MaxDeprecatedMonths Int `yaml:"max_deprecated_months"`
	} `yaml:"cadence"`
	Algorithms    []Algorithm    `yaml:"algorithms"`
	InsecureModes []InsecureMode `yaml:"insecure_modes"`
	Exceptions    []Exception    `yaml:"exceptions"`

	File   string `yaml:"-"`
	Digest string `yaml:"-"`
}

// Algorithm is one algorithm or protocol option.
type Algorithm struct {
	Name   Str `yaml:"name"`
	Use    Str `yaml:"use"`
	Status Str `yaml:"status"` // allowed, deprecated, removed
	// Since is when a deprecated or removed algorithm became so (or
	// becomes so: a future date is a schedule).
	Since Time `yaml:"since"`
	// Removal is when a deprecated algorithm becomes removed: required
	// for every deprecated one, at most Cadence.MaxDeprecatedMonths after
	// Since. From it on the algorithm is judged as removed.
	Removal *Time `yaml:"removal"`
	// GoPackages are the Go import paths that implement it; the
	// crypto-policy gate maps every crypto import in the shipped binaries'
	// dependency graph onto algorithms with them.
	GoPackages []Str `yaml:"go_packages"`
	// LinkedBy lists the third-party packages that may import this
	// (deprecated or removed) algorithm's packages, each with why the
	// product does not depend on it. The module's own packages cannot be
	// listed: a removed algorithm they import always blocks.
	LinkedBy []Link `yaml:"linked_by"`
}

// Link is a third-party package that links an algorithm the product does
// not use for its security, and why.
type Link struct {
	Package Str `yaml:"package"`
	Reason  Str `yaml:"reason"`
}

// InsecureMode is a compatibility mode that weakens security.
type InsecureMode struct {
	Name        Str `yaml:"name"`
	Default     Str `yaml:"default"`
	Description Str `yaml:"description"`
}

// Exception turns an insecure mode on, for its owner, until it expires.
type Exception struct {
	Mode    Str  `yaml:"mode"`
	Owner   Str  `yaml:"owner"`
	Reason  Str  `yaml:"reason"`
	Ticket  Str  `yaml:"ticket"`
	Expires Time `yaml:"expires"`
}

var (
	algRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)
	// pkgRE is a Go import path whose first element has a dot: a
	// third-party package (the standard library's have none).
	pkgRE = regexp.MustCompile(`^[A-Za-z0-9-]+\.[A-Za-z0-9.-]+(/[A-Za-z0-9._~+-]+)*$`)
)

// Algorithm statuses.
const (
	Allowed    = "allowed"
	Deprecated = "deprecated"
	Removed    = "removed"
)

// ParseCrypto decodes and checks crypto.yaml.
func ParseCrypto(file string, data []byte) (*Crypto, error) {
	var c Crypto
	if err := decode(file, data, &c); err != nil {
		return nil, err
	}
	c.File, c.Digest = file, Digest(data)
	if c.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", c.Version)}
	}
	months := c.Cadence.MaxDeprecatedMonths
	if months.Value < 1 {
		return nil, &Error{File: file, Line: months.Line, Msg: fmt.Sprintf("cadence.max_deprecated_months: %d; want at least 1: every deprecated algorithm is removed within that many months", months.Value)}
	}
	names := map[string]bool{}
	pkgs := map[string]string{}
	for _, a := range c.Algorithms {
		if !algRE.MatchString(a.Name.Value) {
			return nil, &Error{File: file, Line: a.Name.Line, Msg: fmt.Sprintf("algorithm %q: want a lowercase name of letters, digits, dots and dashes", trunc(a.Name.Value))}
		}
		if names[a.Name.Value] {
			return nil, &Error{File: file, Line: a.Name.Line, Msg: fmt.Sprintf("algorithm %s listed twice", a.Name.Value)}
		}
		names[a.Name.Value] = true
		switch a.Status.Value {
		case Allowed:
		case Deprecated, Removed:
			if a.Since.IsZero() {
				return nil, &Error{File: file, Line: a.Status.Line, Msg: fmt.Sprintf("algorithm %s is %s but has no date (since)", a.Name.Value, a.Status.Value)}
			}
		default:
			return nil, &Error{File: file, Line: a.Status.Line, Msg: fmt.Sprintf("status %q: want allowed, deprecated or removed", trunc(a.Status.Value))}
		}
		switch {
		case a.Status.Value == Deprecated && a.Removal == nil:
			return nil, &Error{File: file, Line: a.Status.Line, Msg: fmt.Sprintf("algorithm %s is deprecated but has no removal date: the cadence wants one at most %d months after %s",
				a.Name.Value, months.Value, day(a.Since.Time))}
		case a.Status.Value != Deprecated && a.Removal != nil:
			return nil, &Error{File: file, Line: a.Removal.Line, Msg: fmt.Sprintf("algorithm %s is %s: only a deprecated algorithm has a removal date", a.Name.Value, a.Status.Value)}
		case a.Removal != nil && !a.Removal.After(a.Since.Time):
			return nil, &Error{File: file, Line: a.Removal.Line, Msg: fmt.Sprintf("algorithm %s: removal %s is not after its deprecation %s", a.Name.Value, day(a.Removal.Time), day(a.Since.Time))}
		case a.Removal != nil && a.Removal.After(a.Since.AddDate(0, months.Value, 0)):
			return nil, &Error{File: file, Line: a.Removal.Line, Msg: fmt.Sprintf("algorithm %s: removal %s is more than %d months after its deprecation %s (cadence.max_deprecated_months): the latest is %s",
				a.Name.Value, day(a.Removal.Time), months.Value, day(a.Since.Time), day(a.Since.AddDate(0, months.Value, 0)))}
		}
		if a.Use.Value == "" {
			return nil, &Error{File: file, Line: a.Name.Line, Msg: fmt.Sprintf("algorithm %s says nothing of its use", a.Name.Value)}
		}
		for _, p := range a.GoPackages {
			if other, dup := pkgs[p.Value]; dup {
				return nil, &Error{File: file, Line: p.Line, Msg: fmt.Sprintf("Go package %s is mapped to both %s and %s", p.Value, other, a.Name.Value)}
			}
			pkgs[p.Value] = a.Name.Value
		}
		if err := checkLinks(file, a); err != nil {
			return nil, err
		}
	}
	modes := map[string]bool{}
	for _, m := range c.InsecureModes {
		if !nameRE.MatchString(m.Name.Value) {
			return nil, &Error{File: file, Line: m.Name.Line, Msg: fmt.Sprintf("insecure mode %q: want a lowercase name", trunc(m.Name.Value))}
		}
		if m.Default.Value != "off" {
			return nil, &Error{File: file, Line: m.Default.Line, Msg: fmt.Sprintf("insecure mode %s: default must be off (an exception turns it on)", m.Name.Value)}
		}
		modes[m.Name.Value] = true
	}
	for _, e := range c.Exceptions {
		if !modes[e.Mode.Value] {
			return nil, &Error{File: file, Line: e.Mode.Line, Msg: fmt.Sprintf("exception for %q, which is not an insecure mode of the policy", trunc(e.Mode.Value))}
		}
		if err := checkOwned(file, e.Mode.Line, e.Owner, e.Reason, e.Expires); err != nil {
			return nil, err
		}
		if e.Ticket.Value == "" {
			return nil, &Error{File: file, Line: e.Mode.Line, Msg: "exception has no ticket"}
		}
	}
	return &c, nil
}

// checkLinks validates an algorithm's linked_by entries.
func checkLinks(file string, a Algorithm) error {
	seen := map[string]bool{}
	for _, l := range a.LinkedBy {
		line := l.Package.Line
		if line == 0 {
			line = max(l.Reason.Line, a.Name.Line)
		}
		switch {
		case a.Status.Value == Allowed:
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("algorithm %s is allowed: linked_by is for deprecated and removed algorithms", a.Name.Value)}
		case len(a.GoPackages) == 0:
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("algorithm %s maps no Go package, so a linked_by entry can match nothing", a.Name.Value)}
		case l.Package.Value == "":
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("a linked_by entry of %s names no package", a.Name.Value)}
		case !pkgRE.MatchString(l.Package.Value):
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("linked_by package %q: want a third-party import path (its first element has a dot)", trunc(l.Package.Value))}
		case seen[l.Package.Value]:
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("%s is listed twice in the linked_by of %s", l.Package.Value, a.Name.Value)}
		case strings.TrimSpace(l.Reason.Value) == "":
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("the linked_by entry for %s under %s has no reason", l.Package.Value, a.Name.Value)}
		}
		seen[l.Package.Value] = true
	}
	return nil
}

// Linked returns the linked_by entry for an importing package, if the
// algorithm has one.
func (a *Algorithm) Linked(importer string) (*Link, bool) {
	for i := range a.LinkedBy {
		if a.LinkedBy[i].Package.Value == importer {
			return &a.LinkedBy[i], true
		}
	}
	return nil, false
}

//go:embed crypto.yaml
var shippedCrypto []byte

// ShippedCryptoFile names the crypto policy built into the binaries.
const ShippedCryptoFile = "policies/crypto.yaml"

// ShippedCrypto is the crypto policy this build was made with
// (policies/crypto.yaml, embedded): a daemon honours an insecure mode
// only by an exception it grants, or one of the operator's own policy
// file (rustynet-controller serve --crypto-policy).
func ShippedCrypto() (*Crypto, error) {
	return ParseCrypto(ShippedCryptoFile+" (built in)", shippedCrypto)
}

// LoadCrypto reads and checks a crypto policy file.
func LoadCrypto(path string) (*Crypto, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCrypto(path, data)
}

// AlgorithmFor returns the algorithm a Go package implements, if the
// policy maps it.
func (c *Crypto) AlgorithmFor(pkg string) (*Algorithm, bool) {
	for i := range c.Algorithms {
		if slices.ContainsFunc(c.Algorithms[i].GoPackages, func(p Str) bool { return p.Value == pkg }) {
			return &c.Algorithms[i], true
		}
	}
	return nil, false
}

// Algorithm returns an algorithm by name.
func (c *Crypto) Algorithm(name string) (*Algorithm, bool) {
	for i := range c.Algorithms {
		if c.Algorithms[i].Name.Value == name {
			return &c.Algorithms[i], true
		}
	}
	return nil, false
}

// StatusAt is the algorithm's effective status at t: a deprecation or
// removal dated in the future is not yet in force, and a deprecated
// algorithm is removed from its removal date.
func (a *Algorithm) StatusAt(t time.Time) string {
	if a.Status.Value == Deprecated && a.Removal != nil && !t.Before(a.Removal.Time) {
		return Removed // its removal date has come
	}
	if a.Status.Value != Allowed && t.Before(a.Since.Time) {
		if a.Status.Value == Removed {
			return Deprecated // scheduled for removal: warn until the date
		}
		return Allowed
	}
	return a.Status.Value
}

// RemovedOn is when the algorithm is, or is to be, removed: the removal
// date of a deprecated algorithm, the date of a removed one; zero for an
// allowed one.
func (a *Algorithm) RemovedOn() time.Time {
	switch {
	case a.Status.Value == Deprecated && a.Removal != nil:
		return a.Removal.Time
	case a.Status.Value == Removed:
		return a.Since.Time
	}
	return time.Time{}
}

// CheckHorizon refuses a policy with an exception that expires more than
// MaxHorizon after now.
func (c *Crypto) CheckHorizon(now time.Time) error {
	for _, e := range c.Exceptions {
		if err := checkHorizon(c.File, "the exception for "+e.Mode.Value, e.Expires, now); err != nil {
			return err
		}
	}
	return nil
}

// ActiveExceptions returns the exceptions in force at t and those that
// have lapsed.
func (c *Crypto) ActiveExceptions(t time.Time) (active, lapsed []Exception) {
	for _, e := range c.Exceptions {
		if t.Before(e.Expires.Time) {
			active = append(active, e)
		} else {
			lapsed = append(lapsed, e)
		}
	}
	return active, lapsed
}
