package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	for _, content := range []string{"first", "second"} {
		if err := WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Errorf("after WriteFile(%q), file holds %q, %v", content, got, err)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %o, want 600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the directory, want 1 (no temporary file left)", len(entries))
	}
}

// recordSyncs replaces syncDir for the test with one that records the
// directories synced and what path holds at that moment, then syncs for
// real.
func recordSyncs(t *testing.T, path string) (dirs *[]string, held *[]string) {
	t.Helper()
	dirs, held = new([]string), new([]string)
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	syncDir = func(dir string) error {
		*dirs = append(*dirs, dir)
		data, _ := os.ReadFile(path)
		*held = append(*held, string(data))
		return orig(dir)
	}
	return dirs, held
}

// TestWriteFileSyncsDirectory: the rename is made durable by syncing the
// parent directory after it; without that a power loss can bring back the
// old file (an old key, credential or certificate).
func TestWriteFileSyncsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs, held := recordSyncs(t, path)
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(*dirs, []string{dir}) || !slices.Equal(*held, []string{"new"}) {
		t.Errorf("WriteFile synced directories %q while the file held %q; want %q once, after the rename (holding %q)",
			*dirs, *held, dir, "new")
	}
}

func TestWriteFileDirectorySyncFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	boom := errors.New("boom")
	syncDir = func(string) error { return boom }
	if err := WriteFile(path, []byte("new"), 0o600); !errors.Is(err, boom) {
		t.Errorf("WriteFile with the directory sync failing = %v, want the sync's error", err)
	}
}

func TestRename(t *testing.T) {
	dir := t.TempDir()
	old, path := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	if err := os.WriteFile(old, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs, held := recordSyncs(t, path)
	if err := Rename(old, path); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(*dirs, []string{dir}) || !slices.Equal(*held, []string{"content"}) {
		t.Errorf("Rename synced directories %q while the file held %q; want %q once, after the rename", *dirs, *held, dir)
	}

	// Across directories both are synced: the new entry and the removal
	// of the old.
	other := t.TempDir()
	moved := filepath.Join(other, "moved")
	dirs, _ = recordSyncs(t, moved)
	if err := Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(*dirs, []string{other, dir}) {
		t.Errorf("Rename across directories synced %q, want %q", *dirs, []string{other, dir})
	}

	if err := Rename(filepath.Join(dir, "missing"), path); err == nil {
		t.Error("Rename of a missing file = nil error, want one")
	}
}

// TestWriteDocument: the document's directory is made; a generator that
// fails leaves the old document as it was.
func TestWriteDocument(t *testing.T) {
	path := filepath.Join(t.TempDir(), "documents", "x", "doc.md")
	if err := WriteDocument(path, func(w io.Writer) error { _, err := io.WriteString(w, "one\n"); return err }); err != nil {
		t.Fatal(err)
	}
	if err := WriteDocument(path, func(w io.Writer) error { io.WriteString(w, "half"); return errors.New("the generator failed") }); err == nil || err.Error() != "the generator failed" {
		t.Fatalf("a failing generator: %v, want its error", err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "one\n" {
		t.Errorf("after a failed generation: %q, %v; want the old document", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode: %v, %v; want 0644", fi.Mode(), err)
	}
}
