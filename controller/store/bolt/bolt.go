// Package bolt is the embedded default Store, on go.etcd.io/bbolt: one file,
// one writer at a time, and every committed transaction fsynced before
// Update returns.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/internal/atomicfile"
)

var (
	bucketMeta     = []byte("meta")
	bucketNodes    = []byte("nodes")
	bucketAuthKeys = []byte("authkeys")
	bucketPolicy   = []byte("policy")

	keySchema   = []byte("schema_version")
	keyRevision = []byte("revision")
	keyPolicy   = []byte("current")
)

// rename moves a restored store into place; a variable so tests can see it.
var rename = atomicfile.Rename

// indexBuckets maps an index name of store.Tx.NodeIDBy to its bucket.
var indexBuckets = map[string][]byte{
	store.IndexMachineKey: []byte("idx_machine_key"),
	store.IndexNodeKey:    []byte("idx_node_key"),
	store.IndexName:       []byte("idx_name"),
	store.IndexAddress:    []byte("idx_address"),
}

// A migration moves the stored data from version to-1 to version to. Each
// runs in its own transaction that also records the new version, so a crash
// leaves the store at a version it had. fn returns how many records it
// changed.
type migration struct {
	to   uint64
	name string
	fn   func(tx *bbolt.Tx) (int, error)
}

var migrations = []migration{
	{to: 1, name: "create buckets and indexes", fn: func(tx *bbolt.Tx) (int, error) {
		for _, b := range [][]byte{bucketMeta, bucketNodes, bucketAuthKeys, bucketPolicy} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return 0, err
			}
		}
		for _, b := range indexBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}},
	{to: 2, name: "rename nodes whose name has the form of a node ID", fn: func(btx *bbolt.Tx) (int, error) {
		renamed, err := store.RenameIDShapedNames(&tx{btx: btx}, 0)
		return len(renamed), err
	}},
}

// Store is a store.Store in a bbolt file.
type Store struct {
	db       *bbolt.DB
	migrated []string
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path (mode 0600) and migrates it
// to store.SchemaVersion. It fails if another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: locked by another process (is another controller using this data dir?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Migrated lists the migrations Open applied, in order.
func (s *Store) Migrated() []string { return s.migrated }

// SchemaVersion reads the schema version recorded in the store.
func (s *Store) SchemaVersion() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		v = schemaOf(tx)
		return nil
	})
	return v, err
}

// FileName is the store file's name in a controller's data dir.
const FileName = "controller.db"

// ReadSchemaVersion reads the schema version of the store file at path
// without opening it for writing or migrating it: what a release would
// find there. The file must not be held by a controller.
func ReadSchemaVersion(path string) (uint64, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("open store %s read-only: %w", path, err)
	}
	defer db.Close()
	var v uint64
	err = db.View(func(tx *bbolt.Tx) error {
		v = schemaOf(tx)
		return nil
	})
	return v, err
}

func schemaOf(tx *bbolt.Tx) uint64 {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0
	}
	return getUint(meta, keySchema)
}

func (s *Store) migrate() error {
	var current uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		current = schemaOf(tx)
		return nil
	}); err != nil {
		return err
	}
	if current > store.SchemaVersion {
		return fmt.Errorf("%w: schema version %d, this build knows up to %d; run a newer controller or restore a backup taken before the upgrade",
			store.ErrNewerSchema, current, store.SchemaVersion)
	}
	for _, m := range migrations {
		if m.to <= current {
			continue
		}
		changed := 0
		err := s.db.Update(func(tx *bbolt.Tx) error {
			var err error
			if changed, err = m.fn(tx); err != nil {
				return err
			}
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			return putUint(meta, keySchema, m.to)
		})
		if err != nil {
			return fmt.Errorf("migrate schema %d -> %d (%s): %w", m.to-1, m.to, m.name, err)
		}
		s.migrated = append(s.migrated, fmt.Sprintf("%d: %s (%d records changed)", m.to, m.name, changed))
		current = m.to
	}
	if current != store.SchemaVersion {
		return fmt.Errorf("the store is at schema version %d and no migration takes it to %d", current, store.SchemaVersion)
	}
	return nil
}

// View implements store.Store.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bbolt.Tx) error {
		return fn(&tx{btx: btx, rev: getUint(btx.Bucket(bucketMeta), keyRevision)})
	})
}

// Update implements store.Store. bbolt fsyncs the file before Commit
// returns, so a nil error means the write is durable.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev uint64
	err := s.db.Update(func(btx *bbolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		rev = getUint(meta, keyRevision) + 1
		if err := fn(&tx{btx: btx, rev: rev}); err != nil {
			return err
		}
		return putUint(meta, keyRevision, rev)
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// Backup implements store.Store: a consistent copy of the bbolt file, which
// Restore (or simply copying it into place as DIR/controller.db) reads back.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Load implements store.Loader in one transaction.
func (s *Store) Load(ctx context.Context, e *store.Exported) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(btx *bbolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		t := &tx{btx: btx, rev: getUint(meta, keyRevision)}
		if err := store.CheckEmpty(t); err != nil {
			return err
		}
		if err := store.LoadInto(t, e.Nodes, e.AuthKeys, e.Counters, e.Policy); err != nil {
			return err
		}
		return putUint(meta, keyRevision, store.RestoredRevision(e, time.Now()))
	})
}

// Close implements store.Store.
func (s *Store) Close() error { return s.db.Close() }

// Restore writes the backup read from r to path, which must not exist:
// to a temporary file beside it (mode 0600), synced, checked to be a
// complete, consistent store of a schema this build reads, then renamed
// into place and the directory synced. On any failure nothing is left
// behind and path is not created. The caller must keep anything else from
// creating path meanwhile (the controller's data dir lock does).
func Restore(r io.Reader, path string) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("restore: %s exists; restore only into a path that does not", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("restore: read the backup into %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("restore: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := checkBackup(tmp); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := rename(tmp, path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// checkBackup opens the store file at path read-only and checks that it
// is whole (bbolt maps the file and would fault reading past a truncated
// end), every page is consistent, and its schema is one this build reads.
func checkBackup(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("backup is not a readable store: %w", err)
	}
	defer db.Close()
	var v uint64
	err = db.View(func(tx *bbolt.Tx) error {
		// Only the meta page is read before this check.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("truncated: %d bytes, its header says %d", fi.Size(), tx.Size())
		}
		for cerr := range tx.Check() {
			if err == nil {
				err = cerr
			}
		}
		v = schemaOf(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup is not a readable store: %w", err)
	}
	if v == 0 || v > store.SchemaVersion {
		return fmt.Errorf("backup has schema version %d; this build reads 1 to %d", v, store.SchemaVersion)
	}
	return nil
}

type tx struct {
	btx *bbolt.Tx
	rev uint64
}

func (t *tx) Revision() uint64 { return t.rev }

func (t *tx) Node(id api.NodeID) (*store.Node, error) {
	var n store.Node
	if err := getJSON(t.btx.Bucket(bucketNodes), []byte(id), &n); err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return &n, nil
}

func (t *tx) NodeIDBy(index, value string) (api.NodeID, error) {
	name, ok := indexBuckets[index]
	if !ok {
		return "", fmt.Errorf("unknown index %q", index)
	}
	v := t.btx.Bucket(name).Get([]byte(value))
	if v == nil {
		return "", fmt.Errorf("%s %s: %w", index, value, store.ErrNotFound)
	}
	return api.NodeID(v), nil
}

// indexEntries lists the unique index entries of n.
func indexEntries(n *store.Node) map[string][]string {
	addrs := make([]string, len(n.Addresses))
	for i, p := range n.Addresses {
		addrs[i] = p.Addr().String()
	}
	return map[string][]string{
		store.IndexMachineKey: {n.MachineKey.String()},
		store.IndexNodeKey:    {n.NodeKey.String()},
		store.IndexName:       {n.Name},
		store.IndexAddress:    addrs,
	}
}

func (t *tx) PutNode(n *store.Node) error {
	if n.ID == "" {
		return errors.New("put node: empty ID")
	}
	nodes := t.btx.Bucket(bucketNodes)
	var old *store.Node
	if nodes.Get([]byte(n.ID)) != nil {
		var err error
		if old, err = t.Node(n.ID); err != nil {
			return err
		}
	}
	entries := indexEntries(n)
	for index, values := range entries {
		b := t.btx.Bucket(indexBuckets[index])
		for _, v := range values {
			if owner := b.Get([]byte(v)); owner != nil && string(owner) != string(n.ID) {
				return &store.ConflictError{Field: index, Value: v, Owner: api.NodeID(owner)}
			}
		}
	}
	if old != nil {
		if err := t.deleteIndexEntries(old); err != nil {
			return err
		}
	}
	for index, values := range entries {
		b := t.btx.Bucket(indexBuckets[index])
		for _, v := range values {
			if err := b.Put([]byte(v), []byte(n.ID)); err != nil {
				return err
			}
		}
	}
	return putJSON(nodes, []byte(n.ID), n)
}

func (t *tx) deleteIndexEntries(n *store.Node) error {
	for index, values := range indexEntries(n) {
		b := t.btx.Bucket(indexBuckets[index])
		for _, v := range values {
			// Only remove entries that point at this node.
			if owner := b.Get([]byte(v)); string(owner) == string(n.ID) {
				if err := b.Delete([]byte(v)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *tx) DeleteNode(id api.NodeID) error {
	n, err := t.Node(id)
	if err != nil {
		return err
	}
	if err := t.deleteIndexEntries(n); err != nil {
		return err
	}
	return t.btx.Bucket(bucketNodes).Delete([]byte(id))
}

func (t *tx) ForEachNode(fn func(*store.Node) error) error {
	return t.btx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
		var n store.Node
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("node %s: decode: %w", k, err)
		}
		return fn(&n)
	})
}

func (t *tx) AuthKey(id string) (*store.AuthKey, error) {
	var k store.AuthKey
	if err := getJSON(t.btx.Bucket(bucketAuthKeys), []byte(id), &k); err != nil {
		return nil, fmt.Errorf("auth key %s: %w", id, err)
	}
	return &k, nil
}

func (t *tx) PutAuthKey(k *store.AuthKey) error {
	if k.ID == "" {
		return errors.New("put auth key: empty ID")
	}
	return putJSON(t.btx.Bucket(bucketAuthKeys), []byte(k.ID), k)
}

func (t *tx) ForEachAuthKey(fn func(*store.AuthKey) error) error {
	return t.btx.Bucket(bucketAuthKeys).ForEach(func(k, v []byte) error {
		var a store.AuthKey
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("auth key %s: decode: %w", k, err)
		}
		return fn(&a)
	})
}

func (t *tx) DeleteAuthKey(id string) error {
	b := t.btx.Bucket(bucketAuthKeys)
	if b.Get([]byte(id)) == nil {
		return fmt.Errorf("auth key %s: %w", id, store.ErrNotFound)
	}
	return b.Delete([]byte(id))
}

func (t *tx) Policy() (*store.Policy, error) {
	var p store.Policy
	if err := getJSON(t.btx.Bucket(bucketPolicy), keyPolicy, &p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &p, nil
}

func (t *tx) PutPolicy(p *store.Policy) error {
	return putJSON(t.btx.Bucket(bucketPolicy), keyPolicy, p)
}

func (t *tx) Counter(name string) (uint64, error) {
	return getUint(t.btx.Bucket(bucketMeta), []byte("counter/"+name)), nil
}

func (t *tx) SetCounter(name string, v uint64) error {
	return putUint(t.btx.Bucket(bucketMeta), []byte("counter/"+name), v)
}

func (t *tx) ForEachCounter(fn func(name string, v uint64) error) error {
	c := t.btx.Bucket(bucketMeta).Cursor()
	prefix := []byte("counter/")
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) != 8 {
			return fmt.Errorf("counter %s: %d bytes, want 8", k[len(prefix):], len(v))
		}
		if err := fn(string(k[len(prefix):]), binary.BigEndian.Uint64(v)); err != nil {
			return err
		}
	}
	return nil
}

func getJSON(b *bbolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return store.ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getUint(b *bbolt.Bucket, key []byte) uint64 {
	if b == nil {
		return 0
	}
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bbolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, v))
}
