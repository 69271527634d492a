package gates

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Snapshot is a private copy of the tree under test: a git worktree of the
// commit, with a dirty tree's changes (tracked and untracked, but not
// ignored) applied as they were when the snapshot was taken. Gates run in
// it, so an edit to the checkout during a run reaches no gate.
type Snapshot struct {
	// Dir is the snapshot's root.
	Dir string
	// Commit is the commit it was taken of; Dirty says whether changes
	// were applied on top.
	Commit string
	Dirty  bool

	repo string
}

// TakeSnapshot makes a snapshot of the checkout at root in a new temporary
// directory. Close removes it.
func TakeSnapshot(ctx context.Context, root string) (s *Snapshot, err error) {
	commit, err := gitOut(ctx, root, nil, "rev-parse", "HEAD")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w (the gate runs on a git checkout)", err)
	}
	commit = strings.TrimSpace(commit)
	status, err := gitOut(ctx, root, nil, "status", "--porcelain")
	if err != nil {
		// Never take a tree as clean without knowing it is.
		return nil, fmt.Errorf("snapshot: cannot tell whether the working tree is clean: %w", err)
	}
	parent, err := os.MkdirTemp("", "rustynet-gate-tree-")
	if err != nil {
		return nil, err
	}
	s = &Snapshot{Dir: filepath.Join(parent, "tree"), Commit: commit, Dirty: strings.TrimSpace(status) != "", repo: root}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if _, err := gitOut(ctx, root, nil, "worktree", "add", "--detach", "--quiet", s.Dir, commit); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if !s.Dirty {
		return s, nil
	}
	diff, err := gitOut(ctx, root, nil, "diff", "--binary", "HEAD")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if diff != "" {
		if _, err := gitOut(ctx, s.Dir, strings.NewReader(diff), "apply", "--binary", "--whitespace=nowarn", "-"); err != nil {
			return nil, fmt.Errorf("snapshot: applying the working tree's changes: %w", err)
		}
	}
	untracked, err := gitOut(ctx, root, nil, "ls-files", "--others", "--exclude-standard", "-z")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, rel := range strings.Split(untracked, "\x00") {
		if rel == "" {
			continue
		}
		if err := copyFile(filepath.Join(root, rel), filepath.Join(s.Dir, rel)); err != nil {
			return nil, fmt.Errorf("snapshot: untracked file %s: %w", rel, err)
		}
	}
	return s, nil
}

// Checkout makes a clean git worktree of the revision rev of the
// repository at repo, in a new temporary directory: the tree of another
// commit (a baseline) to build from. Close removes it.
func Checkout(ctx context.Context, repo, rev string) (s *Snapshot, err error) {
	commit, err := gitOut(ctx, repo, nil, "rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return nil, fmt.Errorf("checkout %q: %w", rev, err)
	}
	parent, err := os.MkdirTemp("", "rustynet-gate-tree-")
	if err != nil {
		return nil, err
	}
	s = &Snapshot{Dir: filepath.Join(parent, "tree"), Commit: strings.TrimSpace(commit), repo: repo}
	if _, err := gitOut(ctx, repo, nil, "worktree", "add", "--detach", "--quiet", s.Dir, s.Commit); err != nil {
		s.Close()
		return nil, fmt.Errorf("checkout %s: %w", rev, err)
	}
	return s, nil
}

// Close removes the snapshot and its worktree record.
func (s *Snapshot) Close() error {
	parent := filepath.Dir(s.Dir)
	_, err := gitOut(context.Background(), s.repo, nil, "worktree", "remove", "--force", s.Dir)
	if rerr := os.RemoveAll(parent); err == nil {
		err = rerr
	}
	gitOut(context.Background(), s.repo, nil, "worktree", "prune")
	return err
}

func gitOut(ctx context.Context, dir string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// copyFile copies a regular file or a symbolic link, keeping its mode.
func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
