package controller

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	release, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("LockDataDir(%s): %v", dir, err)
	}
	fi, err := os.Stat(filepath.Join(dir, LockFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v; want it with mode 600", fi, err)
	}
	// flock locks belong to the open file, so a second lock in the same
	// process is refused as one from another process would be.
	if _, err := LockDataDir(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("LockDataDir(%s) while locked = %v, want ErrLocked naming the data dir", dir, err)
	}
	if err := release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	release, err = LockDataDir(dir)
	if err != nil {
		t.Fatalf("LockDataDir(%s) after release: %v", dir, err)
	}
	release()
	if _, err := LockDataDir(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("LockDataDir of a missing dir = %v, want an error other than ErrLocked", err)
	}
}

// startRun runs a controller on dir until the test ends and waits for it
// to serve.
func startRun(t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(ctx, RunConfig{DataDir: dir, Listen: "127.0.0.1:0", Ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("first controller stopped with an error: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("controller did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not start within 30s")
	}
}

// TestRunHoldsDataDirLock: a controller holds the data dir's lock for its
// whole life, so a second one on the same dir (or a restore) is refused at
// once, and the lock is free again when it stops.
func TestRunHoldsDataDirLock(t *testing.T) {
	dir := t.TempDir()
	startRun(t, dir)
	if _, err := LockDataDir(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("LockDataDir while a controller runs = %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, RunConfig{DataDir: dir, Listen: "127.0.0.1:0"})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second Run on %s = %v, want ErrLocked naming the data dir", dir, err)
	}
}

func TestRunReleasesDataDirLock(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunConfig{DataDir: dir, Listen: "127.0.0.1:0", Ready: func(net.Addr, net.Addr) { cancel() }})
	}()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	release, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("LockDataDir after the controller stopped: %v", err)
	}
	release()
}
