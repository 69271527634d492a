// Package clitest builds a command's binary once for its package's tests,
// which then run it as a user does: the flags, the output and the exit
// status are the binary's own, not a function's.
package clitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
