package bolt

import (
	"bytes"
	"context"
	"errors"
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
	if got := s.Migrated(); len(got) != 1 || !strings.HasPrefix(got[0], "1: ") {
		t.Errorf("Migrated() = %q, want the one migration to schema 1", got)
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
