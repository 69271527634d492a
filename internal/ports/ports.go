// Package ports hands out loopback TCP ports for servers whose address
// must be known before they start: an etcd member's peer URL, which the
// other members are given, or a replica's advertised URL.
//
// The usual way, listening on port 0 and closing the listener to learn a
// free port, races: until the server binds the port, the kernel may give
// it to anyone else, and a unit run of many test processes in parallel
// did take one ("bind: address already in use", an etcd member of
// controller/store/etcd's tests). Reserve closes both ways in:
//
//   - its ports are below the kernel's ephemeral range
//     (net.ipv4.ip_local_port_range, 32768-60999 by default), which the
//     kernel draws from for port 0 and for outgoing connections, so the
//     kernel never hands them out on its own;
//   - a port is held by an exclusive lock (flock) on a file named after it
//     in a directory shared by every process on the machine, so two
//     callers, in one process or in two, never hold the same port. The
//     lock goes when released, or when the process exits.
//
// A port a program outside this scheme already listens on is skipped.
package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The range Reserve draws from, shrunk below the ephemeral range where
// that starts lower.
const (
	First = 20000
	Last  = 32767
)

// Dir holds the lock files.
var Dir = filepath.Join(os.TempDir(), "rustynet-ports")

// Reserve returns a loopback port that no other caller of Reserve holds
// and that nothing listened on a moment ago. It stays reserved until
// release is called.
func Reserve() (port int, release func(), err error) {
	last := Last
	if lo, err := ephemeralStart(); err == nil && lo-1 < last {
		last = lo - 1
	}
	if last < First {
		return 0, nil, fmt.Errorf("ports: the ephemeral range starts at %d, below %d: no ports to reserve", last+1, First)
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("ports: %w", err)
	}
	n := last - First + 1
	start := rand.IntN(n)
	for i := range n {
		p := First + (start+i)%n
		f, err := os.OpenFile(filepath.Join(Dir, strconv.Itoa(p)+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return 0, nil, fmt.Errorf("ports: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // another caller holds it
			}
			return 0, nil, fmt.Errorf("ports: lock %d: %w", p, err)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			f.Close() // someone outside the scheme has it
			continue
		}
		ln.Close()
		return p, func() { f.Close() }, nil
	}
	return 0, nil, fmt.Errorf("ports: all %d ports from %d to %d are held or taken", n, First, last)
}

// ephemeralStart reads the start of the kernel's ephemeral port range.
func ephemeralStart() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("ip_local_port_range: %q", b)
	}
	return strconv.Atoi(f[0])
}

// Addr reserves a port for the test's life and returns 127.0.0.1:PORT.
func Addr(t testing.TB) string {
	t.Helper()
	p, release, err := Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}
