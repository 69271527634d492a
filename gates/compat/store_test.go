package compat

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
)

// TestStoreUpgrade: each release the policy says the store upgrades from
// directly (N-2 and N-1) is built from its commit and run to make a real
// data dir, with nodes registered through its API; the controller of this
// tree opens that data dir and keeps every node, unchanged, with its
// credential still good.
func TestStoreUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two earlier releases and runs three controllers: not in -short")
	}
	pol := load(t)
	rels := pol.StoreUpgradeReleases()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		err := exec.Command("git", "-C", repo, "cat-file", "-e", r.Commit.Value+"^{commit}").Run()
		require.Need(t, "git-history", err == nil, "the checkout has no commit "+r.Commit.Value+" ("+r.Name.Value+"): a shallow clone? (git fetch --unshallow)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	logf, err := os.Create(filepath.Join(work, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("log:\n%s", b)
		}
	})
	cur := filepath.Join(work, "rustynet-controller")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", cur, "./cmd/rustynet-controller")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build this tree's controller: %v\n%s", err, out)
	}
	for _, r := range rels {
		t.Run(r.Name.Value, func(t *testing.T) {
			b, err := BuildRelease(ctx, repo, filepath.Join(work, "releases"), r, logf)
			if err != nil {
				t.Fatal(err)
			}
			res, err := CheckStoreUpgrade(ctx, b, cur, work, logf)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range res.Problems {
				t.Error(p)
			}
			if res.Nodes != upgradeNodes || res.Kept != res.Nodes || res.Credentials != res.Nodes || res.Peers != res.Nodes-1 {
				t.Errorf("upgrade from %s: %+v; want all %d nodes kept, each credential accepted, each netmap with the %d others", r.Name.Value, res, upgradeNodes, upgradeNodes-1)
			}
			t.Logf("from %s (capability %d): %d nodes kept, %d credentials accepted; the new controller served after %v",
				r.Name.Value, res.Capability, res.Kept, res.Credentials, res.Start.Round(time.Millisecond))
		})
	}
}
