package compat

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// Built is an earlier release's binaries, built from its commit.
type Built struct {
	Release    string
	Commit     string
	Capability int
	Controller string // rustynet-controller
	Daemon     string // rustynetd
	// KnownIssues are those policies/compat.yaml lists for the release.
	KnownIssues []string
}

// Node is the release's rustynetd as a node of a mixed mesh.
func (b Built) Node() Binary {
	return Binary{Release: b.Release, Path: b.Daemon, KnownIssues: b.KnownIssues}
}

// BuildRelease builds rustynet-controller and rustynetd of rel from a git
// worktree of its commit (repo is a checkout that has the commit), with
// this process's Go toolchain (GOTOOLCHAIN=local), statically and with
// -trimpath, into out/REL/. The worktree is removed afterwards.
func BuildRelease(ctx context.Context, repo, out string, rel policies.EarlierRelease, log io.Writer) (Built, error) {
	b := Built{Release: rel.Name.Value, Commit: rel.Commit.Value, Capability: rel.Capability.Value}
	for _, i := range rel.KnownIssues {
		b.KnownIssues = append(b.KnownIssues, i.Value)
	}
	dir := filepath.Join(out, rel.Name.Value)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	run := func(dir string, env []string, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.WaitDelay = 10 * time.Second
		fmt.Fprintf(log, "$ (in %s) %s %s\n", dir, name, strings.Join(args, " "))
		return cmd.Run()
	}
	if err := run(repo, nil, "git", "worktree", "add", "--force", "--detach", src, rel.Commit.Value); err != nil {
		return b, fmt.Errorf("release %s: a worktree of %s: %w (the log has git's output)", rel.Name.Value, rel.Commit.Value, err)
	}
	defer run(repo, nil, "git", "worktree", "remove", "--force", src)
	for _, c := range []struct {
		name string
		to   *string
	}{{"rustynet-controller", &b.Controller}, {"rustynetd", &b.Daemon}} {
		p := filepath.Join(dir, c.name)
		if err := run(src, []string{"CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly"}, "go", "build", "-trimpath", "-buildvcs=false",
			"-ldflags", "-s -w -X main.version="+rel.Name.Value, "-o", p, "./cmd/"+c.name); err != nil {
			return b, fmt.Errorf("release %s: go build ./cmd/%s: %w (the log has the compiler's output)", rel.Name.Value, c.name, err)
		}
		*c.to = p
	}
	return b, nil
}
