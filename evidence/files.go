package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// Limits on what the reader takes into memory. An artifact is never read
// whole: its size is checked against the manifest's, then it is hashed
// as it streams.
const (
	// MaxEnvelopeBytes bounds a DSSE envelope (the manifest, a statement,
	// the verdict): a larger one is refused by its size, before it is read
	// or parsed. The largest real envelope, the unit gate's test-result
	// statement, is about 470 KB (350 KB of JSON, base64 encoded); a
	// manifest lists each artifact in about 200 bytes.
	MaxEnvelopeBytes = 4 << 20
	// MaxPolicyBytes bounds the release policy, the one artifact read
	// whole (the verdict is recomputed from it).
	MaxPolicyBytes = 1 << 20
)

// bundleFS reads the files of a bundle: regular files only, none through
// a symbolic link, none outside the bundle's directory. Every refusal is
// an *InvalidError.
type bundleFS struct {
	root *os.Root
}

// openBundle opens the bundle in dir. dir itself may be a symbolic link
// (the user's name for it); nothing inside it may be.
func openBundle(dir string) (*bundleFS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, invalid("bundle: %w", err)
	}
	return &bundleFS{root: root}, nil
}

func (b *bundleFS) Close() error { return b.root.Close() }

// kind names a file mode that is not a regular file's.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}

// notRegular refuses rel for being of mode m.
func notRegular(rel string, m fs.FileMode) error {
	return invalid("%s is %s, not a regular file; a bundle holds only regular files and directories", rel, kind(m))
}

// open opens the regular file rel (a slash-separated path inside the
// bundle) and returns it with its size. Each directory on the way must be
// a directory, not a link to one, and rel a regular file: checked with
// lstat, then on the open file, which must be the file lstat saw. The
// file is opened without following a symbolic link and without blocking,
// so a named pipe swapped in after the lstat is refused too, never waited
// on. A missing file is an error that wraps fs.ErrNotExist.
func (b *bundleFS) open(rel string) (*os.File, int64, error) {
	for i := range len(rel) {
		if rel[i] != '/' {
			continue
		}
		fi, err := b.root.Lstat(rel[:i])
		if err != nil {
			return nil, 0, b.wrap(rel, err)
		}
		if !fi.IsDir() {
			return nil, 0, invalid("%s is %s, not a directory; a bundle holds only regular files and directories", rel[:i], kind(fi.Mode()))
		}
	}
	lfi, err := b.root.Lstat(rel)
	if err != nil {
		return nil, 0, b.wrap(rel, err)
	}
	if !lfi.Mode().IsRegular() {
		return nil, 0, notRegular(rel, lfi.Mode())
	}
	f, err := b.root.OpenFile(rel, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, 0, b.wrap(rel, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, b.wrap(rel, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, notRegular(rel, fi.Mode())
	}
	if !os.SameFile(lfi, fi) {
		f.Close()
		return nil, 0, invalid("%s was replaced while it was verified", rel)
	}
	return f, fi.Size(), nil
}

// wrap makes an error opening rel an *InvalidError that wraps it.
func (b *bundleFS) wrap(rel string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &InvalidError{Reason: rel + " is missing", Err: err}
	}
	return invalid("%s: %w", rel, err)
}

// readFile reads the regular file rel whole, what is at most max bytes
// (the what of the message); a larger file is refused by its size,
// unread.
func (b *bundleFS) readFile(rel string, max int64, what string) ([]byte, error) {
	f, size, err := b.open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, invalid("%s is %d bytes; %s may be at most %d bytes", rel, size, what, max)
	}
	return readAll(f, rel, size)
}

// readAll reads f, which must hold exactly size bytes; rel names it in
// errors.
func readAll(f *os.File, rel string, size int64) ([]byte, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, invalid("%s changed while it was read: %w", rel, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return nil, invalid("%s grew while it was read", rel)
	}
	return data, nil
}

// sameContent says whether the regular file rel holds exactly want,
// comparing sizes first and then the bytes as they stream.
func (b *bundleFS) sameContent(rel string, want []byte) (bool, error) {
	f, size, err := b.open(rel)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if size != int64(len(want)) {
		return false, nil
	}
	buf := make([]byte, 64<<10)
	for len(want) > 0 {
		n, err := io.ReadFull(f, buf[:min(len(buf), len(want))])
		if err != nil {
			return false, nil // shorter than its size said: changed
		}
		if !bytes.Equal(buf[:n], want[:n]) {
			return false, nil
		}
		want = want[n:]
	}
	if n, _ := f.Read(buf[:1]); n > 0 {
		return false, nil
	}
	return true, nil
}

// hashBufSize is the size of the buffer files are hashed through.
const hashBufSize = 256 << 10

// hashFile returns the hex SHA-256 of f, which must hold exactly size
// bytes; rel names it in errors.
func hashFile(f *os.File, rel string, size int64, buf []byte) (string, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(f, size+1), buf)
	if err != nil {
		return "", invalid("%s: %w", rel, err)
	}
	if n != size {
		return "", invalid("%s changed while it was read (%d bytes, %d before)", rel, n, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// walk goes through the directory dir of the bundle and refuses, at the
// first it meets, anything but a regular file in files or a directory in
// dirs. It never follows a symbolic link, and holds one batch of entries
// per directory level at a time, so that its memory is bounded by the
// depth of the directories it is allowed into, whatever the bundle holds.
func (b *bundleFS) walk(dir string, files, dirs map[string]bool) error {
	f, err := b.root.Open(dir)
	if err != nil {
		return b.wrap(dir, err)
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(128)
		for _, e := range ents {
			rel := path.Join(dir, e.Name())
			switch t := e.Type(); {
			case t.IsDir():
				if !dirs[rel] {
					return invalid("%s is a directory the manifest does not account for", rel)
				}
				if err := b.walk(rel, files, dirs); err != nil {
					return err
				}
			case t.IsRegular():
				if !files[rel] {
					return invalid("%s is not accounted for by the manifest or the verdict", rel)
				}
			default:
				return notRegular(rel, t)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("%s: %w", dir, err)
		}
	}
}

// parentDirs returns every directory that holds one of paths.
func parentDirs(paths map[string]bool) map[string]bool {
	dirs := map[string]bool{".": true}
	for p := range paths {
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	return dirs
}

// validRel says whether p is a path the bundle may hold: relative, of
// letters, digits and ._=- in components, no "..", and clean (no "."
// component), so that one file has one spelling.
func validRel(p string) bool {
	return relRE.MatchString(p) && !strings.Contains(p, "..") && path.Clean(p) == p
}

// readDir lists the names in the bundle's directory dir, none when it
// does not exist; it refuses a directory of more than 4*MaxSignoffs
// entries unread (it is only for signoffs/), and anything but a plain
// directory (the walk names what it is).
func (b *bundleFS) readDir(dir string) ([]string, error) {
	fi, err := b.root.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, b.wrap(dir, err)
	}
	if !fi.IsDir() {
		return nil, notRegular(dir, fi.Mode())
	}
	f, err := b.root.Open(dir)
	if err != nil {
		return nil, b.wrap(dir, err)
	}
	defer f.Close()
	limit := 4 * MaxSignoffs
	ents, err := f.ReadDir(limit + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, invalid("%s: %w", dir, err)
	}
	if len(ents) > limit {
		return nil, invalid("%s holds more than %d entries", dir, limit)
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out, nil
}
