package mutate

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMutantsApply: every seeded regression of the tree loads and applies
// to a copy of it, so a mutation run tests the gates, not stale mutants;
// and there are enough of them, over the gates the issue names.
func TestMutantsApply(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	gates := map[string]int{}
	n := 0
	for _, f := range files {
		for i := range f.Mutants {
			m := &f.Mutants[i]
			n++
			gates[f.Gate]++
			dir := t.TempDir()
			// Only the files a mutant touches are copied; a patch is
			// checked with git apply --check against the tree itself.
			for _, e := range m.Edits {
				src := filepath.Join(root, e.File)
				if data, err := os.ReadFile(src); err == nil {
					os.MkdirAll(filepath.Dir(filepath.Join(dir, e.File)), 0o755)
					os.WriteFile(filepath.Join(dir, e.File), data, 0o644)
				}
			}
			if m.Patch != "" {
				cmd := exec.Command("git", "apply", "--check", filepath.Join(filepath.Dir(f.path), m.Patch))
				cmd.Dir = root
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s: git apply --check %s: %v\n%s", m.Name, m.Patch, err, out)
				}
				continue
			}
			mm := *m
			mm.Patch = ""
			if err := f.Apply(&mm, dir, time.Now()); err != nil {
				t.Errorf("%s (%s): %v", m.Name, f.path, err)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d seeded regressions, want at least 8", n)
	}
	for _, g := range []string{"architecture", "conformance", "crypto-policy", "perf-budget", "slo", "soak", "unit"} {
		if gates[g] == 0 {
			t.Errorf("no seeded regression for the %s gate", g)
		}
	}
}
