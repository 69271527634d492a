package dr

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/acl"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/drload"
)

// TestBackupSteps: a backup every backup_every until the restore, and
// restore_confidence's backups at moments drawn from the seed, in time
// order, all before the restore.
func TestBackupSteps(t *testing.T) {
	s := loadDrill(t, "restore")
	steps := (&mesh{s: s}).backupSteps(&Result{}, 42)
	periodic, random := 0, 0
	for i, st := range steps {
		if !st.aside {
			t.Errorf("step %q is not a backup", st.what)
		}
		if i > 0 && st.at < steps[i-1].at {
			t.Errorf("backups out of order: %v after %v", st.at, steps[i-1].at)
		}
		if st.at <= 0 || st.at >= s.restoreAt() {
			t.Errorf("backup at %v: want one after the start and before the restore (%v)", st.at, s.restoreAt())
		}
		switch {
		case strings.HasSuffix(st.what, "(periodic)"):
			periodic++
		case strings.HasSuffix(st.what, "(random)"):
			random++
		}
	}
	// Every 20 s before 1m30s: 20s, 40s, 1m0s, 1m20s.
	if periodic != 4 || random != s.Confidence.Backups {
		t.Errorf("%d periodic and %d random backups, want 4 and %d", periodic, random, s.Confidence.Backups)
	}
	again := (&mesh{s: s}).backupSteps(&Result{}, 42)
	other := (&mesh{s: s}).backupSteps(&Result{}, 43)
	same, differ := true, false
	for i := range steps {
		same = same && steps[i].at == again[i].at
		differ = differ || steps[i].at != other[i].at
	}
	if !same || !differ {
		t.Errorf("the moments are not drawn from the seed (same seed same moments: %v, another seed other moments: %v)", same, differ)
	}
	if got := (&mesh{s: loadDrill(t, "region-loss-short")}).backupSteps(&Result{}, 1); len(got) != 0 {
		t.Errorf("a drill without backups: %d backup steps", len(got))
	}
}

func testExport(nodes ...*store.Node) *store.Exported {
	return &store.Exported{Format: store.ExportFormat, Schema: store.SchemaVersion, Revision: 40, Nodes: nodes,
		AuthKeys: []*store.AuthKey{{ID: "k1"}}, Policy: &store.Policy{}, Counters: map[string]uint64{"nodes": uint64(len(nodes))}}
}

// TestCompareRecords: a record counts when the restored store holds it
// identical; the backup must hold every registration acknowledged before
// it began, with the endpoints last acknowledged then.
func TestCompareRecords(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ep := netip.MustParseAddrPort("10.0.0.1:41641")
	n1 := &store.Node{ID: "n1", Name: "a", Endpoints: []netip.AddrPort{ep}}
	n2 := &store.Node{ID: "n2", Name: "b"}
	b := &Backup{Index: 1, Started: t0.Add(10 * time.Second), Done: t0.Add(11 * time.Second), exp: testExport(n1, n2)}
	writes := []drload.Record{
		{Op: drload.OpRegister, Node: "n1", OK: true, At: t0, Done: t0.Add(time.Second)},
		{Op: drload.OpRegister, Node: "n2", OK: true, At: t0.Add(2 * time.Second), Done: t0.Add(3 * time.Second)},
		{Op: drload.OpEndpoints, Node: "n1", OK: true, At: t0.Add(4 * time.Second), Done: t0.Add(5 * time.Second), Endpoints: []netip.AddrPort{ep}},
		// After the backup began: not expected in it.
		{Op: drload.OpRegister, Node: "n3", OK: true, At: t0.Add(10 * time.Second), Done: t0.Add(12 * time.Second)},
		// Refused: nothing expected.
		{Op: drload.OpRegister, Node: "n4", OK: false, At: t0, Done: t0.Add(time.Second)},
	}
	// 2 nodes, 1 key, 1 counter, the policy; 2 registrations and 1 report.
	const total = 8
	ok, n, missing := compareRecords(b, testExport(n1.Clone(), n2.Clone()), writes)
	if ok != total || n != total || len(missing) != 0 {
		t.Errorf("an identical restore: %d of %d records, missing %q; want %d of %d", ok, n, missing, total, total)
	}
	changed := n2.Clone()
	changed.Name = "renamed"
	ok, n, missing = compareRecords(b, testExport(n1.Clone(), changed), writes)
	if ok != total-1 || n != total || len(missing) != 1 || !strings.Contains(missing[0], "node n2: not restored identical") {
		t.Errorf("a changed node: %d of %d, missing %q; want %d of %d, n2 named", ok, n, missing, total-1, total)
	}
	// A backup that lost an acknowledged registration: the node is
	// missing from both the backup and the restore, and the log says so.
	lossy := &Backup{Index: 2, Started: b.Started, Done: b.Done, exp: testExport(n1)}
	ok, n, missing = compareRecords(lossy, testExport(n1.Clone()), writes)
	if n != total-1 || ok != total-2 || !strings.Contains(strings.Join(missing, ";"), "registration of n2") {
		t.Errorf("a backup without an acknowledged registration: %d of %d, missing %q", ok, n, missing)
	}
	// Endpoints replaced by a report sent before the backup ended (the
	// earlier one is not judged), and one the restore does not hold.
	bare := n1.Clone()
	bare.Endpoints = nil
	ok, n, missing = compareRecords(b, testExport(bare, n2.Clone()), writes)
	if ok != total-2 || !strings.Contains(strings.Join(missing, ";"), "endpoints [10.0.0.1:41641] of n1") {
		t.Errorf("lost endpoints: %d of %d, missing %q", ok, n, missing)
	}
	later := append(writes, drload.Record{Op: drload.OpEndpoints, Node: "n1", At: t0.Add(10500 * time.Millisecond), Done: t0.Add(13 * time.Second)})
	if _, n, _ = compareRecords(b, testExport(n1.Clone(), n2.Clone()), later); n != total-1 {
		t.Errorf("endpoints replaced while the backup ran: %d records judged, want %d", n, total-1)
	}
}

// TestMeasureRestore: the time to restore runs from the restore's start
// to the first write acknowledged through the restored replica; writes
// acknowledged after the backup began, before the loss, are its age.
func TestMeasureRestore(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	lost := t0.Add(time.Minute)
	r := &Result{
		Backups: []*Backup{{Index: 1, Started: t0.Add(50 * time.Second)}},
		Restore: &RestoreResult{Backup: 1, LostAt: lost, Started: lost.Add(100 * time.Millisecond)},
		Writes: []drload.Record{
			{OK: true, Replica: ctlURL("eu"), At: t0.Add(40 * time.Second), Done: t0.Add(41 * time.Second)},
			{OK: true, Replica: ctlURL("eu"), At: t0.Add(55 * time.Second), Done: t0.Add(56 * time.Second)},
			{OK: true, Replica: ctlURL("us"), At: t0.Add(57 * time.Second), Done: t0.Add(58 * time.Second)},
			{OK: false, Replica: ctlURL("dr"), At: lost.Add(time.Second), Done: lost.Add(time.Second)},
			{OK: true, Replica: ctlURL("dr"), At: lost.Add(4 * time.Second), Done: lost.Add(4200 * time.Millisecond)},
			{OK: true, Replica: ctlURL("dr"), At: lost.Add(5 * time.Second), Done: lost.Add(5100 * time.Millisecond)},
		},
	}
	r.measureRestore("dr")
	rr := r.Restore
	if rr.TimeToRestore == nil || *rr.TimeToRestore != 4100*time.Millisecond || rr.WritesAfterBackup != 2 {
		t.Errorf("time to restore %v, %d writes after the backup; want 4.1s and 2", rr.TimeToRestore, rr.WritesAfterBackup)
	}
	for i, want := range []bool{true, false, false, true, true, true} {
		if got := r.expectedInStore(r.Writes[i]); got != want {
			t.Errorf("write %d expected in the store: %v, want %v", i, got, want)
		}
	}
}

// TestConfidenceFigure: the figure is the fraction of complete restores,
// with its Clopper–Pearson interval, and each fraction's mean and lowest.
func TestConfidenceFigure(t *testing.T) {
	c := &ConfidenceResult{}
	for i := range 20 {
		rs := Restore{Backup: i + 1, RecordsOK: 10, RecordsTotal: 10, NodesBack: 6, NodesTotal: 6, PairsOK: 30, PairsTotal: 30, Complete: true}
		if i == 7 {
			rs.PairsOK, rs.Complete = 27, false
		}
		c.Restores = append(c.Restores, rs)
	}
	c.compute()
	if c.Complete != 19 || c.Figure != 0.95 || math.Abs(c.Lo-0.7513) > 1e-4 || math.Abs(c.Hi-0.9987) > 1e-4 {
		t.Errorf("19 of 20: %d complete, figure %v [%v, %v]; want 19, 0.95 [0.7513, 0.9987]", c.Complete, c.Figure, c.Lo, c.Hi)
	}
	if c.MinTunnels != 0.9 || c.MinRecords != 1 || c.MinCredentials != 1 || math.Abs(c.MeanTunnels-0.995) > 1e-9 {
		t.Errorf("fractions: tunnels min %v mean %v, records min %v, credentials min %v", c.MinTunnels, c.MeanTunnels, c.MinRecords, c.MinCredentials)
	}
	var none ConfidenceResult
	none.compute()
	if none.Figure != 0 || none.Complete != 0 {
		t.Errorf("no restore: figure %v", none.Figure)
	}
}

// TestGrow: the grown export holds n nodes, each with its own ID, keys
// and address, and a store takes it whole.
func TestGrow(t *testing.T) {
	n1 := &store.Node{ID: "n1", Name: "a", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}, Backends: []string{"wireguard"},
		AuthKeyID: "k1", CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	n1.NodeKey[0], n1.MachineKey[0], n1.CredentialHash[0] = 1, 2, 3
	e := testExport(n1)
	g, err := grow(e, 1000, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 1000 || len(e.Nodes) != 1 {
		t.Fatalf("grown to %d nodes (the original now %d); want 1000 (and 1)", len(g.Nodes), len(e.Nodes))
	}
	ids, keys, addrs := map[api.NodeID]bool{}, map[api.NodePublic]bool{}, map[netip.Prefix]bool{}
	for _, n := range g.Nodes {
		ids[n.ID], keys[n.NodeKey], addrs[n.Addresses[0]] = true, true, true
	}
	if len(ids) != 1000 || len(keys) != 1000 || len(addrs) != 1000 {
		t.Errorf("%d IDs, %d keys, %d addresses unique of 1000", len(ids), len(keys), len(addrs))
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(g); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := store.Import(t.Context(), st, &buf); err != nil {
		t.Fatalf("Import of the grown export: %v", err)
	}
	if _, err := grow(testExport(), 10, rand.New(rand.NewPCG(1, 2))); err == nil {
		t.Error("grew an export with no node to copy")
	}
}

// TestPolicyChanges: a policy change every 60/rate seconds to the end,
// each a policy of its own that lets every node reach every other; the
// restored store must hold the last one acknowledged before the backup.
func TestPolicyChanges(t *testing.T) {
	s := loadDrill(t, "region-loss-short") // 6 a minute for 100 s
	steps := (&mesh{s: s}).policySteps(&Result{})
	if len(steps) != 9 || steps[0].at != 10*time.Second || steps[8].at != 90*time.Second || !steps[0].aside {
		t.Fatalf("%d policy changes, the first at %v; want 9 from 10s, every 10s, aside", len(steps), steps[0].at)
	}
	for k := 1; k <= 2; k++ {
		p, err := acl.Parse([]byte(policyText(k)))
		if err != nil {
			t.Fatalf("policy %d: %v", k, err)
		}
		if !p.Allows(&acl.Subject{ID: "n1"}, &acl.Subject{ID: "n2"}) {
			t.Errorf("policy %d does not let every node reach every other", k)
		}
	}
	if policyText(1) == policyText(2) {
		t.Error("two policy changes set the same policy")
	}

	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	b := &Backup{Index: 1, Started: t0.Add(10 * time.Second), Done: t0.Add(11 * time.Second), exp: testExport()}
	b.exp.Policy = &store.Policy{Text: policyText(2)}
	writes := []drload.Record{
		{Op: drload.OpPolicy, OK: true, Policy: policyText(1), At: t0, Done: t0.Add(time.Second)},
		{Op: drload.OpPolicy, OK: true, Policy: policyText(2), At: t0.Add(2 * time.Second), Done: t0.Add(3 * time.Second)},
		{Op: drload.OpPolicy, OK: true, Policy: policyText(3), At: t0.Add(12 * time.Second), Done: t0.Add(13 * time.Second)},
	}
	restored := testExport()
	restored.Policy = &store.Policy{Text: policyText(2)}
	// The key, the counter, the policy; the last change acknowledged
	// before the backup.
	if ok, n, missing := compareRecords(b, restored, writes); ok != 4 || n != 4 {
		t.Errorf("the policy restored: %d of %d, missing %q; want 4 of 4", ok, n, missing)
	}
	restored.Policy = &store.Policy{Text: policyText(1)}
	if ok, n, missing := compareRecords(b, restored, writes); ok != 2 || n != 4 || !strings.Contains(strings.Join(missing, ";"), "the policy set at") {
		t.Errorf("an older policy restored: %d of %d, missing %q; want 2 of 4", ok, n, missing)
	}
}
