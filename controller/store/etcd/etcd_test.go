package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/controller/store/etcd/etcdtest"
	"github.com/rustynet/rustynet/controller/store/storetest"
)

func open(t testing.TB, cli *clientv3.Client, prefix string) *Store {
	t.Helper()
	s, err := Open(context.Background(), cli, Options{Prefix: prefix, Timeout: 5 * time.Second, SessionTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		return open(t, cli, fmt.Sprintf("/suite/%d/", n))
	})
}

// TestStoreFollowing runs the suite on stores that follow their own
// change feed, as a replica does: their Updates read from the copy the
// feed keeps (see cache).
func TestStoreFollowing(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	n := 0
	var stores []*Store
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		s := open(t, cli, fmt.Sprintf("/following/%d/", n))
		follow(t, s)
		stores = append(stores, s)
		return s
	})
	var cached float64
	for _, s := range stores {
		cached += counterValue(s.m.reads.WithLabelValues("cache"))
	}
	if cached == 0 {
		t.Error("no Update read from the cache")
	}
}

// follow starts s following its change feed until the test ends, and
// waits until its cache holds the data.
func follow(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Follow(ctx, func(*store.Change) error { return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !s.cache.rlockAt(ctx, 1); {
		if time.Now().After(deadline) {
			t.Fatal("the cache did not fill within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cache.mu.RUnlock()
}

func TestOpenRecordsSchemaOnce(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	s1 := open(t, cli, "/m/")
	if got := s1.Migrated(); len(got) != 2 {
		t.Errorf("first Open migrated %q, want the migrations to schema 1 and 2", got)
	}
	s2 := open(t, cli, "/m/")
	if got := s2.Migrated(); len(got) != 0 {
		t.Errorf("second Open migrated %q, want none", got)
	}
	if v, err := s2.SchemaVersion(context.Background()); err != nil || v != store.SchemaVersion {
		t.Errorf("SchemaVersion = %d, %v", v, err)
	}
	if _, err := cli.Put(context.Background(), "/m/data/meta/schema", "99"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cli, Options{Prefix: "/m/"}); !errors.Is(err, store.ErrNewerSchema) {
		t.Errorf("Open of a newer schema: %v, want ErrNewerSchema", err)
	}
}

// TestMigrateSchema2: a schema-1 store holding more names of the form of
// a node ID than one etcd transaction renames is at schema 2 once opened,
// every such node renamed and nothing else changed; each batch commits as
// a store revision, so a replica already following the store sees the
// renames in its feed.
func TestMigrateSchema2(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	s := open(t, cli, "/m/")
	fx := storetest.NewSchema1(2*renameBatch + 5)
	fx.Write(t, s)
	if _, err := cli.Put(context.Background(), "/m/data/meta/schema", "1"); err != nil {
		t.Fatal(err)
	}
	var before uint64
	if err := s.View(context.Background(), func(tx store.Tx) error { before = tx.Revision(); return nil }); err != nil {
		t.Fatal(err)
	}
	renamed, following := make(chan int, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		n := 0
		s.Follow(ctx, func(c *store.Change) error {
			if c.Reset {
				close(following)
				return nil
			}
			for _, nd := range c.Nodes {
				if strings.HasPrefix(nd.Name, store.IDShapedNamePrefix+"n") {
					n++
				}
			}
			if n >= 2*renameBatch+5 {
				renamed <- n
				return errors.New("seen")
			}
			return nil
		})
	}()
	select {
	case <-following:
	case <-time.After(10 * time.Second):
		t.Fatal("the first replica did not start following within 10s")
	}
	m := open(t, cli, "/m/")
	want := fmt.Sprintf("2: rename nodes whose name has the form of a node ID (%d records changed)", 2*renameBatch+5)
	if got := m.Migrated(); len(got) != 1 || got[0] != want {
		t.Errorf("Migrated() = %q, want [%q]", got, want)
	}
	if v, err := m.SchemaVersion(context.Background()); err != nil || v != 2 {
		t.Errorf("SchemaVersion = %d, %v; want 2", v, err)
	}
	fx.Check(t, m)
	var after uint64
	if err := m.View(context.Background(), func(tx store.Tx) error { after = tx.Revision(); return nil }); err != nil {
		t.Fatal(err)
	}
	if after != before+3 {
		t.Errorf("revision %d -> %d over the migration, want 3 batches committed as revisions", before, after)
	}
	select {
	case <-renamed:
	case <-time.After(10 * time.Second):
		t.Error("the following replica's feed did not carry the renames within 10s")
	}
}

// TestSingleUseKeyRace: two replicas, each on its own etcd member, race to
// redeem one single-use key, 1,000 times over: each key is redeemed
// exactly once. The replicas read from etcd, and then from their copies
// kept by their change feeds, as serving replicas do (one replica's copy
// is behind the other's commit whenever it loses).
func TestSingleUseKeyRace(t *testing.T) {
	c := etcdtest.NewCluster(t, 3, etcdtest.Options{})
	for _, following := range []bool{false, true} {
		t.Run(fmt.Sprintf("following=%v", following), func(t *testing.T) {
			prefix := fmt.Sprintf("/race/%v/", following)
			a := open(t, etcdtest.NewClient(t, c.Members[0].ClientURL), prefix)
			b := open(t, etcdtest.NewClient(t, c.Members[1].ClientURL), prefix)
			if following {
				follow(t, a)
				follow(t, b)
			}
			singleUseKeyRace(t, a, b)
			for _, s := range []*Store{a, b} {
				if n := counterValue(s.m.reads.WithLabelValues("cache")); following && n == 0 || !following && n != 0 {
					t.Errorf("following=%v: %v Update attempts read from the cache", following, n)
				}
			}
		})
	}
}

func singleUseKeyRace(t *testing.T, a, b *Store) {
	ctx := context.Background()
	const rounds = 1000
	redeem := func(s *Store, id string) (bool, error) {
		won := false
		_, err := s.Update(ctx, func(tx store.Tx) error {
			won = false
			k, err := tx.AuthKey(id)
			if err != nil {
				return err
			}
			if k.Uses > 0 {
				return nil
			}
			k.Uses++
			won = true
			return tx.PutAuthKey(k)
		})
		return won && err == nil, err
	}
	var wins [2]int
	for i := range rounds {
		id := fmt.Sprintf("k%d", i)
		if _, err := a.Update(ctx, func(tx store.Tx) error {
			return tx.PutAuthKey(&store.AuthKey{ID: id, ExpiresAt: time.Now().Add(time.Hour)})
		}); err != nil {
			t.Fatal(err)
		}
		var got [2]bool
		var errs [2]error
		var wg sync.WaitGroup
		for j, s := range []*Store{a, b} {
			wg.Go(func() { got[j], errs[j] = redeem(s, id) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", i, errs[0], errs[1])
		}
		if got[0] == got[1] {
			t.Fatalf("round %d: replica a redeemed %v, b %v; want exactly one", i, got[0], got[1])
		}
		for j := range got {
			if got[j] {
				wins[j]++
			}
		}
	}
	t.Logf("%d rounds: replica a won %d, b %d; conflicts retried: %d", rounds, wins[0], wins[1], int(counterValue(a.m.conflicts)+counterValue(b.m.conflicts)))
}

// TestFollowDeliversEveryUpdateOnce: a follower sees the state, then every
// Update of another replica in revision order, each once.
func TestFollowDeliversEveryUpdateOnce(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	w := open(t, cli, "/f/")
	storetestPut(t, w, storetest.Node(1))
	f := open(t, etcdtest.NewClient(t, cli.Endpoints()...), "/f/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan *store.Change, 100)
	go f.Follow(ctx, func(c *store.Change) error { changes <- c; return nil })
	first := <-changes
	if !first.Reset || first.Rev != 1 || len(first.Nodes) != 1 || first.Nodes[0].ID != "n0001" {
		t.Fatalf("first change = %+v, want a Reset at revision 1 with n0001", first)
	}
	var last uint64 = 1
	for i := 2; i <= 20; i++ {
		storetestPut(t, w, storetest.Node(i))
	}
	if _, err := w.Update(ctx, func(tx store.Tx) error { return tx.DeleteNode("n0002") }); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Update(ctx, func(tx store.Tx) error { return tx.PutPolicy(&store.Policy{Text: "acls: []\n"}) }); err != nil {
		t.Fatal(err)
	}
	// An Update that changes neither nodes nor policy still advances.
	if _, err := w.Update(ctx, func(tx store.Tx) error { return tx.SetCounter("x", 1) }); err != nil {
		t.Fatal(err)
	}
	for last < 23 {
		select {
		case c := <-changes:
			if c.Reset || c.Rev != last+1 {
				t.Fatalf("change %+v after revision %d, want revision %d and no reset", c, last, last+1)
			}
			last = c.Rev
			switch {
			case c.Rev <= 20 && (len(c.Nodes) != 1 || c.Nodes[0].ID != api.NodeID(fmt.Sprintf("n%04d", c.Rev))):
				t.Errorf("revision %d carries %+v", c.Rev, c.Nodes)
			case c.Rev == 21 && (len(c.Deleted) != 1 || c.Deleted[0] != "n0002"):
				t.Errorf("revision 21 deleted %q, want n0002", c.Deleted)
			case c.Rev == 22 && (c.Policy == nil || c.Policy.Text != "acls: []\n"):
				t.Errorf("revision 22 policy %+v", c.Policy)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no change after revision %d in 10 s", last)
		}
	}
	select {
	case c := <-changes:
		t.Errorf("extra change %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatchFromCompactedRevisionResyncs: a watch that must resume from a
// revision etcd compacted reports it, and Follow then starts over with a
// Reset holding everything.
func TestWatchFromCompactedRevisionResyncs(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	s := open(t, cli, "/c/")
	storetestPut(t, s, storetest.Node(1))
	_, at, err := s.snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	storetestPut(t, s, storetest.Node(2))
	storetestPut(t, s, storetest.Node(3))
	resp, err := cli.Get(context.Background(), "/c/data/meta/revision")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.watch(ctx, at, func(*store.Change) error { return errors.New("no change expected") })
	if !errors.Is(err, errResync) {
		t.Fatalf("watch from compacted revision %d: %v, want errResync", at, err)
	}
}

// TestUnavailable: with its only member stopped, the store fails fast with
// ErrUnavailable (within its timeout), not a hang.
func TestUnavailable(t *testing.T) {
	c := etcdtest.NewCluster(t, 1, etcdtest.Options{})
	cli := c.Client(t)
	s, err := Open(context.Background(), cli, Options{Prefix: "/u/", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Members[0].Stop()
	start := time.Now()
	_, err = s.Update(context.Background(), func(tx store.Tx) error { return tx.SetCounter("x", 1) })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update with etcd down: %v, want ErrUnavailable", err)
	}
	err = s.View(context.Background(), func(tx store.Tx) error { return nil })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("View with etcd down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("two calls with a 1 s timeout took %v", d)
	}
}

// TestQuotaExceeded: when etcd's space quota is exhausted an Update fails
// with ErrNoSpace, saying what to do; reads still work.
func TestQuotaExceeded(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{QuotaBackendBytes: 1 << 20})
	s := open(t, cli, "/q/")
	big := make([]byte, 100<<10)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Update(context.Background(), func(tx store.Tx) error {
			return tx.PutPolicy(&store.Policy{Text: fmt.Sprintf("%d%s", i, big)})
		})
	}
	if !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("writing past the quota: %v, want ErrNoSpace", err)
	}
	if err := s.View(context.Background(), func(tx store.Tx) error { _, err := tx.Policy(); return err }); err != nil {
		t.Errorf("read with the quota exhausted: %v", err)
	}
}

// TestTooLarge: a transaction over etcd's --max-txn-ops fails with
// ErrTooLarge and writes nothing.
func TestTooLarge(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 16})
	s := open(t, cli, "/l/")
	_, err := s.Update(context.Background(), func(tx store.Tx) error {
		for i := range 20 {
			if err := tx.SetCounter(fmt.Sprint(i), 1); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("20 writes with --max-txn-ops 16: %v, want ErrTooLarge", err)
	}
	s.View(context.Background(), func(tx store.Tx) error {
		if tx.Revision() != 0 {
			t.Errorf("revision %d after a refused Update, want 0", tx.Revision())
		}
		return nil
	})
}

// TestLeaderChangeMidTransaction: Updates from two replicas while the etcd
// leadership moves again and again: every Update that returned success is
// in the store, every failure is one the controller answers 503 to, and
// no revision is skipped or reused.
func TestLeaderChangeMidTransaction(t *testing.T) {
	c := etcdtest.NewCluster(t, 3, etcdtest.Options{})
	reps := []*Store{
		open(t, etcdtest.NewClient(t, c.Endpoints()...), "/lc/"),
		open(t, etcdtest.NewClient(t, c.Endpoints()...), "/lc/"),
	}
	ctx := context.Background()
	var stop atomic.Bool
	var moves int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			c.MoveLeader(t)
			moves++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var mu sync.Mutex
	acked := map[uint64]api.NodeID{}
	var failed []error
	var wg sync.WaitGroup
	for r, s := range reps {
		wg.Go(func() {
			for i := range 300 {
				n := storetest.Node(r*1000 + i + 1)
				rev, err := s.Update(ctx, func(tx store.Tx) error { return tx.PutNode(n) })
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					if prev, dup := acked[rev]; dup {
						t.Errorf("revision %d acknowledged twice (%s, %s)", rev, prev, n.ID)
					}
					acked[rev] = n.ID
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	<-done
	for _, err := range failed {
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrUnknownOutcome) {
			t.Errorf("Update failed with %v, which is neither ErrUnavailable nor ErrUnknownOutcome", err)
		}
	}
	reps[0].View(ctx, func(tx store.Tx) error {
		for rev, id := range acked {
			if _, err := tx.Node(id); err != nil {
				t.Errorf("acknowledged node %s (revision %d): %v", id, rev, err)
			}
		}
		return nil
	})
	t.Logf("%d leader moves; %d Updates acknowledged, %d failed", moves, len(acked), len(failed))
}

// TestElectionMovesWhenLeaderDies: one replica leads; when its session
// ends (Close), the other is elected.
func TestElectionMovesWhenLeaderDies(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	a, b := open(t, cli, "/e/"), open(t, cli, "/e/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leadA, _, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	elected := make(chan error, 1)
	go func() {
		_, _, err := b.Campaign(ctx, "b")
		elected <- err
	}()
	select {
	case <-elected:
		t.Fatal("b elected while a leads")
	case <-time.After(300 * time.Millisecond):
	}
	a.Close()
	if err := <-elected; err != nil {
		t.Fatalf("b's campaign: %v", err)
	}
	select {
	case <-leadA.Done():
	case <-time.After(5 * time.Second):
		t.Error("a's leadership context still live after its session closed")
	}
}

// TestAnnounce: replicas' URLs are listed while they live and gone when
// they close; watchers see each change.
func TestAnnounce(t *testing.T) {
	cli := etcdtest.Start(t, etcdtest.Options{})
	a, b := open(t, cli, "/a/"), open(t, cli, "/a/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan []string, 10)
	go a.WatchReplicas(ctx, func(urls []string) { seen <- urls })
	go a.Announce(ctx, "a", "https://a:1")
	go b.Announce(ctx, "b", "https://b:1")
	want := func(w ...string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got := <-seen:
				if fmt.Sprint(got) == fmt.Sprint(w) {
					return
				}
			case <-deadline:
				t.Fatalf("replicas never became %q", w)
			}
		}
	}
	want("https://a:1", "https://b:1")
	b.Close()
	want("https://a:1")
}

func storetestPut(t *testing.T, s *Store, n *store.Node) {
	t.Helper()
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutNode(n) }); err != nil {
		t.Fatal(err)
	}
}

// TestExportAcrossEngines: a bbolt store's logical export restores into
// etcd, and etcd's back into a new bbolt store, record for record.
func TestExportAcrossEngines(t *testing.T) {
	ctx := context.Background()
	started := time.Now()
	b1, err := bolt.Open(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	storetest.Populate(t, b1, 100)
	var fromBolt bytes.Buffer
	if _, err := store.Export(ctx, b1, &fromBolt); err != nil {
		t.Fatal(err)
	}
	e := open(t, etcdtest.Start(t, etcdtest.Options{}), "/x/")
	if _, err := store.Import(ctx, e, bytes.NewReader(fromBolt.Bytes())); err != nil {
		t.Fatalf("bolt -> etcd: %v", err)
	}
	var fromEtcd bytes.Buffer
	if _, err := store.Export(ctx, e, &fromEtcd); err != nil {
		t.Fatal(err)
	}
	b2, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if _, err := store.Import(ctx, b2, bytes.NewReader(fromEtcd.Bytes())); err != nil {
		t.Fatalf("etcd -> bolt: %v", err)
	}
	var again bytes.Buffer
	if _, err := store.Export(ctx, b2, &again); err != nil {
		t.Fatal(err)
	}
	x, _ := store.ParseExport(bytes.NewReader(fromBolt.Bytes()))
	y, _ := store.ParseExport(bytes.NewReader(again.Bytes()))
	// Each restore moves the revision past the export's plus the gap, and
	// past the restore's time.
	if lo := max(x.Revision+2*store.RestoreGap, uint64(started.UnixMicro())); y.Revision < lo || y.Revision > uint64(time.Now().UnixMicro())+2*store.RestoreGap {
		t.Errorf("revision after two restores = %d, want at least %d (store.RestoredRevision twice)", y.Revision, lo)
	}
	y.Revision = x.Revision
	if !reflect.DeepEqual(x, y) || len(y.Nodes) != 100 {
		t.Errorf("bolt -> etcd -> bolt changed the records (%d nodes)", len(y.Nodes))
	}
}

// TestSnapshotRestoresIntoFreshCluster: the native backup on etcd is an
// etcd snapshot; restored (as etcdutl snapshot restore does) into every
// member of a new 3-member cluster, it holds the same store, which takes
// writes again from where it left off.
func TestSnapshotRestoresIntoFreshCluster(t *testing.T) {
	ctx := context.Background()
	old := open(t, etcdtest.Start(t, etcdtest.Options{}), "/mesh/")
	storetest.Populate(t, old, 50)
	var before bytes.Buffer
	if _, err := store.Export(ctx, old, &before); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "etcd.snapshot")
	f, err := os.OpenFile(snap, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	n, err := old.Backup(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n == 0 {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}

	fresh := etcdtest.NewCluster(t, 3, etcdtest.Options{Snapshot: snap})
	restored := open(t, fresh.Client(t), "/mesh/")
	var after bytes.Buffer
	if _, err := store.Export(ctx, restored, &after); err != nil {
		t.Fatal(err)
	}
	x, err := store.ParseExport(bytes.NewReader(before.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	y, err := store.ParseExport(bytes.NewReader(after.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, y) || len(y.Nodes) != 50 {
		t.Errorf("the restored cluster's store differs from the one backed up (%d nodes, revision %d, want 50 and %d)", len(y.Nodes), y.Revision, x.Revision)
	}
	rev, err := restored.Update(ctx, func(tx store.Tx) error {
		return tx.PutAuthKey(&store.AuthKey{ID: "after-restore", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	})
	if err != nil || rev != x.Revision+1 {
		t.Fatalf("a write after the restore: revision %d, %v; want %d", rev, err, x.Revision+1)
	}
}

// BenchmarkLoad restores an export of 10,000 nodes into an empty prefix,
// as `rustynet-controller restore --store etcd` does (the dr gate's
// restore at scale times it in containers against the restore target).
func BenchmarkLoad(b *testing.B) {
	const nodes = 10000
	e := &store.Exported{Format: store.ExportFormat, Schema: store.SchemaVersion, Revision: 7, AuthKeys: []*store.AuthKey{}, Counters: map[string]uint64{"ipam": nodes}}
	for i := 1; i <= nodes; i++ {
		e.Nodes = append(e.Nodes, storetest.Node(i))
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(e); err != nil {
		b.Fatal(err)
	}
	cli := etcdtest.Start(b, etcdtest.Options{Fsync: true})
	b.ResetTimer()
	for i := range b.N {
		s := open(b, cli, fmt.Sprintf("/load/%d/", i))
		if _, err := store.Import(context.Background(), s, bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/restore")
}
