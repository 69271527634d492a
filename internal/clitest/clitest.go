// Package clitest builds a command's binary once for its package's tests,
// which then run it as a user does: the flags, the output and the exit
// status are the binary's own, not a function's.
package clitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Version is what the test binaries' -ldflags set as main.version, as the
// Makefile sets the real one.
const Version = "v0.0.0-test"

// Main is a TestMain: it builds the main package of the test's directory
// as name (static, with Version), calls setup with the build directory
// (for more binaries a package's tests need), runs the tests, and removes
// what it built. It exits 2 when a build fails.
func Main(m *testing.M, name string, bin *string, setup func(dir string) error) {
	dir, err := os.MkdirTemp("", name+"-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	*bin = filepath.Join(dir, name)
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+Version, "-o", *bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build "+name+":", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	if setup != nil {
		if err := setup(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(2)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Case is one command line of a Table: the exit status it must end with,
// what its output (stdout and stderr together) must say, and what it must
// never say (a Go error's wording, say).
type Case struct {
	Name        string
	Args        []string
	Code        int
	Want, Never []string
}

// Row is what a test's own table of Cases is made of: a struct of
// Case's fields, written unkeyed in the test (a Case literal from this
// package would have to be keyed).
type Row interface {
	~struct {
		Name        string
		Args        []string
		Code        int
		Want, Never []string
	}
}

// Table runs bin with each case's arguments and checks its exit status
// and output. A usage error (exit 2) must print nothing on stdout, where a
// script reads results; a run with no arguments at all is exempt (the
// root's help).
func Table[R Row](t *testing.T, bin string, rows []R) {
	t.Helper()
	name := filepath.Base(bin)
	for _, r := range rows {
		tc := Case(r)
		t.Run(tc.Name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			cmd := exec.Command(bin, tc.Args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				if _, ok := err.(*exec.ExitError); !ok {
					t.Fatal(err)
				}
			}
			code := cmd.ProcessState.ExitCode()
			out := stdout.String() + stderr.String()
			if code != tc.Code {
				t.Errorf("%s %q exited %d, want %d; printed %q", name, tc.Args, code, tc.Code, out)
			}
			for _, w := range tc.Want {
				if !strings.Contains(out, w) {
					t.Errorf("%s %q printed %q, want %q in it", name, tc.Args, out, w)
				}
			}
			for _, w := range tc.Never {
				if strings.Contains(out, w) {
					t.Errorf("%s %q printed %q, which says %q", name, tc.Args, out, w)
				}
			}
			if tc.Code == 2 && stdout.Len() > 0 && tc.Args != nil {
				t.Errorf("%s %q printed %q on stdout, want a usage error on stderr only", name, tc.Args, stdout.String())
			}
		})
	}
}
