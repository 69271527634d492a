package controller

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockFile is the file in the data directory whose exclusive flock a
// controller holds for its whole life, and that restore takes too.
const LockFile = "controller.lock"

// ErrLocked is returned (wrapped) by LockDataDir when another holder has
// the data dir's lock: a running controller, or a restore.
var ErrLocked = errors.New("data dir is locked")

// LockDataDir takes an exclusive lock on dir (a flock on dir/LockFile,
// created with mode 0600), without waiting: if another process, or another
// LockDataDir in this one, holds it, the error wraps ErrLocked. The lock
// lasts until release is called or the process exits, so a crash never
// leaves it held. The lock file is never removed: removing it would let
// two holders lock two different files.
func LockDataDir(dir string) (release func() error, err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another process (is a controller or a restore running on data dir %s?)",
				ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("lock data dir: flock %s: %w", path, err)
	}
	// Closing the file drops the lock.
	return f.Close, nil
}
