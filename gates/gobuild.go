package gates

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// GoBuild builds the commands ./cmd/NAME of the source tree src into out,
// statically and reproducibly (CGO off, -trimpath, no VCS stamping,
// version stamped as main.version), logging to the run's log. It returns
// each binary's path and each build's wall time in seconds.
func (r *Run) GoBuild(ctx context.Context, src, out, version string, names ...string) (map[string]string, []float64, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, err
	}
	bins := map[string]string{}
	var secs []float64
	for _, b := range names {
		start := time.Now()
		p := filepath.Join(out, b)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version="+version, "-o", p, "./cmd/"+b)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = r.Log, r.Log
		cmd.WaitDelay = 10 * time.Second
		fmt.Fprintf(r.Log, "$ (in %s) go build ./cmd/%s\n", src, b)
		if err := cmd.Run(); err != nil {
			return nil, nil, fmt.Errorf("go build ./cmd/%s: %w (the log has the compiler's output)", b, err)
		}
		secs = append(secs, time.Since(start).Seconds())
		bins[b] = p
	}
	return bins, secs, nil
}
