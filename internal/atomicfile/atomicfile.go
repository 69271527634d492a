// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never a mix: a temporary file in the same directory,
// synced, then renamed into place.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path with mode perm (set before any byte is
// written, so a secret is never readable by others).
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
	return os.Rename(tmp, path)
}
