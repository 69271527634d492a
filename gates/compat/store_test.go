package compat

import (
	"testing"
	"time"
)

// TestStoreUpgrade: each release the policy says the store upgrades from
// directly (N-2 and N-1) is built from its commit and run to make a real
// data dir, with nodes registered through its API; the controller of this
// tree opens that data dir and keeps every node, unchanged, with its
// credential still good, but for a name of the form of a node ID, which
// schema 2 renames; started again on the upgraded data dir, the earlier
// release's controller refuses it, naming both schema versions.
func TestStoreUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two earlier releases and runs three controllers: not in -short")
	}
	rels := load(t).StoreUpgradeReleases()
	e := newEnv(t, 10*time.Minute, rels, "rustynet-controller")
	cur := e.this["rustynet-controller"]
	for _, r := range rels {
		t.Run(r.Name.Value, func(t *testing.T) {
			res, err := CheckStoreUpgrade(e.ctx, e.build(t, r), cur, e.work, e.log)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range JudgeStore(res) {
				t.Error(p)
			}
			t.Logf("from %s (capability %d): %d nodes kept (%d renamed by the migrations), %d credentials accepted; the new controller served after %v; schema %d -> %d; the earlier release then refused it: %v, served it: %v %q",
				r.Name.Value, res.Capability, res.Kept, res.Renamed, res.Credentials, res.Start.Round(time.Millisecond),
				res.Downgrade.SchemaBefore, res.Downgrade.SchemaAfter, res.Downgrade.Refused, res.Downgrade.Served, res.Downgrade.Message)
		})
	}
}
