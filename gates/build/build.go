// Package build is the build gate: it builds every binary statically and
// reproducibly (CGO off, -trimpath, no VCS stamping, the commit as the
// version); their sha256 digests become the subjects of every statement.
package build

import (
	"context"
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
	bins, secs, err := r.GoBuild(ctx, r.Root, filepath.Join(r.Work, "bin"), r.Commit, Binaries...)
	if err != nil {
		return gates.Fail("%v", err)
	}
	r.Progress(1)
	r.Built(bins)
	r.Measure(evidence.Measurement{Name: "build_time", Unit: "s", Method: "wall time of go build per binary, CGO off, -trimpath", Values: secs})
	return nil
}
