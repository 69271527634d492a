package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// Options configures a mutation run.
type Options struct {
	// Root is the checkout whose tree (as it is now) the mutants seed.
	Root string
	// Only, when set, runs only these mutants (by name).
	Only []string
	// Log receives the progress and each gate's output.
	Log io.Writer
	// Now is the clock for dates in mutants; nil means time.Now.
	Now func() time.Time
}

// Outcome is what one mutant came to.
type Outcome struct {
	Mutant   string        `json:"mutant"`
	Gate     string        `json:"gate"`
	Blocked  bool          `json:"blocked"`
	Why      string        `json:"why"`
	Duration time.Duration `json:"duration_ns"`
}

// Run applies each mutant to its own snapshot of the tree and runs the
// gate that must block it. It returns every outcome; an error only when
// the mutants could not be loaded.
func Run(ctx context.Context, o Options) ([]Outcome, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	files, err := Load(o.Root)
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for _, f := range files {
		for i := range f.Mutants {
			m := &f.Mutants[i]
			if len(o.Only) > 0 && !slices.Contains(o.Only, m.Name) {
				continue
			}
			start := time.Now()
			fmt.Fprintf(o.Log, "== %s (%s must block it): %s\n", m.Name, f.Gate, m.What)
			blocked, why := runOne(ctx, o, f, m)
			oc := Outcome{Mutant: m.Name, Gate: f.Gate, Blocked: blocked, Why: why, Duration: time.Since(start)}
			mark := "BLOCKED"
			if !blocked {
				mark = "SURVIVED"
			}
			fmt.Fprintf(o.Log, "   %s in %v: %s\n", mark, oc.Duration.Round(time.Second), why)
			out = append(out, oc)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
		}
	}
	return out, nil
}

// Score is blocked over seeded.
func Score(out []Outcome) (blocked, seeded int) {
	for _, o := range out {
		if o.Blocked {
			blocked++
		}
	}
	return blocked, len(out)
}

// runOne reports whether the mutant was blocked, and why (or why not).
func runOne(ctx context.Context, o Options, f *File, m *Mutant) (bool, string) {
	snap, err := gates.TakeSnapshot(ctx, o.Root)
	if err != nil {
		return false, "could not snapshot the tree: " + err.Error()
	}
	defer snap.Close()
	work, err := os.MkdirTemp("", "rustynet-mutant-")
	if err != nil {
		return false, err.Error()
	}
	defer os.RemoveAll(work)
	gate := filepath.Join(work, "rustynet-gate")
	// The gate CLI of the unchanged tree: a mutant seeds the product (or
	// a policy), not the judge.
	if err := goBuild(ctx, snap.Dir, gate, "./cmd/rustynet-gate", o.Log); err != nil {
		return false, "could not build rustynet-gate: " + err.Error()
	}
	now := o.Now()
	if m.Expect == ExpectVerifyInvalid {
		return verifyInvalid(ctx, o, f, gate, snap.Dir, work)
	}
	if err := f.Apply(m, snap.Dir, now); err != nil {
		return false, "the mutant does not apply: " + err.Error()
	}
	if m.RunChannel() != policies.Nightly {
		if err := commitMutant(ctx, snap.Dir, m); err != nil {
			return false, "could not commit the mutant for a " + m.RunChannel() + " run: " + err.Error()
		}
	}
	out := filepath.Join(work, "bundle")
	vj, log, code, err := runGate(ctx, o, gate, snap.Dir, f.Gate, m.RunChannel(), out, m.Env)
	if err != nil {
		return false, err.Error()
	}
	var g *gateJSON
	for i := range vj.Gates {
		if vj.Gates[i].Gate == f.Gate {
			g = &vj.Gates[i]
		}
	}
	if g == nil {
		return false, fmt.Sprintf("the verdict (exit %d) says nothing of %s", code, f.Gate)
	}
	switch {
	case m.Expect == ExpectVerdictBlocks && (vj.Outcome != "blocked" || !g.Blocking):
		return false, fmt.Sprintf("the verdict is %s, %s %s (blocking=%v): the mutant passed", vj.Outcome, f.Gate, g.Status, g.Blocking)
	case m.Expect != ExpectVerdictBlocks && g.Status != "fail":
		return false, fmt.Sprintf("%s %s: %s%s", f.Gate, g.Status, g.Detail, map[bool]string{true: " (it could not run: not a block)", false: ""}[g.Status == "error"])
	}
	said := g.Reason + "\n" + g.Detail + "\n" + log
	for _, want := range m.BlockedByText(now) {
		if !strings.Contains(said, want) {
			return false, fmt.Sprintf("%s %s, but not for the seeded reason: %q is not in its reason or log (reason: %s)", f.Gate, g.Status, want, firstLine(g.Detail))
		}
	}
	return true, fmt.Sprintf("%s %s: %s", f.Gate, g.Status, firstLine(orElse(g.Detail, g.Reason)))
}

// gateJSON and verdictJSON are the parts of `rustynet-gate run --json`
// this reads.
type gateJSON struct {
	Gate     string `json:"gate"`
	Status   string `json:"status"`
	Blocking bool   `json:"blocking"`
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
}

type verdictJSON struct {
	Outcome string     `json:"outcome"`
	Exit    int        `json:"exit"`
	Gates   []gateJSON `json:"gates"`
}

// commitMutant commits the mutant's changes in the snapshot at dir (a git
// worktree), so that a beta or GA run judges a clean commit.
func commitMutant(ctx context.Context, dir string, m *Mutant) error {
	for _, step := range []struct {
		what string
		args []string
	}{
		{"add", []string{"add", "--all"}},
		{"commit", []string{"-c", "user.name=rustynet-gate mutate", "-c", "user.email=mutate@rustynet.invalid", "commit", "--quiet", "--no-verify", "-m", "mutant " + m.Name + ": " + m.What}},
	} {
		cmd := exec.CommandContext(ctx, "git", step.args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", step.what, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// runGate runs one gate of a channel on the tree at dir, and returns the
// verdict, the gate's log and the exit status.
func runGate(ctx context.Context, o Options, gate, dir, name, channel, out string, env []string) (*verdictJSON, string, int, error) {
	cmd := exec.CommandContext(ctx, gate, "run", "--policy", "policies/release.yaml", "--channel", channel, "--gates", name, "--out", out, "--json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, o.Log
	// Interrupted, the gate CLI is asked to stop as a user would ask it
	// (it kills the process groups of its gates), and killed if it has
	// not exited 30 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return nil, "", 0, fmt.Errorf("run %s: %w", name, err)
	}
	var vj verdictJSON
	if jerr := json.Unmarshal(stdout.Bytes(), &vj); jerr != nil {
		return nil, "", code, fmt.Errorf("run %s exited %d without a verdict: %v", name, code, jerr)
	}
	log, _ := os.ReadFile(filepath.Join(out, "artifacts", name, "log.txt"))
	return &vj, string(log), code, nil
}

// verifyInvalid makes a bundle of the unchanged tree with the file's gate,
// then changes one byte of each of its files in turn: verify must find
// every copy invalid (exit 3).
func verifyInvalid(ctx context.Context, o Options, f *File, gate, dir, work string) (bool, string) {
	out := filepath.Join(work, "bundle")
	vj, _, _, err := runGate(ctx, o, gate, dir, f.Gate, policies.Nightly, out, nil)
	if err != nil {
		return false, err.Error()
	}
	if vj.Outcome != "partial-pass" {
		return false, fmt.Sprintf("the unchanged tree's bundle is %s, want a passing partial run to tamper with", vj.Outcome)
	}
	pub := filepath.Join(dir, ".gate-dev", "gate.pub")
	var files []string
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	var survived []string
	for _, p := range files {
		rel, _ := filepath.Rel(out, p)
		cp := filepath.Join(work, "copy")
		os.RemoveAll(cp)
		if err := os.CopyFS(cp, os.DirFS(out)); err != nil {
			return false, err.Error()
		}
		target := filepath.Join(cp, rel)
		data, err := os.ReadFile(target)
		if err != nil || len(data) == 0 {
			return false, fmt.Sprintf("%s: %v (empty?)", rel, err)
		}
		data[len(data)/2] ^= 0x01
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return false, err.Error()
		}
		cmd := exec.CommandContext(ctx, gate, "verify", cp, "--pubkey", pub)
		cmd.Dir = dir
		err = cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			survived = append(survived, fmt.Sprintf("%s (%v)", rel, err))
		}
	}
	if len(survived) > 0 {
		return false, fmt.Sprintf("verify did not exit 3 for %d of %d files with a byte changed: %s", len(survived), len(files), strings.Join(survived, ", "))
	}
	return true, fmt.Sprintf("verify exited 3 for each of the bundle's %d files with one byte changed", len(files))
}

func goBuild(ctx context.Context, dir, out, pkg string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
