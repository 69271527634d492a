package policies

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var knownGates = func(g string) bool {
	switch g {
	case "build", "unit", "conformance", "crypto-policy", "architecture", "compat", "perf-budget", "soak", "slo", "incident", "dr", "pq-readiness":
		return true
	}
	return false
}

// TestShippedPoliciesLoad checks the policies in this directory.
func TestShippedPoliciesLoad(t *testing.T) {
	r, err := LoadRelease("release.yaml", knownGates)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"nightly", "beta", "ga"} {
		if g, err := r.Gates(ch); err != nil || len(g) == 0 {
			t.Errorf("Gates(%s) = %v, %v", ch, g, err)
		}
	}
	c, err := LoadCrypto("crypto.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := c.AlgorithmFor("crypto/md5"); !ok || a.Status.Value != Removed {
		t.Errorf("crypto/md5 maps to %+v, want a removed algorithm", a)
	}
	for _, a := range c.Algorithms {
		for _, l := range a.LinkedBy {
			if strings.HasPrefix(l.Package.Value, "github.com/rustynet/rustynet") {
				t.Errorf("crypto.yaml:%d: %s lists the module's own %s in linked_by; a removed algorithm the module imports always blocks", l.Package.Line, a.Name.Value, l.Package.Value)
			}
		}
	}
	if len(r.Digest) != 64 || len(c.Digest) != 64 {
		t.Error("policy digests missing")
	}
}

func TestReleaseRefusals(t *testing.T) {
	for _, c := range []struct {
		yaml     string
		line     int
		contains string
	}{
		{"", 0, "empty"},
		{"version: 2\nchannels: {}\n", 1, "version 2"},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build, fuzz]\n", 4, `gate "fuzz", which is not registered`},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build]\n    extra: 1\n", 5, "field extra not found"},
		{"version: 1\nchannels:\n  weekly:\n    gates: [build]\n", 0, `channel "weekly"`},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build, build]\n", 4, "twice"},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build]\nwaivers:\n  - gate: unit\n    owner: a@b.c\n    reason: flaky\n    ticket: RN-1\n", 6, "no expiry"},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build]\nwaivers:\n  - gate: unit\n    owner: a@b.c\n    reason: flaky\n    ticket: RN-1\n    expires: soon\n", 10, "not a date"},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build]\nwaivers:\n  - gate: unit\n    reason: flaky\n    ticket: RN-1\n    expires: 2027-01-01\n", 6, "no owner"},
		{"version: 1\nchannels:\n  nightly:\n    gates: [build]\nwaivers:\n  - gate: unit\n    channels: [ga]\n    owner: a@b.c\n    reason: r\n    ticket: t\n    expires: 2027-01-01\n", 7, `channel "ga"`},
	} {
		_, err := ParseRelease("release.yaml", []byte(c.yaml), knownGates)
		var pe *Error
		if !errors.As(err, &pe) || pe.Line != c.line || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("ParseRelease(%q) = %v, want line %d containing %q", c.yaml, err, c.line, c.contains)
		}
	}
}

func TestWaiverLapses(t *testing.T) {
	r, err := ParseRelease("release.yaml", []byte(`version: 1
channels:
  nightly:
    gates: [unit]
  ga:
    gates: [unit]
waivers:
  - gate: unit
    channels: [nightly]
    owner: ops
    reason: known flake
    ticket: RN-7
    expires: 2026-12-01
`), knownGates)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	after := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if a, _ := r.Waiver("unit", "nightly", before); a == nil {
		t.Error("the waiver is not in force before it expires")
	}
	if a, x := r.Waiver("unit", "nightly", after); a != nil || x == nil {
		t.Errorf("at expiry: active %v, expired %v; want none active and the expired one reported", a, x)
	}
	if a, _ := r.Waiver("unit", "ga", before); a != nil {
		t.Error("a nightly waiver applies to ga")
	}
}

func TestCryptoRefusalsAndSchedule(t *testing.T) {
	for _, c := range []struct {
		yaml     string
		contains string
	}{
		{"version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: md5\n    use: x\n    status: removed\n", "no date"},
		{"version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: md5\n    use: x\n    status: banned\n    since: 2026-01-01\n", "want allowed"},
		{"version: 1\ncadence: {max_deprecated_months: 12}\ninsecure_modes:\n  - name: tls12\n    default: on\n", "default must be off"},
		{"version: 1\ncadence: {max_deprecated_months: 12}\nexceptions:\n  - mode: tls12\n    owner: a@b.c\n    reason: r\n    expires: 2027-01-01\n", "not an insecure mode"},
		{"version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: a\n    use: x\n    status: allowed\n    go_packages: [crypto/sha1]\n  - name: b\n    use: x\n    status: allowed\n    go_packages: [crypto/sha1]\n", "mapped to both"},
	} {
		if _, err := ParseCrypto("crypto.yaml", []byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.contains) {
			t.Errorf("ParseCrypto(%q) = %v, want an error containing %q", c.yaml, err, c.contains)
		}
	}
	c, err := ParseCrypto("crypto.yaml", []byte("version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: x25519-tls-kex\n    use: x\n    status: removed\n    since: 2027-07-01\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Algorithm("x25519-tls-kex")
	if a.Removal != nil {
		t.Error("a removed algorithm has a removal date")
	}
	if got := a.StatusAt(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); got != Deprecated {
		t.Errorf("a removal scheduled for later: status %s before the date, want deprecated", got)
	}
	if got := a.StatusAt(time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC)); got != Removed {
		t.Errorf("status on the removal date = %s, want removed", got)
	}
}

// TestCryptoCadence: every deprecated algorithm states its removal, at
// most cadence.max_deprecated_months after its deprecation, and is judged
// removed from then; anything else is refused with its line.
func TestCryptoCadence(t *testing.T) {
	const head = "version: 1\ncadence: {max_deprecated_months: 6}\nalgorithms:\n  - name: x25519-tls-kex\n    use: x\n"
	for _, c := range []struct {
		yaml     string
		line     int
		contains string
	}{
		{"version: 1\nalgorithms: []\n", 0, "cadence.max_deprecated_months: 0; want at least 1"},
		{"version: 1\ncadence: {max_deprecated_months: 0}\nalgorithms: []\n", 2, "want at least 1"},
		{head + "    status: deprecated\n    since: 2027-01-01\n", 6, "deprecated but has no removal date: the cadence wants one at most 6 months after 2027-01-01"},
		{head + "    status: deprecated\n    since: 2027-01-01\n    removal: 2027-07-02\n", 8, "removal 2027-07-02 is more than 6 months after its deprecation 2027-01-01 (cadence.max_deprecated_months): the latest is 2027-07-01"},
		{head + "    status: deprecated\n    since: 2027-01-01\n    removal: 2027-01-01\n", 8, "is not after its deprecation"},
		{head + "    status: allowed\n    removal: 2027-01-01\n", 7, "only a deprecated algorithm has a removal date"},
	} {
		_, err := ParseCrypto("crypto.yaml", []byte(c.yaml))
		var pe *Error
		if !errors.As(err, &pe) || pe.Line != c.line || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("ParseCrypto(%q) = %v, want line %d containing %q", c.yaml, err, c.line, c.contains)
		}
	}
	c, err := ParseCrypto("crypto.yaml", []byte(head+"    status: deprecated\n    since: 2027-01-01\n    removal: 2027-07-01\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Algorithm("x25519-tls-kex")
	for at, want := range map[time.Time]string{
		time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC): Allowed,
		time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC):   Deprecated,
		time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC):   Removed,
	} {
		if got := a.StatusAt(at); got != want {
			t.Errorf("status at %s = %s, want %s", at.Format(time.DateOnly), got, want)
		}
	}
}

// TestCryptoLinkedBy: a linked_by entry names a third-party package and a
// reason, once, under a deprecated or removed algorithm that maps a Go
// package; anything else is refused with its line.
func TestCryptoLinkedBy(t *testing.T) {
	const head = "version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: md5\n    use: none\n"
	removed := head + "    status: removed\n    since: 2026-11-25\n    go_packages: [crypto/md5]\n    linked_by:\n"
	for _, c := range []struct {
		yaml     string
		line     int
		contains string
	}{
		{head + "    status: allowed\n    go_packages: [crypto/md5]\n    linked_by:\n      - package: example.com/x\n        reason: r\n", 9, "allowed: linked_by is for deprecated and removed"},
		{head + "    status: removed\n    since: 2026-11-25\n    linked_by:\n      - package: example.com/x\n        reason: r\n", 9, "maps no Go package"},
		{removed + "      - reason: r\n", 10, "names no package"},
		{removed + "      - package: crypto/tls\n        reason: r\n", 10, "third-party import path"},
		{removed + "      - package: example.com/x y\n        reason: r\n", 10, "third-party import path"},
		{removed + "      - package: example.com/x\n", 10, "has no reason"},
		{removed + "      - package: example.com/x\n        reason: \"  \"\n", 10, "has no reason"},
		{removed + "      - package: example.com/x\n        reason: r\n      - package: example.com/x\n        reason: s\n", 12, "listed twice"},
		{removed + "      - package: example.com/x\n        reason: r\n        owner: me\n", 12, "field owner not found"},
		{removed + "      - example.com/x\n", 10, "cannot unmarshal"},
	} {
		_, err := ParseCrypto("crypto.yaml", []byte(c.yaml))
		var pe *Error
		if !errors.As(err, &pe) || pe.Line != c.line || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("ParseCrypto(%q) = %v, want line %d containing %q", c.yaml, err, c.line, c.contains)
		}
	}
	c, err := ParseCrypto("crypto.yaml", []byte(removed+"      - package: example.com/x/ssh\n        reason: linked, never called\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.AlgorithmFor("crypto/md5")
	if l, ok := a.Linked("example.com/x/ssh"); !ok || l.Reason.Value != "linked, never called" || l.Package.Line != 10 {
		t.Errorf("Linked(example.com/x/ssh) = %+v, %v; want the entry on line 10 with its reason", l, ok)
	}
	if _, ok := a.Linked("example.com/x"); ok {
		t.Error("Linked matched a package the entry does not name")
	}
}

func FuzzParseRelease(f *testing.F) {
	for _, s := range []string{"version: 1\nchannels:\n  nightly:\n    gates: [build]\n", "", "waivers: [{gate: x}]", "channels: {ga: {gates: [unit, unit]}}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRelease("release.yaml", data, knownGates)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v (%T) is not a *policies.Error with a message", err, err)
			}
			return
		}
		for _, ch := range r.ChannelNames() {
			if _, err := r.Gates(ch); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzParseCrypto(f *testing.F) {
	f.Add([]byte("version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - name: a\n    use: b\n    status: allowed\n"))
	f.Add([]byte("version: 1\ncadence: {max_deprecated_months: 12}\ninsecure_modes: [{name: m, default: off}]\nexceptions: [{mode: m, owner: o, reason: r, ticket: t, expires: 2020-01-01}]\n"))
	f.Add([]byte("version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms:\n  - {name: md5, use: none, status: removed, since: 2026-11-25, go_packages: [crypto/md5], linked_by: [{package: golang.org/x/crypto/ssh, reason: never called}]}\n"))
	shipped, err := os.ReadFile("crypto.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseCrypto("crypto.yaml", data); err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v (%T) is not a *policies.Error with a message", err, err)
			}
		}
	})
}

func TestShippedBudgetsLoad(t *testing.T) {
	b, err := LoadBudgets("budgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"nightly", "beta", "ga"} {
		if _, err := b.SoakDuration(ch); err != nil {
			t.Error(err)
		}
	}
	if d, _ := b.SoakDuration("ga"); d != 24*time.Hour {
		t.Errorf("GA soak = %v, want 24h", d)
	}
}

// TestSoakFloor: a channel's soak is never shorter than its floor in
// code (GA 24 h, beta 2 h, nightly 10 min), whatever budgets.yaml says: a
// file that sets less is refused, naming the channel and its floor.
func TestSoakFloor(t *testing.T) {
	durations := "duration: {nightly: 10m, beta: 2h, ga: 24h}"
	if !strings.Contains(string(budgetsForTest), durations) {
		t.Fatal("budgetsForTest changed: update this test")
	}
	if b, err := ParseBudgets("b.yaml", budgetsForTest); err != nil {
		t.Fatalf("the floors themselves: %v", err)
	} else if d, _ := b.SoakDuration("ga"); d != 24*time.Hour {
		t.Errorf("SoakDuration(ga) = %v, want 24h", d)
	}
	for _, c := range []struct{ durations, want string }{
		{"duration: {nightly: 10m, beta: 2h, ga: 12h}", `soak.duration.ga: "12h" is under the ga channel's floor of 24h0m0s`},
		{"duration: {nightly: 10m, beta: 1h59m, ga: 24h}", `soak.duration.beta: "1h59m" is under the beta channel's floor of 2h0m0s`},
		{"duration: {nightly: 5m, beta: 2h, ga: 24h}", `soak.duration.nightly: "5m" is under the nightly channel's floor of 10m0s`},
	} {
		data := strings.Replace(string(budgetsForTest), durations, c.durations, 1)
		if _, err := ParseBudgets("b.yaml", []byte(data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseBudgets(soak %s) = %v, want an error saying %q", c.durations, err, c.want)
		}
	}
	for ch, want := range map[string]time.Duration{"nightly": 10 * time.Minute, "beta": 2 * time.Hour, "ga": 24 * time.Hour} {
		if got := SoakFloor(ch); got != want {
			t.Errorf("SoakFloor(%s) = %v, want %v", ch, got, want)
		}
	}
}

// TestShortSoak: the short soak's settings are optional, and checked
// when given: a sampling interval or duration must be positive, a warm-up
// may be zero.
func TestShortSoak(t *testing.T) {
	base := strings.TrimSuffix(string(budgetsForTest), "}\n")
	for _, c := range []struct {
		short string
		want  string // an error, or "" for none
	}{
		{"", ""},
		{", short: {duration: 5m, sample_every: 5s, warmup: 0s}", ""},
		{", short: {duration: 0s, sample_every: 5s, warmup: 1m}", `soak.short.duration: "0s" is not a positive duration`},
		{", short: {duration: 5m, warmup: 1m}", `soak.short.sample_every: "" is not a positive duration`},
	} {
		b, err := ParseBudgets("b.yaml", []byte(base+c.short+"}\n"))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ParseBudgets(soak%s) = %v, want it accepted", c.short, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ParseBudgets(soak%s) = %v, want an error saying %q", c.short, err, c.want)
		case c.want == "" && c.short != "" && b.Soak.Short.Duration != "5m":
			t.Errorf("ParseBudgets(soak%s): short = %+v", c.short, b.Soak.Short)
		}
	}
}

func TestBudgetsFor(t *testing.T) {
	b, err := ParseBudgets("b.yaml", []byte(`version: 1
matrix: {nightly: n.yaml, beta: r.yaml, ga: r.yaml}
budgets:
  - cell: "throughput/backend=wireguard/*/*/traffic=tcp-bulk"
    metric: tunnel_to_raw
    min: 0.1
    basis: measured 0.17
regression: {alpha: 0.05, min_change: 0.05}
soak: {duration: {nightly: 10m, beta: 2h, ga: 24h}, sample_every: 10s, warmup: 1m, rate_mbps: 10, max_rss_mib_per_hour: 1, max_heap_live_mib_per_hour: 1, max_goroutines_per_hour: 1, max_fds_per_hour: 1, max_rss_mib: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.For("throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk", "tunnel_to_raw"); len(got) != 1 {
		t.Errorf("For(wireguard tcp-bulk) = %v, want the budget", got)
	}
	if got := b.For("throughput/backend=quic/mtu=1420/peers=2/traffic=tcp-bulk", "tunnel_to_raw"); len(got) != 0 {
		t.Errorf("For(quic) = %v, want none", got)
	}
	if _, err := ParseBudgets("b.yaml", []byte("version: 1\nmatrix: {nightly: n.yaml}\n")); err == nil {
		t.Error("a budgets file without every channel's matrix was accepted")
	}
	good := "regression: {alpha: 0.05, min_change: 0.05}"
	for _, c := range []struct{ noise, want string }{
		{"[{cell: 'a/**', metric: m, min_change: 0.5}]", "basis"},
		{"[{cell: 'a/**', metric: m, min_change: 0, basis: x}]", "min_change must be positive"},
		{"[{cell: 'a/**', min_change: 0.5, basis: x}]", "names no metric"},
		{"[{cell: 'a/[', metric: m, min_change: 0.5, basis: x}]", "malformed"},
	} {
		data := strings.Replace(string(budgetsForTest), good, "regression: {alpha: 0.05, min_change: 0.05, noise: "+c.noise+"}", 1)
		if _, err := ParseBudgets("b.yaml", []byte(data)); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "b.yaml:") {
			t.Errorf("noise %s: error %v, want one with its line saying %q", c.noise, err, c.want)
		}
	}
}

var budgetsForTest = []byte(`version: 1
matrix: {nightly: n.yaml, beta: r.yaml, ga: r.yaml}
regression: {alpha: 0.05, min_change: 0.05}
soak: {duration: {nightly: 10m, beta: 2h, ga: 24h}, sample_every: 10s, warmup: 1m, rate_mbps: 10, max_rss_mib_per_hour: 1, max_heap_live_mib_per_hour: 1, max_goroutines_per_hour: 1, max_fds_per_hour: 1, max_rss_mib: 100}
`)

func TestMatchCell(t *testing.T) {
	cell := "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"
	for _, c := range []struct {
		pattern string
		want    bool
	}{
		{cell, true},
		{"throughput/backend=wireguard/*/*/traffic=tcp-bulk", true},
		{"throughput/backend=wireguard/**", true},
		{"throughput/**", true},
		{"throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk/**", true}, // ** matches no further part
		{"throughput/*", false},                                                     // * stays within one part
		{"throughput/backend=quic/**", false},
		{"handshake/**", false},
		{"throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk/extra/**", false},
	} {
		if got := MatchCell(c.pattern, cell); got != c.want {
			t.Errorf("MatchCell(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
	for _, bad := range []string{"", "**", "a/**/b", "a/b**", "a/[", "a//b"} {
		if err := checkCellPattern(bad); err == nil {
			t.Errorf("pattern %q was accepted", bad)
		}
	}
}

func FuzzParseBudgets(f *testing.F) {
	shipped, err := os.ReadFile("budgets.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	f.Add([]byte("version: 1\nbudgets: [{cell: 'a/**', metric: m, min: 2, max: 1, basis: b}]\n"))
	f.Add([]byte("version: 1\ntargets: [{cell: '[', metric: m}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBudgets("budgets.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v (%T) is not a *policies.Error with a message", err, err)
			}
			return
		}
		for _, bu := range append(b.Budgets, b.Targets...) {
			MatchCell(bu.Cell.Value, "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk")
		}
		for _, ch := range []string{"nightly", "beta", "ga"} {
			if _, err := b.SoakDuration(ch); err != nil {
				t.Fatalf("accepted, but %v", err)
			}
		}
	})
}

// TestHorizon: a waiver or an exception may not be granted for more than
// 90 days from the time it is checked at; an exception names its ticket.
func TestHorizon(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	rel := func(expires string) string {
		return "version: 1\nchannels:\n  nightly:\n    gates: [unit]\nwaivers:\n  - gate: unit\n    owner: a@b.c\n    reason: flaky\n    ticket: RN-1\n    expires: " + expires + "\n"
	}
	for expires, ok := range map[string]bool{"2027-03-01": true, "2027-03-02": true, "2027-03-03": false, "2030-01-01": false, "2026-01-01": true} {
		r, err := ParseRelease("release.yaml", []byte(rel(expires)), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = r.CheckHorizon(now)
		if (err == nil) != ok {
			t.Errorf("waiver expiring %s checked on %s: %v, want ok=%v", expires, now.Format(time.DateOnly), err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "release.yaml:10") {
			t.Errorf("refusal %q does not name the line of the expiry", err)
		}
	}
	cry := func(expires, ticket string) string {
		return "version: 1\ncadence: {max_deprecated_months: 12}\ninsecure_modes: [{name: m, default: off}]\nexceptions:\n  - mode: m\n    owner: a@b.c\n    reason: r\n" + ticket + "    expires: " + expires + "\n"
	}
	c, err := ParseCrypto("crypto.yaml", []byte(cry("2027-06-01", "    ticket: RN-2\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckHorizon(now); err == nil || !strings.Contains(err.Error(), "more than 90 days") {
		t.Errorf("exception six months ahead: %v, want a refusal", err)
	}
	if _, err := ParseCrypto("crypto.yaml", []byte(cry("2027-01-01", ""))); err == nil || !strings.Contains(err.Error(), "no ticket") {
		t.Errorf("exception without a ticket: %v, want a refusal", err)
	}
}

func TestParseSLO(t *testing.T) {
	good, err := os.ReadFile("slo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseSLO("slo.yaml", good)
	if err != nil {
		t.Fatalf("slo.yaml: %v", err)
	}
	if p.Profiles[Nightly].Duration.D != 5*time.Minute {
		t.Errorf("nightly duration %v", p.Profiles[Nightly].Duration.D)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"    duration: 5m\n", "    duration: 4m\n", "profiles.nightly.duration: 4m0s is under 5m0s"},
		{"    duration: 5m\n", "    duration: soon\n", `"soon" is not a duration`},
		{"  ga:\n", "  gamma:\n", "no load profile for channel ga"},
		{"max_burn_rate: 1\n", "max_burn_rate: 2\n", "max_burn_rate: want more than 0 and at most 1"},
		{"min_events: 20\n", "min_events: 0\n", "min_events: want at least 1"},
		{"scrape_interval: 2s\n", "scrape_interval: 1m\n", "scrape_interval: at most 15s"},
		{"    nodes: 3\n", "    nodes: 1\n", "profiles.nightly.nodes: 1"},
		{"    removals_per_minute: 6\n", "    removals_per_minute: 60\n", "removals_per_minute: want 0 to registrations_per_minute"},
		{"min_events: 20\n", "min_events: 20\nmin_event: 3\n", "field min_event not found"},
	} {
		bad := strings.Replace(string(good), tc.from, tc.to, 1)
		if bad == string(good) {
			t.Fatalf("case %q changes nothing", tc.to)
		}
		if _, err := ParseSLO("slo.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "slo.yaml") {
			t.Errorf("%q: got %v, want an error naming slo.yaml and %q", strings.TrimSpace(tc.to), err, tc.want)
		}
	}
}

func FuzzParseSLO(f *testing.F) {
	if good, err := os.ReadFile("slo.yaml"); err == nil {
		f.Add(good)
	}
	f.Add([]byte("version: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseSLO("f.yaml", data)
		if err == nil && (p.MaxBurnRate <= 0 || len(p.Profiles) < len(Channels)) {
			t.Fatalf("accepted %+v", p)
		}
	})
}
