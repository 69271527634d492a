package cryptopolicy

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
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// root is the repository root, from this package's directory.
const root = "../.."

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cryptopolicy-test-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	defer os.RemoveAll(dir)
	goleak.VerifyTestMain(m)
}

var builds sync.Map // package path -> *buildOnce

type buildOnce struct {
	once sync.Once
	bin  string
	err  error
}

// build builds pkg (relative to this package's directory) once per test
// binary and returns the binary's path.
func build(t *testing.T, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &buildOnce{})
	b := v.(*buildOnce)
	b.once.Do(func() {
		b.bin = filepath.Join(binDir, filepath.Base(pkg))
		b.err = goBuild(".", b.bin, pkg)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// goBuild builds pkg, in dir, into bin, as the build gate does (CGO off).
func goBuild(dir, bin, pkg string) error {
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, out)
	}
	return nil
}

// testReport returns a report whose log is printed when the test fails.
func testReport(t *testing.T) *report {
	var buf bytes.Buffer
	rep := newReport(&buf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return rep
}

// wantFailures checks that the report's failed findings are exactly those
// that the substrings in want pick out, one each.
func wantFailures(t *testing.T, rep *report, want ...string) {
	t.Helper()
	failed := rep.failed()
	for _, w := range want {
		n := 0
		for _, f := range failed {
			if strings.Contains(f.Detail, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d failed findings say %q, want 1", n, w)
		}
	}
	if len(failed) != len(want) {
		t.Errorf("%d failed findings, want %d: %+v", len(failed), len(want), failed)
	}
}

func hasFinding(rep *report, ok bool, substr string) bool {
	for _, f := range rep.findings {
		if f.OK == ok && strings.Contains(f.Detail, substr) {
			return true
		}
	}
	return false
}

// TestRunCouldNotRun: a policy the gate cannot read, or binaries it was
// not given, make the gate's result an error (it could not run), never a
// failure.
func TestRunCouldNotRun(t *testing.T) {
	broken := t.TempDir()
	if err := os.MkdirAll(filepath.Join(broken, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, PolicyFile), []byte("version: 1\ncadence: {max_deprecated_months: 12}\nalgorithms: [{name: md5, use: x, status: banned}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*gates.Run{
		"no policy":     {Root: t.TempDir(), Log: io.Discard},
		"broken policy": {Root: broken, Log: io.Discard},
		"no binaries":   {Root: root, Log: io.Discard},
	} {
		err := run(context.Background(), r)
		var f *gates.Failure
		if err == nil || errors.As(err, &f) {
			t.Errorf("%s: run = %v (%T), want an error that is not a *gates.Failure", name, err, err)
		}
	}
}

func TestCheckModes(t *testing.T) {
	pol, err := policies.ParseCrypto("crypto.yaml", []byte("version: 1\ncadence: {max_deprecated_months: 12}\ninsecure_modes: [{name: other-mode, default: off}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	rep := testReport(t)
	checkModes(rep, pol, time.Now())
	wantFailures(t, rep, "the code has [controller-tls12], the policy lists [other-mode]")
}
