package soak

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMutantsApply: every seeded regression in testdata/mutants (a patch
// of the tree the soak must block, see its README.md) still applies to
// this tree, so that a mutation run tests the soak and not a stale patch.
func TestMutantsApply(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git to check the patches with")
	}
	patches, err := filepath.Glob("testdata/mutants/*.patch")
	if err != nil || len(patches) == 0 {
		t.Fatalf("no seeded regressions in testdata/mutants (%v)", err)
	}
	for _, p := range patches {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(git, "apply", "--check", abs)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("git apply --check %s: %v\n%s", p, err, out)
		}
	}
}
