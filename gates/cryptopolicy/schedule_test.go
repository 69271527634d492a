package cryptopolicy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/internal/bundledoc"
)

// TestScheduleCurrent: the published crypto deprecation schedule is what
// the policy generates now, and lists each change with its dates.
func TestScheduleCurrent(t *testing.T) {
	pol, err := LoadSchedulePolicy(root)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteSchedule(&want, pol); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, ScheduleDoc))
	if err != nil {
		t.Fatalf("%v: generate it with make compat-docs", err)
	}
	// A copy rendered from a bundle (rustynet-gate docs) starts with
	// its provenance; the rest is what the policies generate.
	if !bytes.Equal(bundledoc.StripProvenance(got), want.Bytes()) {
		t.Errorf("%s is stale: regenerate it with make compat-docs", ScheduleDoc)
	}
	for _, s := range []string{"at most 12 months after its deprecation", "| x25519-tls-kex | 2027-01-01 | 2027-07-01 | - |", "| md5 | - | 2026-11-25 | `crypto/md5` |",
		"| controller-tls12 | off |", "- `golang.org/x/crypto/ssh`:"} {
		if !strings.Contains(want.String(), s) {
			t.Errorf("the schedule lacks %q:\n%s", s, want.String())
		}
	}
}
