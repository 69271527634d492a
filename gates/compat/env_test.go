package compat

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/policies"
)

// env is what the compatibility tests share: the repository, a work
// directory with a log (printed when the test fails), a bounded context,
// and this tree's controller and daemon built into it.
type env struct {
	ctx  context.Context
	repo string
	work string
	log  *os.File
	this map[string]string // binary name -> path
}

// newEnv checks that the checkout has every release's commit, then
// builds this tree's binaries.
func newEnv(t *testing.T, timeout time.Duration, rels []policies.EarlierRelease, bins ...string) *env {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		err := exec.Command("git", "-C", repo, "cat-file", "-e", r.Commit.Value+"^{commit}").Run()
		require.Need(t, "git-history", err == nil, "the checkout has no commit "+r.Commit.Value+" ("+r.Name.Value+"): a shallow clone? (git fetch --unshallow)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	e := &env{ctx: ctx, repo: repo, work: t.TempDir(), this: map[string]string{}}
	if e.log, err = os.Create(filepath.Join(e.work, "log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(e.log.Name())
			t.Logf("log:\n%s", b)
		}
	})
	for _, name := range bins {
		p := filepath.Join(e.work, name)
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", p, "./cmd/"+name)
		build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build this tree's %s: %v\n%s", name, err, out)
		}
		e.this[name] = p
	}
	return e
}

// build builds an earlier release.
func (e *env) build(t *testing.T, r policies.EarlierRelease) Built {
	t.Helper()
	b, err := BuildRelease(e.ctx, e.repo, filepath.Join(e.work, "releases"), r, e.log)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
