package policies

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// testFields is a registry of two gates for checklist tests.
func testFields(gate string) ([]string, bool) {
	switch gate {
	case "unit":
		return []string{"passed", "failed"}, true
	case "slo":
		return []string{"problems"}, true
	}
	return nil, false
}

const goodChecklist = `version: 1
roles:
  security:
    - id: review
      what: reviewed
      manual: true
  engineering:
    - id: tests
      what: every test passed
      gate: unit
      field: details.failed
      want: "== 0"
    - id: unit-status
      what: unit passed
      gate: unit
      field: status
      want: pass
  compliance:
    - id: release-key
      what: a release key
      gate: bundle
      field: development_key
      want: "false"
`

func TestChecklistLoads(t *testing.T) {
	c, err := ParseChecklist("launch-checklist.yaml", []byte(goodChecklist), testFields)
	if err != nil {
		t.Fatal(err)
	}
	if items := c.Items(RoleEngineering); len(items) != 2 || items[0].ID.Value != "tests" || items[0].ID.Line != 8 || !items[0].Automated() {
		t.Errorf("engineering items %+v", items)
	}
	if items := c.Items(RoleSecurity); len(items) != 1 || items[0].Automated() {
		t.Errorf("security items %+v", items)
	}
	// The shipped checklist parses (its gates are checked against the
	// real registry in cmd/rustynet-gate's tests).
	if _, err := LoadChecklist("launch-checklist.yaml", func(string) ([]string, bool) { return []string{"problems", "failed"}, true }); err != nil {
		t.Fatal(err)
	}
}

func TestChecklistRefusals(t *testing.T) {
	item := func(body string) string {
		return "version: 1\nroles:\n  security:\n    - id: x\n      what: y\n" + body
	}
	for _, c := range []struct {
		yaml, contains string
		line           int
	}{
		{item("      gate: nosuch\n      field: status\n      want: pass\n"), `gate "nosuch", which is not registered`, 6},
		{item("      gate: unit\n      field: details.nosuch\n      want: empty\n"), "has no field details.nosuch", 7},
		{item("      gate: unit\n      field: reason\n      want: empty\n"), "want status or details.KEY", 7},
		{item("      gate: unit\n      field: status\n      want: empty\n"), "can only be wanted to pass", 8},
		{item("      gate: unit\n      field: details.failed\n      want: pass\n"), "want pass is for a gate's status", 8},
		{item("      gate: unit\n      field: details.failed\n      want: '> 0'\n"), "want \"> 0\"", 8},
		{item("      gate: unit\n"), "names its gate, field and want", 4},
		{item("      manual: true\n      gate: unit\n"), "is manual and names evidence too", 4},
		{item("      gate: bundle\n      field: commit\n      want: absent\n"), "the bundle's manifest has no field", 7},
		{item("      manual: true\n    - id: x\n      what: z\n      manual: true\n"), "item x is listed twice (first on line 4)", 7},
		{"version: 1\nroles:\n  legal:\n    - {id: x, what: y, manual: true}\n", `role "legal"`, 0},
		{"version: 1\nroles:\n  security: []\n", "role security has no item", 0},
		{"version: 1\nroles:\n  security:\n    - {id: X Y, what: y, manual: true}\n", "item id", 4},
		{"version: 1\nroles:\n  security:\n    - {id: x, manual: true}\n", "says nothing of what it attests", 4},
		{"version: 1\nroles:\n  security:\n    - {id: x, what: y, manual: true, signed: yes}\n", "signed", 4},
		{"version: 2\nroles: {}\n", "version 2", 1},
	} {
		_, err := ParseChecklist("launch-checklist.yaml", []byte(c.yaml), testFields)
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, c.contains) || (c.line > 0 && pe.Line != c.line) {
			t.Errorf("ParseChecklist(%q) = %v; want line %d containing %q", c.yaml, err, c.line, c.contains)
		}
	}
}

func FuzzParseChecklist(f *testing.F) {
	f.Add([]byte(goodChecklist))
	f.Add([]byte("version: 1\nroles:\n  security:\n    - {id: a, what: b, gate: unit, field: details.failed, want: '>= -1.5'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseChecklist("launch-checklist.yaml", data, testFields)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v (%T) is not a *policies.Error with a message", err, err)
			}
			return
		}
		for _, role := range Roles {
			for _, it := range c.Items(role) {
				if it.Automated() {
					if _, err := ParseWant(it.Want.Value); err != nil {
						t.Fatalf("accepted item %s with want %q: %v", it.ID.Value, it.Want.Value, err)
					}
				}
			}
		}
	})
}

func testPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func indent(s string) string {
	return "          " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n          ") + "\n"
}

func TestReleaseSigners(t *testing.T) {
	k1, k2 := testPublicKey(t), testPublicKey(t)
	base := "version: 1\nchecklist: launch-checklist.yaml\nchannels:\n  ga:\n    gates: [build]\n    signoffs: [security]\n"
	signers := "signers:\n  security:\n    - name: alice\n      key: |\n" + indent(k1)
	r, err := ParseRelease("release.yaml", []byte(base+signers), knownGates)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Signers[RoleSecurity][0]
	if s.KeyID == "" || !strings.HasPrefix(s.KeyID, "SHA256:") || s.Public == nil {
		t.Fatalf("signer %+v: want its key parsed and its ID", s)
	}
	if got := r.Signoffs("ga"); len(got) != 1 || got[0] != RoleSecurity {
		t.Errorf("Signoffs(ga) = %v", got)
	}
	if role, who, ok := r.RoleOfKey(s.KeyID); !ok || role != RoleSecurity || who.Name.Value != "alice" {
		t.Errorf("RoleOfKey = %q %+v %v", role, who, ok)
	}
	for _, c := range []struct{ yaml, contains string }{
		{base, "signers lists no key for it"},
		{strings.Replace(base, "checklist: launch-checklist.yaml\n", "", 1) + signers, "names no checklist"},
		{strings.Replace(base, "[security]", "[legal]", 1) + signers, `role "legal"`},
		{strings.Replace(base, "[security]", "[security, security]", 1) + signers, "security twice"},
		{base + "signers:\n  security:\n    - name: alice\n      key: not a key\n", "want a PKIX PEM block"},
		{base + "signers:\n  security:\n    - key: |\n" + indent(k1), "has no name"},
		{base + signers + "  operations:\n    - name: bob\n      key: |\n" + indent(k1), "has the key of operations/bob"},
		{base + "signers:\n  legal:\n    - name: bob\n      key: |\n" + indent(k2), `signers for role "legal"`},
		{strings.Replace(base, "launch-checklist.yaml", "../x.yaml", 1) + signers, "want a file name beside the policy"},
	} {
		_, err := ParseRelease("release.yaml", []byte(c.yaml), knownGates)
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("ParseRelease(%q) = %v; want an error containing %q", c.yaml, err, c.contains)
		}
	}
}
