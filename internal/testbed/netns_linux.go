package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// nsDir is where `ip netns` keeps named network namespaces.
const nsDir = "/var/run/netns"

// newNamedNS creates a network namespace and keeps it alive by bind-mounting
// it on nsDir/name, as `ip netns add name` does. It returns the mount's path.
func newNamedNS(name string) (string, error) {
	if err := sharedNSDir(); err != nil {
		return "", err
	}
	path := filepath.Join(nsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()

	// Unshare on a thread of its own, locked for the whole job, and leave
	// that thread locked (so the runtime ends it) unless it gets back to
	// the namespace it came from.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount: %w", err)
		}
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("create namespace %s: %w", name, err)
	}
	return path, nil
}

// deleteNamedNS undoes newNamedNS, as `ip netns delete` does. The namespace
// itself goes when nothing else holds it (a process or socket inside, an
// open handle).
func deleteNamedNS(path string) error {
	var errs []error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sharedNSDir makes nsDir a shared mount point, as iproute2 does, so that the
// namespace mounts show in other mount namespaces (such as the one `ip netns
// exec` makes). Once per process: parallel tests must not stack bind mounts.
var sharedNSDir = sync.OnceValue(func() error {
	if err := os.MkdirAll(nsDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", nsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(nsDir, nsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", nsDir, err)
		}
		err = unix.Mount("", nsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s shared: %w", nsDir, err)
	}
	return nil
})
