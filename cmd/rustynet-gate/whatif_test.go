package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// TestWhatIf: run --effective-time judges the gates' dated rules and the
// waivers as of a later date. Judged as of x25519-tls-kex's removal, the
// crypto-policy gate blocks today's controller, which still serves
// clients without ML-KEM; the bundle verifies as a what-if, its report
// says so, and publish refuses it. A time not after now, or not a time,
// is a usage error.
func TestWhatIf(t *testing.T) {
	pol, err := policies.LoadCrypto("../../policies/crypto.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, ok := pol.Algorithm("x25519-tls-kex")
	if !ok || a.RemovedOn().IsZero() {
		t.Fatal("policies/crypto.yaml has no removal date for x25519-tls-kex")
	}
	when := a.RemovedOn()
	if !when.After(time.Now()) {
		t.Skipf("x25519-tls-kex was removed on %s: the gate judges it removed today", when.Format(time.DateOnly))
	}
	keys := t.TempDir()
	if out, code := gate(t, "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	key, pub := filepath.Join(keys, "gate.key"), filepath.Join(keys, "gate.pub")
	policy := writePolicy(t, "build, crypto-policy")
	date := when.Format(time.DateOnly)
	stamp := when.UTC().Format(time.RFC3339)

	bundle := filepath.Join(t.TempDir(), "b")
	out, code := gate(t, "run", "--policy", policy, "--channel", "nightly", "--out", bundle, "--key", key, "--effective-time", date)
	if code != exitBlocked || !strings.Contains(out, "BLOCKED as of "+stamp) || !strings.Contains(out, "not a verdict on channel nightly today") ||
		!strings.Contains(out, "key exchange with a client offering only X25519 on "+date+": accepted (want refused") {
		t.Fatalf("run --effective-time %s: exit %d, want %d blocked by the classical key exchange's removal, as a what-if\n%s", date, code, exitBlocked, out)
	}
	if out, code := gate(t, "verify", bundle, "--pubkey", pub); code != exitBlocked || !strings.Contains(out, "judged as of "+stamp) {
		t.Errorf("verify of the what-if bundle: exit %d, want %d, saying what it is\n%s", code, exitBlocked, out)
	}
	if md, err := os.ReadFile(filepath.Join(bundle, "report.md")); err != nil || !strings.Contains(string(md), "A what-if run, judged as of") {
		t.Errorf("the what-if run's report does not say it is one (%v)", err)
	}
	commit, _ := manifestCommit(t, bundle)
	if out, code := gateEnv(t, []string{"GITHUB_TOKEN=unused"}, "publish", bundle, "--pubkey", pub, "--policy", policy,
		"--repo", "rustynet/rustynet", "--sha", commit); code != exitUsage || !strings.Contains(out, "what-if run") {
		t.Errorf("publish of a what-if bundle: exit %d, want %d refusing it\n%s", code, exitUsage, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--policy", policy, "--channel", "nightly", "--out", filepath.Join(t.TempDir(), "x"), "--effective-time", "2020-01-01"}, "is not after now"},
		{[]string{"run", "--policy", policy, "--channel", "nightly", "--out", filepath.Join(t.TempDir(), "x"), "--effective-time", "next july"}, "want a date"},
		{[]string{"verify", bundle, "--pubkey", pub, "--at", "now", "--effective-time", date}, "give one"},
	} {
		if out, code := gate(t, c.args...); code != exitUsage || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, want %d saying %q\n%s", strings.Join(c.args, " "), code, exitUsage, c.want, out)
		}
	}
}
