// Package readyfile is how Rustynet's daemons say they are ready: once a
// daemon serves, it writes a small JSON file (--ready-file PATH) with the
// addresses it listens on, atomically, so whoever started it reads the
// whole file or none. Tests and the gates wait for that file instead of
// matching log lines, which may change wording at any time.
package readyfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/rustynet/rustynet/internal/atomicfile"
)

// Info is what a ready file says. Fields a daemon does not have are
// absent.
type Info struct {
	PID int `json:"pid"`
	// API is the controller's node API address (HOST:PORT).
	API string `json:"api,omitempty"`
	// Metrics is the Prometheus endpoint's address, if served.
	Metrics string `json:"metrics,omitempty"`
	// AdminSocket is the controller's admin socket path.
	AdminSocket string `json:"admin_socket,omitempty"`
	// LocalAPI is a node's local API socket path.
	LocalAPI string `json:"local_api,omitempty"`
	// Interface is a node's packet device ("netstack" in userspace mode).
	Interface string `json:"interface,omitempty"`
	// ListenPort is a node's data-plane UDP port.
	ListenPort uint16 `json:"listen_port,omitempty"`
}

// Write writes info to path (mode 0644), replacing any earlier file.
func Write(path string, info Info) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// Wait waits until path holds a ready file of a process alive (exited
// closes when it exits) and returns what it says. It checks every 10 ms,
// up to timeout.
func Wait(ctx context.Context, path string, exited <-chan struct{}, timeout time.Duration) (*Info, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			var info Info
			if err := json.Unmarshal(data, &info); err != nil {
				return nil, fmt.Errorf("ready file %s: %w", path, err)
			}
			return &info, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("ready file: %w", err)
		}
		select {
		case <-tick.C:
		case <-exited:
			return nil, fmt.Errorf("the daemon exited before it wrote its ready file %s", path)
		case <-deadline.C:
			return nil, fmt.Errorf("no ready file %s within %v", path, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
