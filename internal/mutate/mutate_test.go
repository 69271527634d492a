package mutate

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/policies"
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
	// Every gate a release needs proves it can block.
	pol, err := policies.LoadRelease(filepath.Join(root, "policies/release.yaml"), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	ga, err := pol.Gates(policies.GA)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range ga {
		if gates[g] == 0 {
			t.Errorf("no seeded regression for the %s gate (%s requires it)", g, policies.GA)
		}
	}
}

// TestMutantChannel: a mutant runs on the nightly channel unless it names
// another; an unknown channel is refused at load; one for beta is
// committed in its snapshot, which then holds no uncommitted change (beta
// refuses a dirty tree).
func TestMutantChannel(t *testing.T) {
	m := Mutant{Name: "x", What: "seeds x", Edits: []Edit{{File: "a.go", Find: "// old", Replace: "// new"}}}
	if err := m.check(); err != nil || m.RunChannel() != "nightly" {
		t.Errorf("no channel: check %v, runs on %q; want nightly", err, m.RunChannel())
	}
	m.Channel = "weekly"
	if err := m.check(); err == nil || !strings.Contains(err.Error(), `channel "weekly"`) {
		t.Errorf("channel weekly: check %v, want it refused", err)
	}
	m.Channel = "beta"
	if err := m.check(); err != nil || m.RunChannel() != "beta" {
		t.Errorf("channel beta: check %v, runs on %q", err, m.RunChannel())
	}

	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git: the commit of a beta mutant is not checked")
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("init", "--quiet")
	os.WriteFile(filepath.Join(dir, "a.go"), []byte("package a // old\n"), 0o644)
	run("add", "a.go")
	run("-c", "user.name=t", "-c", "user.email=t@invalid", "commit", "--quiet", "-m", "base")
	f := &File{Gate: "perf-budget"}
	if err := f.Apply(&m, dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := commitMutant(context.Background(), dir, &m); err != nil {
		t.Fatal(err)
	}
	if st := run("status", "--porcelain"); st != "" {
		t.Errorf("after the commit the snapshot still has changes:\n%s", st)
	}
	if msg := run("log", "-1", "--format=%s"); !strings.Contains(msg, "mutant x: seeds x") {
		t.Errorf("the mutant's commit says %q", msg)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.go")); string(b) != "package a // new\n" {
		t.Errorf("a.go after the commit: %q", b)
	}
}
