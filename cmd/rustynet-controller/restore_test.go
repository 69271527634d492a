package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store/bolt"
)

// runController starts controller.Run on dir and waits until it serves
// (then stops it when the test ends) or fails to start (its error).
func runController(t *testing.T, dir string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, controller.RunConfig{DataDir: dir, Listen: "127.0.0.1:0",
			Ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
		t.Cleanup(func() { cancel(); <-done })
		return nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("controller.Run returned nil before serving")
		}
		return err
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("controller did not start within 30s")
		return nil
	}
}

// storeFiles makes a data dir holding a store (as a stopped controller
// leaves it) and a backup of another store, and returns both.
func storeFiles(t *testing.T) (dir, backupFile string) {
	t.Helper()
	dir = t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, controller.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	other, err := bolt.Open(filepath.Join(t.TempDir(), "other.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var buf bytes.Buffer
	if _, err := other.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	backupFile = filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(backupFile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, backupFile
}

// TestRestoreRacesAStartingController: a controller that starts after
// restore has checked that none is running, but before restore moves the
// store aside, must not end up serving a store restore then replaces.
// Restore holds the data dir's lock across the check, the move and the
// write, so that controller is refused.
func TestRestoreRacesAStartingController(t *testing.T) {
	dir, backupFile := storeFiles(t)
	var started error
	orig := restoreChecked
	t.Cleanup(func() { restoreChecked = orig })
	restoreChecked = func() { started = runController(t, dir) }

	var stderr bytes.Buffer
	code := run([]string{"restore", "--force", "--data-dir", dir, backupFile}, nil, &stderr, &stderr)
	switch {
	case started == nil && code == 0:
		t.Errorf("a controller started on %s between restore's check and its move, and restore went on to replace the store under it:\n%s", dir, stderr.String())
	case started != nil && !errors.Is(started, controller.ErrLocked):
		t.Errorf("the controller started during restore failed with %v, want ErrLocked", started)
	case code != 0:
		t.Errorf("restore = exit %d, want 0 (the controller was refused):\n%s", code, stderr.String())
	}
}

// TestRestoreRefusesARunningController: with a controller serving the
// data dir, restore refuses, says why, and changes nothing.
func TestRestoreRefusesARunningController(t *testing.T) {
	dir, backupFile := storeFiles(t)
	if err := runController(t, dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	for _, args := range [][]string{
		{"restore", "--force", "--data-dir", dir, backupFile},
		{"restore", "--data-dir", dir, backupFile},
	} {
		var stderr bytes.Buffer
		code := run(args, nil, &stderr, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "a controller is running on data dir "+dir) {
			t.Errorf("%q with a controller running = exit %d, %q; want exit 1 saying a controller is running on %s", args, code, stderr.String(), dir)
		}
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("refused restores changed %s: %d entries before, %d after", dir, len(before), len(after))
	}
}

// TestRenamesAreDurable: backup and restore rename files through
// atomicfile.Rename, which syncs the directory, so a power loss cannot
// undo them.
func TestRenamesAreDurable(t *testing.T) {
	var renamed []string
	orig := rename
	t.Cleanup(func() { rename = orig })
	rename = func(oldpath, newpath string) error {
		renamed = append(renamed, filepath.Base(newpath))
		return orig(oldpath, newpath)
	}

	c := controllertest.Start(t)
	out := filepath.Join(t.TempDir(), "backup.db")
	var stderr bytes.Buffer
	if code := run([]string{"backup", "--data-dir", c.DataDir, "--out", out}, nil, &stderr, &stderr); code != 0 {
		t.Fatalf("backup: exit %d %s", code, stderr.String())
	}
	if len(renamed) != 1 || renamed[0] != "backup.db" {
		t.Errorf("backup renamed %q through the durable rename, want [backup.db]", renamed)
	}

	renamed = nil
	dir, backupFile := storeFiles(t)
	if code := run([]string{"restore", "--force", "--data-dir", dir, backupFile}, nil, &stderr, &stderr); code != 0 {
		t.Fatalf("restore: exit %d %s", code, stderr.String())
	}
	if len(renamed) != 1 || !strings.HasPrefix(renamed[0], controller.StoreFile+".before-restore-") {
		t.Errorf("restore renamed %q through the durable rename, want the store moved aside", renamed)
	}
}
