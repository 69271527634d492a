// Package build is the build gate: it builds every binary statically and
// reproducibly (CGO off, -trimpath, no VCS stamping, the commit as the
// version); their sha256 digests become the subjects of every statement.
package build

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
)

// Binaries are the commands the build gate builds.
var Binaries = []string{"rustynet-controller", "rustynetd", "rustynet", "rustynet-gate"}

// Register adds the build gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     gates.BuildGate,
		Owner:    "release-eng",
		Timeout:  20 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo},
		Run:      run,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	out := filepath.Join(r.Work, "bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bins := map[string]string{}
	var secs []float64
	for i, b := range Binaries {
		start := time.Now()
		p := filepath.Join(out, b)
		cmd := r.Command(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version="+r.Commit, "-o", p, "./cmd/"+b)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return gates.Fail("go build ./cmd/%s: %v (the log has the compiler's output)", b, err)
		}
		secs = append(secs, time.Since(start).Seconds())
		bins[b] = p
		r.Progress(float64(i+1) / float64(len(Binaries)))
	}
	r.Built(bins)
	r.Measure(evidence.Measurement{Name: "build_time", Unit: "s", Method: "wall time of go build per binary, CGO off, -trimpath", Values: secs})
	return nil
}
