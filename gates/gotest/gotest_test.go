package gotest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustynet/rustynet/gates"
)

// TestInterruptedRunIsNotAFailure: tests killed because the run was
// interrupted (or the gate ran out of time) are not failures of the code:
// Run returns the context's error, not a Result whose failures are the
// kill's.
func TestInterruptedRunIsNotAFailure(t *testing.T) {
	root := t.TempDir()
	for name, data := range map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.26\n",
		// A subtest fails at once (its event is out before the kill),
		// standing for a test that fails because its helper process was
		// killed first; the parent is still running when the kill comes.
		"m_test.go": "package m\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestSlow(t *testing.T) {\n\tt.Run(\"first\", func(t *testing.T) { t.Fatal(\"its helper was killed\") })\n\ttime.Sleep(time.Minute)\n}\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &gates.Run{Root: root, Log: io.Discard}
	go func() {
		// Long enough for go test to build and start the test binary.
		time.Sleep(5 * time.Second)
		cancel()
	}()
	res, err := Run(ctx, r, nil, 0, "-count=1", "./...")
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("Run of an interrupted go test = %+v, %v; want no result and context.Canceled", res, err)
	}
}
