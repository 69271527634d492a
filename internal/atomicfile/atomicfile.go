// Package atomicfile writes and renames files so that a crash or a power
// loss leaves either the old content or the new, never a mix: a temporary
// file in the same directory, synced, renamed into place, and then the
// directory synced so the rename itself is on disk.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// syncDir fsyncs the directory dir, making the entries renamed into or out
// of it durable. A variable so tests can see when it runs.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFile writes data to path with mode perm (set before any byte is
// written, so a secret is never readable by others): a temporary file in
// path's directory, synced, renamed over path, then the directory synced.
// A nil error means the new content survives a power loss.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return Rename(tmp, path)
}

// Rename renames oldpath to newpath, then fsyncs newpath's directory (and
// oldpath's, when it is another one), so the rename survives a power loss.
// The file's own content must already be synced by the caller. An error
// after the rename says so: the new name may then not survive a power loss.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	dirs := []string{filepath.Dir(newpath)}
	if d := filepath.Dir(oldpath); d != dirs[0] {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("renamed %s to %s, but syncing directory %s failed, so the rename may not survive a power loss: %w",
				oldpath, newpath, d, err)
		}
	}
	return nil
}

// WriteDocument writes what gen generates to path (mode 0644), creating
// path's directory if need be, whole or not at all: a generator that fails
// leaves the old document in place.
func WriteDocument(path string, gen func(w io.Writer) error) error {
	var doc bytes.Buffer
	if err := gen(&doc); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return WriteFile(path, doc.Bytes(), 0o644)
}
