package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "controller.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenCreatesPrivateFileAndRecordsSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Migrated(); len(got) != 2 || !strings.HasPrefix(got[0], "1: ") || !strings.HasPrefix(got[1], "2: ") {
		t.Errorf("Migrated() = %q, want the migrations to schema 1 and 2", got)
	}
	if v, err := s.SchemaVersion(); err != nil || v != store.SchemaVersion {
		t.Errorf("SchemaVersion() = %d, %v; want %d", v, err, store.SchemaVersion)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("store file mode = %o, want 600", mode)
	}
}

func TestReopenKeepsDataAndSkipsMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	n := storetest.Node(1)
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutNode(n) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Migrated(); len(got) != 0 {
		t.Errorf("reopen applied migrations %q, want none", got)
	}
	err = s.View(context.Background(), func(tx store.Tx) error {
		if tx.Revision() != 1 {
			t.Errorf("Revision() after reopen = %d, want 1", tx.Revision())
		}
		_, err := tx.Node(n.ID)
		return err
	})
	if err != nil {
		t.Errorf("node after reopen: %v", err)
	}
}

// TestMigrateSchema2: a schema-1 store holding names of the form of a node
// ID is at schema 2 once opened, with those nodes renamed and nothing else
// changed.
func TestMigrateSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fx := storetest.NewSchema1(3)
	fx.Write(t, s)
	if err := s.db.Update(func(tx *bbolt.Tx) error { return putUint(tx.Bucket(bucketMeta), keySchema, 1) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Migrated(); len(got) != 1 || got[0] != "2: rename nodes whose name has the form of a node ID (3 records changed)" {
		t.Errorf("Migrated() = %q", got)
	}
	if v, err := s.SchemaVersion(); err != nil || v != 2 {
		t.Errorf("SchemaVersion() = %d, %v; want 2", v, err)
	}
	fx.Check(t, s)
}

// TestReadSchemaVersion: the schema version of a store file, read without
// migrating it, and an error for a file that is not there.
func TestReadSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return putUint(tx.Bucket(bucketMeta), keySchema, 1) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v, err := ReadSchemaVersion(path); err != nil || v != 1 {
		t.Errorf("ReadSchemaVersion = %d, %v; want 1 (read, not migrated)", v, err)
	}
	if _, err := ReadSchemaVersion(path + ".missing"); err == nil {
		t.Error("ReadSchemaVersion of a missing file: no error")
	}
}

// TestOpenRefusesASchemaNoMigrationReaches: a build whose migrations stop
// short of the version it writes refuses to open a store, rather than
// writing records of one version into a store marked as another.
func TestOpenRefusesASchemaNoMigrationReaches(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = migrations[:len(migrations)-1]
	_, err := Open(filepath.Join(t.TempDir(), "controller.db"))
	if err == nil || !strings.Contains(err.Error(), "no migration takes it to") {
		t.Fatalf("Open with the last migration missing: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return putUint(tx.Bucket(bucketMeta), keySchema, store.SchemaVersion+1)
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(path)
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("Open(newer schema) error = %v, want ErrNewerSchema", err)
	}
	// The refusal names both versions, so the operator knows which
	// release wrote the store.
	if want := fmt.Sprintf("schema version %d, this build knows up to %d", store.SchemaVersion+1, store.SchemaVersion); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not say %q", err, want)
	}
}

func TestOpenRefusesSecondOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second Open error = %v, want a lock error", err)
	}
}

func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	n := storetest.Node(3)
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutNode(n) }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	s.Close()

	restored := filepath.Join(dir, "b.db")
	if err := Restore(bytes.NewReader(buf.Bytes()), restored); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	s2, err := Open(restored)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.View(context.Background(), func(tx store.Tx) error { _, err := tx.Node(n.ID); return err }); err != nil {
		t.Errorf("restored store lacks node: %v", err)
	}

	if err := Restore(bytes.NewReader(buf.Bytes()), restored); err == nil {
		t.Error("Restore over an existing file succeeded, want an error")
	}
	garbage := filepath.Join(dir, "c.db")
	if err := Restore(strings.NewReader("not a database"), garbage); err == nil {
		t.Error("Restore of garbage succeeded, want an error")
	}
	if _, err := os.Stat(garbage); !os.IsNotExist(err) {
		t.Errorf("failed Restore left %s behind (stat err %v)", garbage, err)
	}
}

// backupOf returns a backup of a store holding one node.
func backupOf(t *testing.T) []byte {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutNode(storetest.Node(3)) }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// watchedReader reports, on every Read, whether path already exists.
type watchedReader struct {
	r       io.Reader
	path    string
	visible bool
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if _, err := os.Lstat(w.path); err == nil {
		w.visible = true
	}
	return w.r.Read(p)
}

// TestRestoreRenamesIntoPlace: the backup is written beside path and
// renamed into place (syncing the directory) only once it is complete and
// checked, so a crash or a bad backup never leaves a partial store at path.
func TestRestoreRenamesIntoPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "controller.db")
	var renames [][2]string
	orig := rename
	t.Cleanup(func() { rename = orig })
	rename = func(oldpath, newpath string) error {
		renames = append(renames, [2]string{oldpath, newpath})
		return orig(oldpath, newpath)
	}
	r := &watchedReader{r: bytes.NewReader(backupOf(t)), path: path}
	if err := Restore(r, path); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if r.visible {
		t.Errorf("%s existed while the backup was still being read; want it to appear only when complete", path)
	}
	if len(renames) != 1 || filepath.Dir(renames[0][0]) != dir || renames[0][1] != path {
		t.Errorf("Restore renamed %q; want one rename of a file in %s to %s", renames, dir, path)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in %s after Restore, want 1 (no temporary file left)", len(entries), dir)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored store: %v, %v; want mode 600", fi, err)
	}
}

type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

// TestRestoreFailureLeavesNothing: whatever goes wrong, the directory is
// left as it was.
func TestRestoreFailureLeavesNothing(t *testing.T) {
	good := backupOf(t)
	newer := func() []byte {
		path := filepath.Join(t.TempDir(), "newer.db")
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.Update(func(tx *bbolt.Tx) error {
			return putUint(tx.Bucket(bucketMeta), keySchema, store.SchemaVersion+1)
		}); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		s.Backup(context.Background(), &buf)
		s.Close()
		return buf.Bytes()
	}()
	for _, c := range []struct {
		name string
		r    io.Reader
		want string
	}{
		{"garbage", strings.NewReader("not a database"), "not a readable store"},
		{"truncated", bytes.NewReader(good[:len(good)/2]), "not a readable store"},
		{"short by a byte", bytes.NewReader(good[:len(good)-1]), "not a readable store"},
		{"two pages", bytes.NewReader(good[:2*os.Getpagesize()]), "not a readable store"},
		{"a read error", &failingReader{bytes.NewReader(good)}, "connection reset"},
		{"a newer schema", bytes.NewReader(newer), "schema version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "controller.db")
			err := Restore(c.r, path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Restore(%s) = %v, want an error containing %q", c.name, err, c.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("failed Restore(%s) left %q in the directory, want nothing", c.name, names)
			}
		})
	}
}
