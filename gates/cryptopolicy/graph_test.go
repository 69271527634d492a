package cryptopolicy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// fixture is a module of its own (testdata/scanmod) with a third-party
// module beside it; each command under cmd/ is one case.
const fixture = "testdata/scanmod"

// TestScanEdges: the scan follows the whole graph (the third-party
// package the module imports, and what it imports), marks the module's own
// packages, and leaves out the standard library importing itself
// (crypto/tls importing crypto/md5, crypto/sha1 and crypto/rsa).
func TestScanEdges(t *testing.T) {
	got, err := scan(context.Background(), fixture, "./cmd/...")
	if err != nil {
		t.Fatal(err)
	}
	want := []Edge{
		{Crypto: "crypto/md5", By: "example.com/scanmod/cmd/md5", Own: true},
		{Crypto: "crypto/md5", By: "example.com/thirdparty/weak"},
		{Crypto: "crypto/sha256", By: "example.com/scanmod/cmd/clean", Own: true},
		{Crypto: "crypto/sha3", By: "example.com/scanmod/cmd/unmapped", Own: true},
		{Crypto: "crypto/tls", By: "example.com/scanmod/cmd/clean", Own: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("scan(%s, ./cmd/...) =\n%+v\nwant\n%+v", fixture, got, want)
	}
}

func TestScanError(t *testing.T) {
	if edges, err := scan(context.Background(), t.TempDir(), "./..."); err == nil {
		t.Errorf("scan of a directory outside any module = %v, nil; want an error", edges)
	}
}

// fixturePolicy maps the fixture's crypto packages but crypto/sha3; md5 is
// removed from since, with the given linked_by entries.
func fixturePolicy(t *testing.T, since string, linkedBy ...string) *policies.Crypto {
	t.Helper()
	y := `version: 1
cadence: {max_deprecated_months: 12}
algorithms:
  - name: tls-1.3
    use: x
    status: allowed
    go_packages: [crypto/tls]
  - name: sha256
    use: x
    status: allowed
    go_packages: [crypto/sha256]
  - name: md5
    use: none
    status: removed
    since: ` + since + `
    go_packages: [crypto/md5]
`
	if len(linkedBy) > 0 {
		y += "    linked_by:\n"
		for _, p := range linkedBy {
			y += fmt.Sprintf("      - package: %s\n        reason: linked, never called\n", p)
		}
	}
	pol, err := policies.ParseCrypto("crypto.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestCheckGraph: each way the code can break the policy fails the check,
// saying why, and the fixture's clean command passes.
func TestCheckGraph(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		pattern  string
		since    string
		linkedBy []string
		fail     []string
		ok       string // a passing finding that must be there
	}{
		{name: "clean", pattern: "./cmd/clean", since: "2026-01-01", ok: "crypto/tls (tls-1.3) is allowed"},
		{name: "unmapped import", pattern: "./cmd/unmapped", since: "2026-01-01",
			fail: []string{"crypto/sha3 is imported by example.com/scanmod/cmd/unmapped, but crypto.yaml maps it to no algorithm"}},
		{name: "removed algorithm imported by the module", pattern: "./cmd/md5", since: "2026-01-01",
			fail: []string{"crypto/md5 (md5, removed on 2026-01-01) is imported by the module's own example.com/scanmod/cmd/md5"}},
		{name: "the module's own package in linked_by", pattern: "./cmd/md5", since: "2026-01-01", linkedBy: []string{"example.com/scanmod/cmd/md5"},
			fail: []string{"cannot excuse the module's own package"}},
		{name: "removed algorithm linked by a third party, not listed", pattern: "./cmd/linked", since: "2026-01-01",
			fail: []string{"crypto/md5 (md5, removed on 2026-01-01) is imported by example.com/thirdparty/weak, which the linked_by of md5 does not list"}},
		{name: "removed algorithm linked by a third party, listed", pattern: "./cmd/linked", since: "2026-01-01", linkedBy: []string{"example.com/thirdparty/weak"},
			ok: "is linked by example.com/thirdparty/weak, listed in crypto.yaml:18: linked, never called"},
		{name: "a linked_by entry that matches nothing", pattern: "./cmd/clean", since: "2026-01-01", linkedBy: []string{"example.com/thirdparty/weak"},
			fail: []string{"the linked_by entry for example.com/thirdparty/weak under md5 (crypto.yaml:18) matches no import"}},
		{name: "removal scheduled", pattern: "./cmd/linked", since: "2027-01-01", ok: "it will block from 2027-01-01"},
	} {
		t.Run(c.name, func(t *testing.T) {
			edges, err := scan(context.Background(), fixture, c.pattern)
			if err != nil {
				t.Fatal(err)
			}
			rep := testReport(t)
			checkGraph(rep, fixturePolicy(t, c.since, c.linkedBy...), edges, now)
			wantFailures(t, rep, c.fail...)
			if c.ok != "" && !hasFinding(rep, true, c.ok) {
				t.Errorf("no passing finding says %q: %+v", c.ok, rep.findings)
			}
			for _, f := range rep.findings {
				for _, std := range []string{"crypto/rsa", "crypto/sha1", "by crypto/"} {
					if strings.Contains(f.Detail, std) {
						t.Errorf("finding %q judges the standard library importing itself", f.Detail)
					}
				}
			}
		})
	}
}

// TestShippedGraph: the shipped binaries' graph as it is today meets the
// shipped policy, every linked_by entry matches an import, and the scan
// reaches past the module's direct imports (dsse -> x/crypto/ssh ->
// crypto/md5).
func TestShippedGraph(t *testing.T) {
	pol, err := loadPolicy(root, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	edges, err := scan(context.Background(), root, Shipped)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Edge{
		{Crypto: "golang.org/x/crypto/ssh", By: "github.com/secure-systems-lab/go-securesystemslib/dsse"},
		{Crypto: "crypto/md5", By: "golang.org/x/crypto/ssh"},
		{Crypto: "crypto/tls", By: "github.com/rustynet/rustynet/node/control", Own: true},
	} {
		if !slices.Contains(edges, e) {
			t.Errorf("the scan of %s has no edge %+v", Shipped, e)
		}
	}
	rep := testReport(t)
	checkGraph(rep, pol, edges, time.Now())
	wantFailures(t, rep)
	if !hasFinding(rep, true, "crypto/md5 (md5, removed on 2026-11-25) is linked by golang.org/x/crypto/ssh") {
		t.Errorf("the linked_by entry of md5 for x/crypto/ssh is not reported")
	}
}

// TestCheckGraphDeprecatedPastRemoval: a deprecated algorithm is reported
// until its removal date, with that date, and judged removed from it: the
// module's own import of it then blocks.
func TestCheckGraphDeprecatedPastRemoval(t *testing.T) {
	pol, err := policies.ParseCrypto("crypto.yaml", []byte(`version: 1
cadence: {max_deprecated_months: 6}
algorithms:
  - name: md5
    use: none
    status: deprecated
    since: 2026-06-01
    removal: 2026-12-01
    go_packages: [crypto/md5]
`))
	if err != nil {
		t.Fatal(err)
	}
	edges, err := scan(context.Background(), fixture, "./cmd/md5")
	if err != nil {
		t.Fatal(err)
	}
	rep := testReport(t)
	checkGraph(rep, pol, edges, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
	wantFailures(t, rep)
	if want := "crypto/md5 (md5, deprecated from 2026-06-01, to be removed on 2026-12-01) is imported by the module's own example.com/scanmod/cmd/md5: reported; once removed it blocks"; !hasFinding(rep, true, want) {
		t.Errorf("before the removal: no passing finding says %q: %+v", want, rep.findings)
	}
	rep = testReport(t)
	checkGraph(rep, pol, edges, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	wantFailures(t, rep, "crypto/md5 (md5, removed on 2026-12-01) is imported by the module's own example.com/scanmod/cmd/md5")
}
