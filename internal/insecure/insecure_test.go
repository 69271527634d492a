package insecure

import (
	"strings"
	"testing"
	"time"
)

func TestLookup(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		env     string
		enabled bool
		problem string
	}{
		{"", false, ""},
		{"controller-tls12@2026-12-31", true, ""},
		{"other@2026-12-31, controller-tls12@2026-12-01", true, ""},
		{"controller-tls12@2026-11-25", false, "expired"},
		{"controller-tls12", false, "needs its expiry"},
		{"controller-tls12@tomorrow", false, "not a date"},
		{"controller-tls12@2027-12-31", false, "more than 90 days"},
	} {
		s := Lookup(c.env, "controller-tls12", now)
		if s.Enabled != c.enabled || (c.problem == "") != (s.Problem == "") || !strings.Contains(s.Problem, c.problem) {
			t.Errorf("Lookup(%q) = %+v, want enabled=%v, problem containing %q", c.env, s, c.enabled, c.problem)
		}
	}
	if s := Lookup("nope@2026-12-31", "nope", now); s.Enabled || s.Problem == "" {
		t.Errorf("an unknown mode: %+v", s)
	}
}

// TestAuthorize: an exception in the environment is honoured only when the
// policy grants it, with an owner and a ticket, in force, at most 90 days
// ahead, and lasting at least as long as the environment asks.
func TestAuthorize(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	env := Lookup("controller-tls12@2026-12-31", "controller-tls12", now)
	if !env.Enabled {
		t.Fatalf("the environment's exception: %+v", env)
	}
	grant := func(mode, owner, ticket, expires string) Grant {
		e, err := time.Parse(time.DateOnly, expires)
		if err != nil {
			t.Fatal(err)
		}
		return Grant{Mode: mode, Owner: owner, Ticket: ticket, Expires: e, Source: "crypto.yaml:242"}
	}
	for _, c := range []struct {
		name    string
		grants  []Grant
		enabled bool
		problem string
	}{
		{"no exception in the policy", nil, false, "grants no exception for it"},
		{"another mode's", []Grant{grant("node-tls12", "ops@example.com", "OPS-1", "2027-01-15")}, false, "grants no exception for it"},
		{"granted", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2027-01-15")}, true, ""},
		{"granted to the same day", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2026-12-31")}, true, ""},
		{"shorter than the environment's", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2026-12-15")}, false, "ends on 2026-12-15, before the environment's 2026-12-31"},
		{"lapsed", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2026-11-01")}, false, "lapsed on 2026-11-01"},
		{"too far ahead", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2027-06-01")}, false, "more than 90 days ahead"},
		{"no ticket", []Grant{grant("controller-tls12", "ops@example.com", "", "2027-01-15")}, false, "no owner or no ticket"},
		{"one of two good", []Grant{grant("controller-tls12", "ops@example.com", "OPS-1", "2026-11-01"), grant("controller-tls12", "sec@example.com", "SEC-2", "2027-01-02")}, true, ""},
	} {
		s := env.Authorize(c.grants, "ops.yaml", now)
		if s.Enabled != c.enabled || (c.problem == "") != (s.Problem == "") || !strings.Contains(s.Problem, c.problem) {
			t.Errorf("%s: %+v, want enabled=%v, problem containing %q", c.name, s, c.enabled, c.problem)
		}
		if s.Enabled && (s.Grant == nil || s.Grant.Owner == "") {
			t.Errorf("%s: enabled with no grant recorded: %+v", c.name, s)
		}
		if !s.Enabled && !strings.Contains(s.Problem, "ops.yaml") {
			t.Errorf("%s: the refusal does not name the policy: %q", c.name, s.Problem)
		}
	}
	if off := Lookup("", "controller-tls12", now).Authorize(nil, "ops.yaml", now); off.Enabled || off.Problem != "" {
		t.Errorf("a mode the environment does not ask for: %+v", off)
	}
}
