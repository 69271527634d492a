package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseNodePublic(t *testing.T) {
	good := "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	k, err := ParseNodePublic(good)
	if err != nil || k.String() != good || k[0] != 1 || k[31] != 32 {
		t.Fatalf("ParseNodePublic(%q) = %v, %v", good, k, err)
	}
	for _, bad := range []string{
		"",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // zero key
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",  // 43 characters
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyB=", // non-canonical padding bits
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHy80", // decodes to 33 bytes (found by fuzzing: it used to panic)
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eH!A=",
	} {
		if _, err := ParseNodePublic(bad); err == nil {
			t.Errorf("ParseNodePublic(%q) succeeded, want an error", bad)
		}
	}
}

func TestKeyJSON(t *testing.T) {
	var r RotateKeyRequest
	if err := json.Unmarshal([]byte(`{"node_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}`), &r); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r)
	if string(out) != `{"node_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}` {
		t.Errorf("round trip = %s", out)
	}
	if err := json.Unmarshal([]byte(`{"node_key":"nope"}`), &r); err == nil || !strings.Contains(err.Error(), "node key") {
		t.Errorf("bad key error = %v, want one naming the node key", err)
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"laptop":                "laptop",
		"My Laptop":             "my-laptop",
		"web-1.example.com":     "web-1",
		"":                      "node",
		"---":                   "node",
		"ÜBER_host!!":           "ber-host",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCapabilityVersion(t *testing.T) {
	if v, err := ParseCapabilityVersion("1"); err != nil || v != 1 {
		t.Errorf("ParseCapabilityVersion(1) = %v, %v", v, err)
	}
	for _, bad := range []string{"", "-1", "x", "1.0", "99999999999"} {
		if _, err := ParseCapabilityVersion(bad); err == nil {
			t.Errorf("ParseCapabilityVersion(%q) succeeded, want an error", bad)
		}
	}
	// The history is append-only and ends at the current version.
	for i, r := range History {
		if r.Version != CapabilityVersion(i+1) || r.Date == "" || r.Release == "" || r.Change == "" {
			t.Errorf("History[%d] = %+v, want version %d with a date, release and change", i, r, i+1)
		}
	}
	if last := History[len(History)-1].Version; last != CurrentCapabilityVersion {
		t.Errorf("History ends at %d, CurrentCapabilityVersion is %d", last, CurrentCapabilityVersion)
	}
	if MinSupportedCapabilityVersion > CurrentCapabilityVersion || ReleaseFor(MinSupportedCapabilityVersion) == "" {
		t.Errorf("MinSupportedCapabilityVersion %d is not in History", MinSupportedCapabilityVersion)
	}
	if msg := UpgradeMessage(0); !strings.Contains(msg, "upgrade rustynetd to") {
		t.Errorf("UpgradeMessage(0) = %q, want it to say what to upgrade to", msg)
	}
}

// TestPolicyBodyFitsLargestPolicy: a policy of MaxPolicyBytes passes
// Validate, one byte more does not, and the largest allowed policy fits
// MaxPolicyBodyBytes however encoding/json escapes it (six bytes a byte for
// '<', control characters and invalid UTF-8; six for a three-byte U+2028).
func TestPolicyBodyFitsLargestPolicy(t *testing.T) {
	for _, unit := range []string{"a", "<", "\x01", "\xff", "\u2028"} {
		text := strings.Repeat(unit, MaxPolicyBytes/len(unit))
		r := SetPolicyRequest{Policy: text}
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%d bytes of %q) = %v, want nil", len(text), unit, err)
		}
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) > MaxPolicyBodyBytes {
			t.Errorf("%d bytes of %q encode to %d bytes, more than MaxPolicyBodyBytes (%d)", len(text), unit, len(body), MaxPolicyBodyBytes)
		}
	}
	over := SetPolicyRequest{Policy: strings.Repeat("a", MaxPolicyBytes+1)}
	if err := over.Validate(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at most %d allowed", MaxPolicyBytes)) {
		t.Errorf("Validate(%d bytes) = %v, want a refusal naming %d", MaxPolicyBytes+1, err, MaxPolicyBytes)
	}
}

// TestDeprecationHeaders: a version whose removal is announced gets the
// Deprecation and Sunset headers from the announcement on, in their RFCs'
// formats; the current version and a version before its announcement get
// none.
func TestDeprecationHeaders(t *testing.T) {
	for _, d := range Deprecations {
		announced, err1 := time.Parse(time.DateOnly, d.Announced)
		sunset, err2 := time.Parse(time.DateOnly, d.Sunset)
		if err1 != nil || err2 != nil || !sunset.After(announced) || d.Version >= CurrentCapabilityVersion || ReleaseFor(d.Version) == "" {
			t.Errorf("deprecation %+v: want dates YYYY-MM-DD, the sunset after the announcement, of an earlier version in History", d)
		}
	}
	at := time.Date(2027, 1, 15, 12, 0, 0, 0, time.UTC)
	dep, sunset, ok := DeprecationHeaders(1, at)
	if !ok || dep != "@1796342400" || sunset != "Thu, 02 Dec 2027 00:00:00 GMT" {
		t.Errorf("DeprecationHeaders(1, %v) = %q, %q, %v; want @1796342400 (2026-12-04) and Thu, 02 Dec 2027 00:00:00 GMT", at, dep, sunset, ok)
	}
	if _, _, ok := DeprecationHeaders(1, time.Date(2026, 12, 3, 23, 59, 0, 0, time.UTC)); ok {
		t.Error("version 1 is deprecated before its announcement")
	}
	if _, _, ok := DeprecationHeaders(CurrentCapabilityVersion, at); ok {
		t.Error("the current version is deprecated")
	}
}
