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
