package cryptopolicy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestTree runs every check of the gate, as run does, on the tree at
// $CRYPTOPOLICY_TREE (a copy of the repository with a seeded regression of
// mutants.yaml applied) with binaries built from it, and
// fails with the findings that failed. It is a tool for `make mutate`, not
// a test of this tree (TestShippedGraph and TestRealBinaries are), and
// skips without the variable.
func TestTree(t *testing.T) {
	dir := os.Getenv("CRYPTOPOLICY_TREE")
	if dir == "" {
		t.Skip("set CRYPTOPOLICY_TREE to a repository copy to run the gate's checks on it")
	}
	now := time.Now()
	pol, err := loadPolicy(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	tr := tree{root: dir, work: work,
		controller: filepath.Join(work, "rustynet-controller"), node: filepath.Join(work, "rustynetd")}
	for bin, pkg := range map[string]string{tr.controller: "./cmd/rustynet-controller", tr.node: "./cmd/rustynetd"} {
		if err := goBuild(dir, bin, pkg); err != nil {
			t.Fatal(err)
		}
	}
	rep := testReport(t)
	if _, err := tr.check(context.Background(), rep, pol, now, now, func(float64) {}); err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.failed() {
		t.Errorf("BLOCKED %s: %s", f.Check, f.Detail)
	}
}

// TestRegressionsListed: every seeded regression of
// mutants.yaml still applies to this tree (a find matches
// once; a new file is new), says what blocks it, and names a test of this
// package that shows the same with a fixture.
func TestRegressionsListed(t *testing.T) {
	data, err := os.ReadFile("mutants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Gate    string
		Mutants []struct {
			Name  string
			What  string
			Edits []struct {
				File, Find, Replace, Content string
			}
			BlockedBy yaml.Node `yaml:"blocked_by"`
			Test      string
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		t.Fatal(err)
	}
	var tests []byte
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, b...)
	}
	seen := map[string]bool{}
	for _, r := range list.Mutants {
		if r.Name == "" || seen[r.Name] || len(r.Edits) == 0 || r.BlockedBy.IsZero() {
			t.Errorf("regression %q: want a unique name, edits and blocked_by", r.Name)
		}
		seen[r.Name] = true
		top, _, _ := strings.Cut(r.Test, "/")
		if !bytes.Contains(tests, []byte("func "+top+"(t *testing.T)")) {
			t.Errorf("regression %s names test %q, which this package does not have", r.Name, r.Test)
		}
		for _, e := range r.Edits {
			src, err := os.ReadFile(filepath.Join(root, e.File))
			switch {
			case e.Content != "":
				if err == nil {
					t.Errorf("regression %s adds %s, which exists", r.Name, e.File)
				}
			case err != nil:
				t.Errorf("regression %s: %v", r.Name, err)
			case bytes.Count(src, []byte(e.Find)) != 1 || e.Find == "":
				t.Errorf("regression %s: %q occurs %d times in %s, want once", r.Name, e.Find, bytes.Count(src, []byte(e.Find)), e.File)
			}
		}
	}
}
