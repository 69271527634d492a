package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rustynet/rustynet/internal/proc"
)

// ownersDir holds a file per network, named as the network, that names the
// process that built it (proc.Identity). A process killed before its
// cleanup ran (a test binary under an interrupted gate, say) leaves its
// namespaces behind; Sweep finds them by their dead owner. It is on /run,
// a tmpfs, as the namespaces are: neither outlives a reboot.
const ownersDir = "/run/rustynet-testbed"

// claim records that this process owns network name, before the network
// has anything to leave behind.
func claim(name string) error {
	id, err := proc.Identity(os.Getpid())
	if err != nil {
		return fmt.Errorf("claim %s: %w", name, err)
	}
	if err := os.MkdirAll(ownersDir, 0o755); err != nil {
		return fmt.Errorf("claim %s: %w", name, err)
	}
	return os.WriteFile(filepath.Join(ownersDir, name), []byte(id+"\n"), 0o644)
}

// unclaim removes the record once the network is torn down.
func unclaim(name string) error {
	if err := os.Remove(filepath.Join(ownersDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Sweep removes the namespaces of every network whose builder exited
// without tearing it down, and returns the names of those networks. Every
// network's build sweeps first, and the gate CLI sweeps when it starts, so
// what an interrupted run left is gone by the next one. Networks of
// running processes are not touched, nor namespaces this package did not
// record.
func Sweep() ([]string, error) {
	entries, err := os.ReadDir(ownersDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(ownersDir, name))
		if err != nil {
			continue // swept by another process as we looked
		}
		if proc.Running(strings.TrimSpace(string(data))) {
			continue
		}
		if err := removeNetwork(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unclaim(name); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, name)
	}
	return swept, errors.Join(errs...)
}

// removeNetwork deletes the namespaces of network name (NAME-sw and
// NAME-h<i>); the bridge and the veths live in them and go with them.
func removeNetwork(name string) error {
	paths, err := filepath.Glob(filepath.Join(nsDir, name+"-*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range paths {
		if err := deleteNamedNS(p); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
