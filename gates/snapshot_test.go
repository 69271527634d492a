package gates

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.email=a@b.c", "-c", "user.name=a"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v %s", args, err, out)
	}
	return string(out)
}

func write(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestSnapshot: a snapshot holds the tree as it was when taken (the
// commit, plus a dirty tree's changes and untracked files, without ignored
// ones), and later edits to the checkout do not reach it.
func TestSnapshot(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q")
	write(t, filepath.Join(repo, "kept.go"), "package a // v1\n")
	write(t, filepath.Join(repo, "gone.go"), "package a\n")
	write(t, filepath.Join(repo, ".gitignore"), "out/\n")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "one")

	clean, err := TakeSnapshot(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if clean.Dirty || read(t, filepath.Join(clean.Dir, "kept.go")) != "package a // v1\n" {
		t.Errorf("snapshot of a clean tree: dirty=%v, kept.go %q", clean.Dirty, read(t, filepath.Join(clean.Dir, "kept.go")))
	}
	clean.Close()

	write(t, filepath.Join(repo, "kept.go"), "package a // v2, not committed\n")
	os.Remove(filepath.Join(repo, "gone.go"))
	write(t, filepath.Join(repo, "sub", "new.go"), "package sub\n")
	write(t, filepath.Join(repo, "out", "bundle.json"), "{}")
	s, err := TakeSnapshot(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	// The checkout changes during the run.
	write(t, filepath.Join(repo, "kept.go"), "package a // v3, edited during the run\n")
	write(t, filepath.Join(repo, "late.go"), "package a\n")
	for path, want := range map[string]string{
		"kept.go":         "package a // v2, not committed\n",
		"sub/new.go":      "package sub\n",
		"gone.go":         "<",
		"out/bundle.json": "<",
		"late.go":         "<",
	} {
		if got := read(t, filepath.Join(s.Dir, path)); !strings.HasPrefix(got, want) {
			t.Errorf("snapshot's %s = %q, want %q", path, got, want)
		}
	}
	if !s.Dirty || s.Commit != strings.TrimSpace(git(t, repo, "rev-parse", "HEAD")) {
		t.Errorf("snapshot dirty=%v commit=%s, want dirty at HEAD", s.Dirty, s.Commit)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(s.Dir); err == nil {
		t.Error("Close left the snapshot behind")
	}
	if list := git(t, repo, "worktree", "list"); strings.Count(list, "\n") != 1 {
		t.Errorf("worktrees after Close:\n%s", list)
	}

	// A tree git cannot read is never taken as clean.
	write(t, filepath.Join(repo, ".git", "index"), "not an index")
	if s, err := TakeSnapshot(context.Background(), repo); err == nil {
		s.Close()
		t.Error("TakeSnapshot with a corrupt index succeeded, want an error")
	}
}
