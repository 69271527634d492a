// Package storetest is the suite every store.Store implementation must pass,
// called as storetest.Run(t, open) in the manner of testing/fstest.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// Run runs the suite. open must return a new, empty store for each call;
// Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"NodeRoundTrip", testNodeRoundTrip},
		{"RevisionIncreases", testRevisionIncreases},
		{"FailedUpdateRollsBack", testFailedUpdateRollsBack},
		{"UniqueIndexes", testUniqueIndexes},
		{"ReplaceMovesIndexes", testReplaceMovesIndexes},
		{"DeleteNode", testDeleteNode},
		{"AuthKeys", testAuthKeys},
		{"Policy", testPolicy},
		{"Counters", testCounters},
		{"DeleteAuthKey", testDeleteAuthKey},
		{"ReadsSeeOwnWrites", testReadsSeeOwnWrites},
		{"Backup", testBackup},
		{"CanceledContext", testCanceledContext},
	}
	opened := func(t *testing.T) store.Store {
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, opened(t)) })
	}
	t.Run("ExportImport", func(t *testing.T) { testExportImport(t, opened(t), opened(t)) })
}

// Populate fills s with n nodes, their auth keys, counters and a policy.
func Populate(t testing.TB, s store.Store, n int) {
	t.Helper()
	for i := 1; i <= n; i += 10 { // under etcd's default of 128 operations a transaction
		if _, err := s.Update(context.Background(), func(tx store.Tx) error {
			for j := i; j < i+10 && j <= n; j++ {
				if err := tx.PutNode(Node(j)); err != nil {
					return err
				}
				if err := tx.PutAuthKey(&store.AuthKey{ID: fmt.Sprintf("k%d", j), Uses: 1, Tags: []string{"tag:test"},
					CreatedAt: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2027, 11, 25, 0, 0, 0, 0, time.UTC)}); err != nil {
					return err
				}
				if err := tx.SetCounter(fmt.Sprintf("name/host-%d", j), uint64(j)); err != nil {
					return err
				}
			}
			return tx.SetCounter("ipam", uint64(n))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutPolicy(&store.Policy{Text: "acls: []\n", UpdatedAt: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)})
	}); err != nil {
		t.Fatal(err)
	}
}

// testExportImport: an export MUST load into an empty store of the same
// kind and export again identically, with the revision past the
// exported one; loading into a store that is not empty MUST be refused.
func testExportImport(t *testing.T, src, dst store.Store) {
	Populate(t, src, 40)
	var first bytes.Buffer
	if _, err := store.Export(context.Background(), src, &first); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	e, err := store.Import(context.Background(), dst, bytes.NewReader(first.Bytes()))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	var second bytes.Buffer
	if _, err := store.Export(context.Background(), dst, &second); err != nil {
		t.Fatal(err)
	}
	back, err := store.ParseExport(&second)
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := store.RestoredRevision(e, before), store.RestoredRevision(e, time.Now()); back.Revision < lo || back.Revision > hi {
		t.Errorf("revision after import = %d, want store.RestoredRevision of the import's time, %d to %d", back.Revision, lo, hi)
	}
	back.Revision = e.Revision
	if !reflect.DeepEqual(back, e) {
		t.Errorf("export after import differs from the export imported")
	}
	if _, err := store.Import(context.Background(), src, bytes.NewReader(first.Bytes())); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Import into a store that is not empty: %v, want a refusal that says so", err)
	}
}

// Node returns a valid node whose unique fields derive from i.
func Node(i int) *store.Node {
	var nk api.NodePublic
	var mk api.MachinePublic
	nk[0], nk[1], nk[31] = byte(i), byte(i>>8), 1
	mk[0], mk[1], mk[31] = byte(i), byte(i>>8), 2
	v4 := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0x52, 0x75, 0x73, 0x74, 0x79, 14: byte(i >> 8), 15: byte(i)})
	return &store.Node{
		ID:          api.NodeID(fmt.Sprintf("n%04d", i)),
		Name:        fmt.Sprintf("host-%d", i),
		NodeKey:     nk,
		MachineKey:  mk,
		Addresses:   []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)},
		Endpoints:   []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:41641")},
		Backends:    []string{"wireguard", "quic"},
		BackendKeys: map[string]string{"quic": fmt.Sprintf("key-%d", i)},
		Tags:        []string{"tag:test"},
		AuthKeyID:   "k1",
		CreatedAt:   time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		UpdatedAt:   time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
	}
}

func put(t *testing.T, s store.Store, nodes ...*store.Node) uint64 {
	t.Helper()
	rev, err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, n := range nodes {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(PutNode): %v", err)
	}
	return rev
}

func view(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// testEmpty: a new store MUST be at revision 0 with no nodes, no keys and no
// policy.
func testEmpty(t *testing.T, s store.Store) {
	view(t, s, func(tx store.Tx) error {
		if rev := tx.Revision(); rev != 0 {
			t.Errorf("Revision() = %d, want 0", rev)
		}
		n := 0
		if err := tx.ForEachNode(func(*store.Node) error { n++; return nil }); err != nil {
			t.Errorf("ForEachNode: %v", err)
		}
		if err := tx.ForEachAuthKey(func(*store.AuthKey) error { n++; return nil }); err != nil {
			t.Errorf("ForEachAuthKey: %v", err)
		}
		if n != 0 {
			t.Errorf("empty store holds %d records", n)
		}
		if _, err := tx.Policy(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Policy() error = %v, want ErrNotFound", err)
		}
		if _, err := tx.Node("nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Node(nope) error = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// testNodeRoundTrip: a node MUST read back exactly as written, by ID and by
// every unique index.
func testNodeRoundTrip(t *testing.T, s store.Store) {
	n := Node(1)
	n.CredentialHash[0] = 0xab
	n.Observed = netip.MustParseAddrPort("198.51.100.7:41641")
	put(t, s, n)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Node(n.ID)
		if err != nil {
			t.Fatalf("Node(%s): %v", n.ID, err)
		}
		if !reflect.DeepEqual(got, n) {
			t.Errorf("Node(%s) = %+v, want %+v", n.ID, got, n)
		}
		for index, value := range map[string]string{
			store.IndexMachineKey: n.MachineKey.String(),
			store.IndexNodeKey:    n.NodeKey.String(),
			store.IndexName:       n.Name,
			store.IndexAddress:    n.Addresses[1].Addr().String(),
		} {
			if id, err := tx.NodeIDBy(index, value); err != nil || id != n.ID {
				t.Errorf("NodeIDBy(%s, %s) = %q, %v; want %q", index, value, id, err, n.ID)
			}
		}
		return nil
	})
}

// testRevisionIncreases: every committed Update MUST advance the revision by
// exactly one, and a View MUST see the last committed revision.
func testRevisionIncreases(t *testing.T, s store.Store) {
	for i := 1; i <= 3; i++ {
		if rev := put(t, s, Node(i)); rev != uint64(i) {
			t.Errorf("Update #%d committed revision %d, want %d", i, rev, i)
		}
	}
	view(t, s, func(tx store.Tx) error {
		if rev := tx.Revision(); rev != 3 {
			t.Errorf("Revision() = %d, want 3", rev)
		}
		return nil
	})
}

// testFailedUpdateRollsBack: when the function of an Update fails, nothing it
// wrote MUST persist and the revision MUST NOT advance.
func testFailedUpdateRollsBack(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	_, err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutNode(Node(1)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v, want %v", err, boom)
	}
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.Node(Node(1).ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("node written by a failed Update exists (err %v)", err)
		}
		if _, err := tx.NodeIDBy(store.IndexName, Node(1).Name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("index entry written by a failed Update exists (err %v)", err)
		}
		if rev := tx.Revision(); rev != 0 {
			t.Errorf("Revision() = %d after a failed Update, want 0", rev)
		}
		return nil
	})
}

// testUniqueIndexes: PutNode MUST refuse, with a *store.ConflictError naming
// the field, a node whose machine key, node key, name or address another
// node holds.
func testUniqueIndexes(t *testing.T, s store.Store) {
	put(t, s, Node(1))
	for _, c := range []struct {
		field  string
		mutate func(n *store.Node)
	}{
		{store.IndexMachineKey, func(n *store.Node) { n.MachineKey = Node(1).MachineKey }},
		{store.IndexNodeKey, func(n *store.Node) { n.NodeKey = Node(1).NodeKey }},
		{store.IndexName, func(n *store.Node) { n.Name = Node(1).Name }},
		{store.IndexAddress, func(n *store.Node) { n.Addresses[0] = Node(1).Addresses[0] }},
	} {
		n := Node(2)
		c.mutate(n)
		_, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutNode(n) })
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Field != c.field || ce.Owner != Node(1).ID {
			t.Errorf("PutNode with a duplicate %s: error %v, want a ConflictError on %s owned by %s", c.field, err, c.field, Node(1).ID)
		}
	}
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.Node(Node(2).ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a conflicting node was stored (err %v)", err)
		}
		return nil
	})
}

// testReplaceMovesIndexes: replacing a node MUST move its index entries: the
// old values become free and the new ones point at the node.
func testReplaceMovesIndexes(t *testing.T, s store.Store) {
	n := Node(1)
	put(t, s, n)
	n2 := n.Clone()
	n2.NodeKey = Node(7).NodeKey
	n2.Name = "renamed"
	put(t, s, n2)
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.NodeIDBy(store.IndexNodeKey, n.NodeKey.String()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old node key still indexed (err %v)", err)
		}
		if _, err := tx.NodeIDBy(store.IndexName, n.Name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old name still indexed (err %v)", err)
		}
		if id, err := tx.NodeIDBy(store.IndexNodeKey, n2.NodeKey.String()); err != nil || id != n.ID {
			t.Errorf("new node key: NodeIDBy = %q, %v; want %q", id, err, n.ID)
		}
		return nil
	})
	// The freed name can be taken by another node.
	n3 := Node(3)
	n3.Name = n.Name
	put(t, s, n3)
}

// testDeleteNode: DeleteNode MUST remove the node and free all its unique
// values; deleting a missing node MUST return ErrNotFound.
func testDeleteNode(t *testing.T, s store.Store) {
	put(t, s, Node(1), Node(2))
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteNode(Node(1).ID) }); err != nil {
		t.Fatalf("DeleteNode: %v", err)
	}
	_, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteNode(Node(1).ID) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteNode of a missing node: error %v, want ErrNotFound", err)
	}
	view(t, s, func(tx store.Tx) error {
		var ids []api.NodeID
		tx.ForEachNode(func(n *store.Node) error { ids = append(ids, n.ID); return nil })
		if len(ids) != 1 || ids[0] != Node(2).ID {
			t.Errorf("nodes after delete = %v, want [%s]", ids, Node(2).ID)
		}
		return nil
	})
	put(t, s, Node(1)) // every unique value is free again
}

// testAuthKeys: auth keys MUST round-trip, including use counts and
// revocation.
func testAuthKeys(t *testing.T, s store.Store) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	k := &store.AuthKey{ID: "k1", Hash: store.Hash{1, 2, 3}, Reusable: true, Tags: []string{"tag:a"},
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), Uses: 2, RevokedAt: &now}
	if _, err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutAuthKey(k); err != nil {
			return err
		}
		return tx.PutAuthKey(&store.AuthKey{ID: "k2", CreatedAt: now, ExpiresAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.AuthKey("k1")
		if err != nil || !reflect.DeepEqual(got, k) {
			t.Errorf("AuthKey(k1) = %+v, %v; want %+v", got, err, k)
		}
		var ids []string
		tx.ForEachAuthKey(func(a *store.AuthKey) error { ids = append(ids, a.ID); return nil })
		if fmt.Sprint(ids) != "[k1 k2]" {
			t.Errorf("ForEachAuthKey IDs = %v, want [k1 k2]", ids)
		}
		if _, err := tx.AuthKey("k3"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AuthKey(k3) error = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// testPolicy: the policy MUST read back as written, and a later write
// replaces it.
func testPolicy(t *testing.T, s store.Store) {
	for _, text := range []string{"acls: []\n", "acls:\n  - action: accept\n    src: ['*']\n    dst: ['*']\n"} {
		p := &store.Policy{Text: text, UpdatedAt: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}
		if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutPolicy(p) }); err != nil {
			t.Fatal(err)
		}
		view(t, s, func(tx store.Tx) error {
			got, err := tx.Policy()
			if err != nil || got.Text != text || !got.UpdatedAt.Equal(p.UpdatedAt) {
				t.Errorf("Policy() = %+v, %v; want %+v", got, err, p)
			}
			return nil
		})
	}
}

// testCounters: a counter MUST start at 0 and read back what was set.
func testCounters(t *testing.T, s store.Store) {
	if _, err := s.Update(context.Background(), func(tx store.Tx) error {
		if v, err := tx.Counter("ipam"); err != nil || v != 0 {
			t.Errorf("Counter(ipam) = %d, %v; want 0", v, err)
		}
		return tx.SetCounter("ipam", 1<<40+5)
	}); err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx store.Tx) error {
		if v, err := tx.Counter("ipam"); err != nil || v != 1<<40+5 {
			t.Errorf("Counter(ipam) = %d, %v; want %d", v, err, uint64(1<<40+5))
		}
		return nil
	})
}

// testDeleteAuthKey: a deleted key MUST be gone, and deleting a missing one
// MUST return ErrNotFound.
func testDeleteAuthKey(t *testing.T, s store.Store) {
	for _, id := range []string{"k1", "k2"} {
		if _, err := s.Update(context.Background(), func(tx store.Tx) error {
			return tx.PutAuthKey(&store.AuthKey{ID: id, ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteAuthKey("k1") }); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteAuthKey("k1") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a deleted key: %v, want ErrNotFound", err)
	}
	view(t, s, func(tx store.Tx) error {
		var ids []string
		if err := tx.ForEachAuthKey(func(k *store.AuthKey) error { ids = append(ids, k.ID); return nil }); err != nil {
			t.Error(err)
		}
		if !reflect.DeepEqual(ids, []string{"k2"}) {
			t.Errorf("keys after delete = %q, want [k2]", ids)
		}
		return nil
	})
}

// testReadsSeeOwnWrites: inside an Update, reads and iteration MUST see the
// transaction's own writes and deletes, in order, merged with what was
// committed before; counters MUST list in name order.
func testReadsSeeOwnWrites(t *testing.T, s store.Store) {
	put(t, s, Node(1), Node(3), Node(5))
	if _, err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutNode(Node(2)); err != nil {
			return err
		}
		if err := tx.PutNode(Node(6)); err != nil {
			return err
		}
		if err := tx.DeleteNode(Node(3).ID); err != nil {
			return err
		}
		n5 := Node(5)
		n5.Name = "renamed"
		if err := tx.PutNode(n5); err != nil {
			return err
		}
		var got []string
		if err := tx.ForEachNode(func(n *store.Node) error { got = append(got, string(n.ID)+":"+n.Name); return nil }); err != nil {
			return err
		}
		want := []string{"n0001:host-1", "n0002:host-2", "n0005:renamed", "n0006:host-6"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ForEachNode inside the Update = %q, want %q", got, want)
		}
		if id, err := tx.NodeIDBy(store.IndexName, "renamed"); err != nil || id != "n0005" {
			t.Errorf("NodeIDBy(name, renamed) = %q, %v; want n0005", id, err)
		}
		if _, err := tx.NodeIDBy(store.IndexName, "host-5"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("NodeIDBy(name, host-5) after the rename: %v, want ErrNotFound", err)
		}
		for _, c := range []string{"name/b", "ipam", "name/a"} {
			if err := tx.SetCounter(c, uint64(len(c))); err != nil {
				return err
			}
		}
		var counters []string
		if err := tx.ForEachCounter(func(name string, v uint64) error {
			counters = append(counters, fmt.Sprintf("%s=%d", name, v))
			return nil
		}); err != nil {
			return err
		}
		if want := []string{"ipam=4", "name/a=6", "name/b=6"}; !reflect.DeepEqual(counters, want) {
			t.Errorf("ForEachCounter = %q, want %q", counters, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx store.Tx) error {
		var got []api.NodeID
		if err := tx.ForEachNode(func(n *store.Node) error { got = append(got, n.ID); return nil }); err != nil {
			t.Error(err)
		}
		if want := []api.NodeID{"n0001", "n0002", "n0005", "n0006"}; !reflect.DeepEqual(got, want) {
			t.Errorf("ForEachNode after commit = %q, want %q", got, want)
		}
		return nil
	})
}

// testBackup: Backup MUST write the store and report the bytes written.
func testBackup(t *testing.T, s store.Store) {
	put(t, s, Node(1))
	var buf bytes.Buffer
	n, err := s.Backup(context.Background(), &buf)
	if err != nil || n == 0 || n != int64(buf.Len()) {
		t.Errorf("Backup = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
}

// testCanceledContext: View and Update MUST refuse a canceled context
// without running the function.
func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := s.View(ctx, func(store.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View(canceled) error = %v, want context.Canceled", err)
	}
	if _, err := s.Update(ctx, func(store.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update(canceled) error = %v, want context.Canceled", err)
	}
	if ran {
		t.Error("a function ran under a canceled context")
	}
}

// Schema1 is what a schema-1 store may hold that schema 2 changes: nodes
// named by hostnames of the form of a node ID, as controllers before
// capability version 3 named them. WriteSchema1 puts them into a store
// (whose layout is otherwise the same at both versions) before its schema
// version is set back to 1; CheckSchema2 checks the store after it was
// opened again and migrated.
type Schema1 struct {
	Nodes []*store.Node
	// Want is each node's name after the migration.
	Want map[api.NodeID]string
}

// NewSchema1 returns n nodes whose names have the form of a node ID, and a
// node already holding the name the first of them would get, so that it
// gets the next.
func NewSchema1(n int) *Schema1 {
	s := &Schema1{Want: map[api.NodeID]string{}}
	for i := range n {
		nd := Node(1000 + i)
		nd.Name = fmt.Sprintf("n%016x", 0xabc000+i)
		s.Nodes = append(s.Nodes, nd)
		s.Want[nd.ID] = store.IDShapedNamePrefix + nd.Name
	}
	squatter := Node(999)
	squatter.Name = store.IDShapedNamePrefix + s.Nodes[0].Name
	s.Nodes = append(s.Nodes, squatter)
	s.Want[squatter.ID] = squatter.Name
	s.Want[s.Nodes[0].ID] = squatter.Name + "-2"
	return s
}

// Write puts the nodes into st, one transaction each.
func (s *Schema1) Write(t *testing.T, st store.Store) {
	t.Helper()
	for _, n := range s.Nodes {
		put(t, st, n)
	}
}

// Check checks that every node has its name after the migration, that the
// name index follows, and that nothing else about the node changed.
func (s *Schema1) Check(t *testing.T, st store.Store) {
	t.Helper()
	err := st.View(context.Background(), func(tx store.Tx) error {
		for _, want := range s.Nodes {
			got, err := tx.Node(want.ID)
			if err != nil {
				return fmt.Errorf("node %s: %w", want.ID, err)
			}
			if got.Name != s.Want[want.ID] {
				t.Errorf("node %s is named %q after the migration, want %q", want.ID, got.Name, s.Want[want.ID])
			}
			if id, err := tx.NodeIDBy(store.IndexName, got.Name); err != nil || id != want.ID {
				t.Errorf("name index %q -> %s, %v; want %s", got.Name, id, err, want.ID)
			}
			if got.Name != want.Name {
				if id, err := tx.NodeIDBy(store.IndexName, want.Name); err == nil && id == want.ID {
					t.Errorf("name index still holds the old name %q for %s", want.Name, want.ID)
				}
			}
			w := want.Clone()
			w.Name = got.Name
			if !reflect.DeepEqual(got, w) {
				t.Errorf("node %s changed beyond its name:\n got %+v\nwant %+v", want.ID, got, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
