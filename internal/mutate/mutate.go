// Package mutate proves the release gates can fail: it applies each seeded
// regression (a mutant) to a snapshot of the tree, runs the gate that must
// block it, and checks that the gate did, for the reason the mutant names.
// The mutants are data, kept beside the gate that must block them
// (gates/GATE/mutants.yaml); `rustynet-gate mutate` (and `make mutate`)
// runs them all and prints the mutation score: blocked over seeded.
package mutate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rustynet/rustynet/policies"
)

// File is one gate's mutants.yaml.
type File struct {
	// Gate is the gate that must block every mutant of the file.
	Gate    string   `yaml:"gate"`
	Mutants []Mutant `yaml:"mutants"`

	path string
}

// Expectations of a mutant.
const (
	// ExpectGateFails: the gate runs and fails (not "could not run").
	ExpectGateFails = "gate-fails"
	// ExpectVerdictBlocks: the verdict blocks on the gate (a waiver
	// mutant: the gate fails and the waiver does not let it pass).
	ExpectVerdictBlocks = "verdict-blocks"
	// ExpectVerifyInvalid: every file of a bundle the unchanged tree
	// makes, with one byte changed, makes verify exit 3.
	ExpectVerifyInvalid = "verify-invalid"
)

// Mutant is one seeded regression.
type Mutant struct {
	Name string `yaml:"name"`
	// What says what the mutant seeds.
	What string `yaml:"what"`
	// Edits change the tree; Patch (relative to the mutants file) is a
	// diff `git apply` takes. A mutant has one or the other, or neither
	// for ExpectVerifyInvalid.
	Edits []Edit `yaml:"edits"`
	Patch string `yaml:"patch"`
	// Env is added to the gate's environment (RUSTYNET_SOAK=short).
	Env []string `yaml:"env"`
	// Channel is the channel whose gate must block it: nightly when
	// empty, or beta for what only the release matrix measures (a beta
	// run takes most of an hour). The mutant is committed in the
	// snapshot first: beta and GA judge a commit, never a dirty tree.
	Channel string `yaml:"channel"`
	// Expect is ExpectGateFails when empty.
	Expect string `yaml:"expect"`
	// BlockedBy are texts the gate's reason or log must hold: why it
	// blocked. "<yesterday>" stands for yesterday's date (UTC).
	BlockedBy StringList `yaml:"blocked_by"`
	// Test names a test that shows the same failure with a fixture.
	Test string `yaml:"test"`
}

// Edit replaces Find (which must occur once) with Replace in File, writes
// a new File with Content, or deletes File.
type Edit struct {
	File    string `yaml:"file"`
	Find    string `yaml:"find"`
	Replace string `yaml:"replace"`
	Content string `yaml:"content"`
	Delete  bool   `yaml:"delete"`
}

// StringList is a string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// Load reads every gates/*/mutants.yaml of the tree at root.
func Load(root string) ([]*File, error) {
	paths, err := filepath.Glob(filepath.Join(root, "gates", "*", "mutants.yaml"))
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	var out []*File
	names := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		f := &File{path: p}
		if err := dec.Decode(f); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if f.Gate == "" || len(f.Mutants) == 0 {
			return nil, fmt.Errorf("%s: want a gate and at least one mutant", p)
		}
		for _, m := range f.Mutants {
			if err := m.check(); err != nil {
				return nil, fmt.Errorf("%s: mutant %q: %w", p, m.Name, err)
			}
			if other, dup := names[m.Name]; dup {
				return nil, fmt.Errorf("%s: mutant %q is also in %s", p, m.Name, other)
			}
			names[m.Name] = p
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no gates/*/mutants.yaml under %s", root)
	}
	return out, nil
}

func (m *Mutant) check() error {
	switch m.Expect {
	case "", ExpectGateFails, ExpectVerdictBlocks:
		if len(m.Edits) == 0 && m.Patch == "" {
			return errors.New("no edits and no patch: it seeds nothing")
		}
	case ExpectVerifyInvalid:
	default:
		return fmt.Errorf("expect %q: want %s, %s or %s", m.Expect, ExpectGateFails, ExpectVerdictBlocks, ExpectVerifyInvalid)
	}
	if m.Name == "" || m.What == "" {
		return errors.New("a mutant has a name and says what it seeds")
	}
	if m.Channel != "" && !slices.Contains(policies.Channels, m.Channel) {
		return fmt.Errorf("channel %q: want one of %s, or none for %s", m.Channel, strings.Join(policies.Channels, ", "), policies.Nightly)
	}
	if m.Channel != "" && m.Expect == ExpectVerifyInvalid {
		return errors.New("a verify-invalid mutant tampers with a nightly bundle: it takes no channel")
	}
	for _, e := range m.Edits {
		if e.File == "" || filepath.IsAbs(e.File) || strings.Contains(e.File, "..") {
			return fmt.Errorf("edit of %q: want a path inside the tree", e.File)
		}
		kinds := 0
		for _, set := range []bool{e.Content != "", e.Find != "", e.Delete} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return fmt.Errorf("edit of %s: want one of find (and replace), content or delete", e.File)
		}
	}
	return nil
}

// RunChannel is the channel the mutant's gate runs on.
func (m *Mutant) RunChannel() string {
	if m.Channel == "" {
		return policies.Nightly
	}
	return m.Channel
}

// Apply makes the mutant's changes to the tree at dir; "<yesterday>" in
// an edit stands for yesterday's date (UTC) as of now.
func (f *File) Apply(m *Mutant, dir string, now time.Time) error {
	fill := func(s string) string { return fillDates(s, now) }
	for _, e := range m.Edits {
		e.Find, e.Replace, e.Content = fill(e.Find), fill(e.Replace), fill(e.Content)
		p := filepath.Join(dir, e.File)
		if e.Delete {
			if err := os.Remove(p); err != nil {
				return err
			}
			continue
		}
		if e.Content != "" {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists: a mutant's new file must be new", e.File)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(e.Content), 0o644); err != nil {
				return err
			}
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n := bytes.Count(src, []byte(e.Find)); n != 1 {
			return fmt.Errorf("%q occurs %d times in %s, want once", e.Find, n, e.File)
		}
		if err := os.WriteFile(p, bytes.Replace(src, []byte(e.Find), []byte(e.Replace), 1), 0o644); err != nil {
			return err
		}
	}
	if m.Patch != "" {
		patch, err := filepath.Abs(filepath.Join(filepath.Dir(f.path), m.Patch))
		if err != nil {
			return err
		}
		cmd := exec.Command("git", "apply", patch)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git apply %s: %w: %s", m.Patch, err, out)
		}
	}
	return nil
}

// BlockedByText is m.BlockedBy with its placeholders filled for now.
func (m *Mutant) BlockedByText(now time.Time) []string {
	out := make([]string, len(m.BlockedBy))
	for i, s := range m.BlockedBy {
		out[i] = fillDates(s, now)
	}
	return out
}

func fillDates(s string, now time.Time) string {
	return strings.ReplaceAll(s, "<yesterday>", now.UTC().Add(-24*time.Hour).Format(time.DateOnly))
}
