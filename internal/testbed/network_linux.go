package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/rustynet/rustynet/internal/require"
)

// Options configures a network.
type Options struct {
	// Hosts is the number of hosts, at least 1.
	Hosts int
	// Subnet, IPv4 or IPv6, is where host addresses come from (from .2
	// up: host-local keeps .1 for a gateway, which the network does not
	// have, and skips the broadcast address). Zero picks
	// an unused 10.X.Y.0/24 out of 10.64.0.0/10, distinct from every other
	// live network in this process and from the root namespace's routes.
	Subnet netip.Prefix
	// MTU of every eth0 and of the bridge; zero means 1500.
	MTU int
}

// Network is a switch namespace with a bridge, and hosts attached to it.
type Network struct {
	// Name prefixes every namespace of the network: rntb-<random>.
	Name string
	// Subnet holds every host's address.
	Subnet netip.Prefix
	// Switch is the name of the namespace holding the bridge (Bridge) and
	// the host ends of the veths, for `ip netns exec` when debugging.
	Switch string
	// Hosts are in the order they were created: Hosts[i] is Name-h<i>.
	Hosts []*Host

	owned *ownScope // set by Create: Close tears the network down
}

// scope is what building a network needs from its owner: somewhere to
// register teardown steps, a temporary directory, error reporting and a
// context. A testing.TB is one; Create makes its own.
type scope interface {
	Cleanup(func())
	TempDir() string
	Errorf(format string, args ...any)
	Context() context.Context
}

// ownScope is the scope of a network made by Create, outside any test.
type ownScope struct {
	ctx      context.Context
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	errs     []error
}

func (s *ownScope) Cleanup(f func())         { s.mu.Lock(); s.cleanups = append(s.cleanups, f); s.mu.Unlock() }
func (s *ownScope) Context() context.Context { return s.ctx }

func (s *ownScope) TempDir() string {
	d, err := os.MkdirTemp("", "rustynet-testbed-")
	if err != nil {
		s.Errorf("temp dir: %v", err)
		return os.TempDir()
	}
	s.mu.Lock()
	s.dirs = append(s.dirs, d)
	s.mu.Unlock()
	return d
}

func (s *ownScope) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Errorf(format, args...))
	s.mu.Unlock()
}

// close runs the teardown steps in reverse order and removes the
// temporary directories.
func (s *ownScope) close() error {
	s.mu.Lock()
	cleanups := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for _, d := range s.dirs {
		os.RemoveAll(d)
	}
	return errors.Join(s.errs...)
}

// Create builds a network outside a test (for the gates and the benchmark
// matrix); it needs root. Close tears it down.
func Create(ctx context.Context, opts Options) (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: network namespaces need root")
	}
	s := &ownScope{ctx: ctx}
	n, err := build(s, opts)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("testbed: %w", err)
	}
	n.owned = s
	return n, nil
}

// Close tears down a network made by Create, in reverse order of creation.
func (n *Network) Close() error {
	if n.owned == nil {
		return errors.New("testbed: Close of a network that New made (the test's cleanup removes it)")
	}
	return n.owned.close()
}

// Host is a network namespace attached to a Network's bridge.
type Host struct {
	Name   string     // namespace name
	NSPath string     // /var/run/netns/NAME
	Addr   netip.Addr // eth0's address
	Link   string     // "eth0"

	mtu int
}

const (
	defaultMTU = 1500
	linkName   = "eth0"
	// setupTimeout bounds each CNI ADD or DEL.
	setupTimeout = time.Minute
)

// New creates a network of opts.Hosts hosts; see the package comment for its
// shape. It needs root (the test is skipped, or failed under
// RUSTYNET_REQUIRE, without it) and fails the test if the network cannot be
// built. Everything is torn down in t.Cleanup, in reverse order of creation.
func New(t testing.TB, opts Options) *Network {
	t.Helper()
	require.Root(t)
	n, err := build(t, opts)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return n
}

// build does New's work, registering each teardown step with t.Cleanup as
// soon as there is something to tear down.
func build(t scope, opts Options) (*Network, error) {
	if opts.Hosts < 1 {
		return nil, fmt.Errorf("options: %d hosts, want at least 1", opts.Hosts)
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = defaultMTU
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("options: mtu %d out of range [68, 65535]", mtu)
	}
	plugins, err := pluginDir()
	if err != nil {
		return nil, err
	}
	// Registered first, so removed last: CNI DEL still reads it.
	state := t.TempDir()

	subnet := opts.Subnet.Masked()
	if !subnet.IsValid() {
		if subnet, err = subnets.pick(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { subnets.release(subnet) })
	}
	if err := checkCapacity(subnet, opts.Hosts); err != nil {
		return nil, err
	}

	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	n := &Network{Name: "rntb-" + suffix, Subnet: subnet}
	n.Switch = n.Name + "-sw"
	// What killed processes left is removed first; this network is
	// recorded as this process's before it has anything to leave.
	_, _ = Sweep() // best effort: what it cannot remove does not stop this network
	if err := claim(n.Name); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := unclaim(n.Name); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})

	swPath, err := addNS(t, n.Switch)
	if err != nil {
		return nil, err
	}
	conf, err := bridgeConf(n.Name, subnet, mtu, filepath.Join(state, "ipam"))
	if err != nil {
		return nil, err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{plugins}, filepath.Join(state, "cache"), &switchExec{nsPath: swPath})

	for i := range opts.Hosts {
		h := &Host{Name: fmt.Sprintf("%s-h%d", n.Name, i), Link: linkName, mtu: mtu}
		if h.NSPath, err = addNS(t, h.Name); err != nil {
			return nil, err
		}
		rt := &libcni.RuntimeConf{ContainerID: h.Name, NetNS: h.NSPath, IfName: linkName}
		// DEL is registered before ADD: it must also clean up after an
		// ADD that failed half way. (t.Context is done by cleanup time.)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			if err := cni.DelNetwork(ctx, conf, rt); err != nil {
				t.Errorf("testbed: cni del %s: %v", h.Name, err)
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
		res, err := cni.AddNetwork(ctx, conf, rt)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cni add %s: %w", h.Name, err)
		}
		if h.Addr, err = resultAddr(res); err != nil {
			return nil, fmt.Errorf("cni add %s: %w", h.Name, err)
		}
		n.Hosts = append(n.Hosts, h)
	}
	return n, nil
}

// addNS creates a named namespace with loopback up, and registers its removal.
func addNS(t scope, name string) (string, error) {
	path, err := newNamedNS(name)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := deleteNamedNS(path); err != nil {
			t.Errorf("testbed: delete namespace %s: %v", name, err)
		}
	})
	h := &Host{Name: name, NSPath: path}
	err = h.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		return "", fmt.Errorf("loopback up in %s: %w", name, err)
	}
	return path, nil
}

// resultAddr is the address the IPAM plugin gave the interface.
func resultAddr(r types.Result) (netip.Addr, error) {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(res.IPs) == 0 {
		return netip.Addr{}, errors.New("result has no address")
	}
	a, ok := netip.AddrFromSlice(res.IPs[0].Address.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("result address %v is invalid", res.IPs[0].Address.IP)
	}
	return a.Unmap(), nil
}

// checkCapacity fails when subnet cannot hold hosts addresses after the
// network address, host-local's reserved gateway (.1) and, for IPv4, the
// broadcast address.
func checkCapacity(subnet netip.Prefix, hosts int) error {
	free := new(big.Int).Lsh(big.NewInt(1), uint(subnet.Addr().BitLen()-subnet.Bits()))
	free.Sub(free, big.NewInt(2))
	if subnet.Addr().Is4() {
		free.Sub(free, big.NewInt(1))
	}
	if free.Cmp(big.NewInt(int64(hosts))) < 0 {
		return fmt.Errorf("options: subnet %v holds %v hosts, want %d", subnet, free, hosts)
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// subnets hands out the /24s of automatically numbered networks.
var subnets = &subnetPool{base: netip.MustParsePrefix("10.64.0.0/10")}

type subnetPool struct {
	base netip.Prefix

	mu    sync.Mutex
	used  map[netip.Prefix]bool
	next  int // index of the next /24 to try; starts at random
	begun bool
}

// pick returns a /24 of the pool that no live network of this process uses
// and that overlaps no route of the root namespace (it only reads them), so
// addresses in captures and logs are never ambiguous.
func (p *subnetPool) pick() (netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("pick subnet: list routes: %w", err)
	}
	var taken []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if ones == 0 || !ok {
			continue
		}
		taken = append(taken, netip.PrefixFrom(a.Unmap(), ones))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	size := 1 << (24 - p.base.Bits())
	if !p.begun {
		r, err := rand.Int(rand.Reader, big.NewInt(int64(size)))
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("pick subnet: %w", err)
		}
		p.next, p.begun = int(r.Int64()), true
		p.used = make(map[netip.Prefix]bool)
	}
	base := p.base.Addr().As4()
	for range size {
		i := p.next
		p.next = (p.next + 1) % size
		a := base
		a[1] += byte(i >> 8)
		a[2] = byte(i)
		c := netip.PrefixFrom(netip.AddrFrom4(a), 24)
		if p.used[c] || overlapsAny(c, taken) {
			continue
		}
		p.used[c] = true
		return c, nil
	}
	return netip.Prefix{}, fmt.Errorf("pick subnet: every /24 of %v is in use", p.base)
}

func (p *subnetPool) release(c netip.Prefix) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, c)
}

func overlapsAny(c netip.Prefix, ps []netip.Prefix) bool {
	for _, p := range ps {
		if c.Overlaps(p) {
			return true
		}
	}
	return false
}
