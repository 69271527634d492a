//go:build linux

package testbed_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/machine"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

// TestMain fails the package if a test leaves a goroutine running. Run
// with sweepChildEnv set, the binary is instead the process that
// TestSweep kills: it builds a network, prints its name and waits.
func TestMain(m *testing.M) {
	if os.Getenv(sweepChildEnv) != "" {
		n, err := testbed.Create(context.Background(), testbed.Options{Hosts: 2})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(n.Name)
		time.Sleep(time.Minute) // killed long before
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

const sweepChildEnv = "RUSTYNET_TESTBED_SWEEP_CHILD"

// TestSweep: a process killed before its cleanup ran (as a test binary is
// when a gate run is interrupted) leaves its namespaces; Sweep removes
// them, and leaves those of live processes alone.
func TestSweep(t *testing.T) {
	require.Root(t)
	live := testbed.New(t, testbed.Options{Hosts: 1})
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sweepChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	name := strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(name, "rntb-") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child said %q, %v; want its network's name", line, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	left, _ := filepath.Glob("/var/run/netns/" + name + "-*")
	if len(left) != 3 {
		t.Fatalf("the killed child left %q, want its switch and 2 hosts", left)
	}
	swept, err := testbed.Sweep()
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if !slices.Contains(swept, name) {
		t.Errorf("Sweep removed %q, want %s among them", swept, name)
	}
	if slices.Contains(swept, live.Name) {
		t.Errorf("Sweep removed %s, a network of this live process", live.Name)
	}
	if left, _ := filepath.Glob("/var/run/netns/" + name + "-*"); len(left) != 0 {
		t.Errorf("after Sweep, %q remain", left)
	}
	if _, err := os.Stat("/var/run/netns/" + live.Switch); err != nil {
		t.Errorf("the live network's switch: %v", err)
	}
}

// dialTimeout bounds dials that are expected to fail. It is not a
// performance bound: a dial that should succeed gets the test's context.
const dialTimeout = time.Second

// TestTCPAcrossBridge checks that two hosts reach each other through the
// switch: 1 MiB of random bytes sent over TCP from h0 to an echo server
// listening in h1 comes back byte for byte.
func TestTCPAcrossBridge(t *testing.T) {
	t.Parallel()
	n := testbed.New(t, testbed.Options{Hosts: 2})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	srv := echoServer(t, h1)

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	got, err := roundTrip(t.Context(), h0, srv, payload)
	if err != nil {
		t.Fatalf("roundTrip(%s -> %s) error: %v", h0.Name, srv, err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("roundTrip(%s -> %s) = %d bytes differing from the %d sent at offset %d", h0.Name, srv, len(got), len(payload), firstDiff(got, payload))
	}
}

// TestAddressesAndCommand checks that three hosts get distinct addresses in
// the subnet, and that Host.Command runs in the host's own namespace: `ip
// addr show dev eth0` there shows that host's address and no other host's.
func TestAddressesAndCommand(t *testing.T) {
	t.Parallel()
	require.Command(t, "ip")
	n := testbed.New(t, testbed.Options{Hosts: 3})
	if len(n.Hosts) != 3 {
		t.Fatalf("New(Hosts: 3) made %d hosts, want 3", len(n.Hosts))
	}
	seen := map[netip.Addr]string{}
	for _, h := range n.Hosts {
		if !n.Subnet.Contains(h.Addr) {
			t.Errorf("%s.Addr = %v, want an address in %v", h.Name, h.Addr, n.Subnet)
		}
		if other, ok := seen[h.Addr]; ok {
			t.Errorf("%s.Addr = %v, already the address of %s", h.Name, h.Addr, other)
		}
		seen[h.Addr] = h.Name
		if want := "/var/run/netns/" + h.Name; h.NSPath != want {
			t.Errorf("%s.NSPath = %q, want %q", h.Name, h.NSPath, want)
		}
	}
	for _, h := range n.Hosts {
		out, err := h.Command(t.Context(), "ip", "-o", "addr", "show", "dev", h.Link).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ip -o addr show dev %s: %v: %s", h.Name, h.Link, err, out)
		}
		for _, o := range n.Hosts {
			has := strings.Contains(string(out), " "+o.Addr.String()+"/")
			if want := o == h; has != want {
				t.Errorf("%s: `ip -o addr show dev %s` shows %v: %t, want %t; output:\n%s", h.Name, h.Link, o.Addr, has, want, out)
			}
		}
	}
}

// TestOptions checks that an explicit subnet and MTU are used: the host's
// address is in that subnet and its eth0 has that MTU.
func TestOptions(t *testing.T) {
	t.Parallel()
	subnet := netip.MustParsePrefix("10.250.7.0/29")
	n := testbed.New(t, testbed.Options{Hosts: 2, Subnet: subnet, MTU: 9000})
	if n.Subnet != subnet {
		t.Errorf("New(Subnet: %v).Subnet = %v, want %v", subnet, n.Subnet, subnet)
	}
	for _, h := range n.Hosts {
		if !subnet.Contains(h.Addr) {
			t.Errorf("%s.Addr = %v, want an address in %v", h.Name, h.Addr, subnet)
		}
		var mtu int
		err := h.Do(func() error {
			l, err := netlink.LinkByName(h.Link)
			if err == nil {
				mtu = l.Attrs().MTU
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: LinkByName(%q): %v", h.Name, h.Link, err)
		}
		if mtu != 9000 {
			t.Errorf("%s: %s MTU = %d, want 9000", h.Name, h.Link, mtu)
		}
	}
}

// TestIPv6Subnet checks that an IPv6 subnet works end to end: addresses
// from it, and TCP between two hosts over them.
func TestIPv6Subnet(t *testing.T) {
	t.Parallel()
	subnet := netip.MustParsePrefix("fd00:7e57:1::/64")
	n := testbed.New(t, testbed.Options{Hosts: 2, Subnet: subnet})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	if !subnet.Contains(h0.Addr) || !subnet.Contains(h1.Addr) {
		t.Errorf("New(Subnet: %v) gave addresses %v and %v, want both in %v", subnet, h0.Addr, h1.Addr, subnet)
	}
	srv := echoServer(t, h1)
	payload := []byte("over ipv6")
	got, err := roundTrip(t.Context(), h0, srv, payload)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("roundTrip(%s -> %s, %q) = %q, %v; want %q, nil", h0.Name, srv, payload, got, err, payload)
	}
}

// TestImpairRate checks that a rate limit installs a tbf root qdisc on eth0
// and that the zero Impairment removes it.
func TestImpairRate(t *testing.T) {
	t.Parallel()
	n := testbed.New(t, testbed.Options{Hosts: 1})
	h := n.Hosts[0]

	im := testbed.Impairment{Rate: 10_000_000}
	if err := h.Impair(im); err != nil {
		t.Fatalf("Impair(%+v) = %v, want nil", im, err)
	}
	if got := rootQdisc(t, h); got != "tbf" {
		t.Errorf("after Impair(%+v), root qdisc of %s = %q, want %q", im, h.Link, got, "tbf")
	}
	im.Rate = 1_000_000 // a change of the same kind
	if err := h.Impair(im); err != nil {
		t.Fatalf("Impair(%+v) = %v, want nil", im, err)
	}
	if err := h.Impair(testbed.Impairment{}); err != nil {
		t.Fatalf("Impair({}) = %v, want nil", err)
	}
	if got := rootQdisc(t, h); got != "" {
		t.Errorf("after Impair({}), root qdisc of %s = %q, want none", h.Link, got)
	}
	if err := h.Impair(testbed.Impairment{}); err != nil {
		t.Errorf("Impair({}) on an unimpaired link = %v, want nil", err)
	}
}

// TestImpairNetem checks that a delay installs a netem root qdisc on eth0,
// that 100% loss then stops h0 from connecting to h1, and that the zero
// Impairment removes netem and lets connections through again.
func TestImpairNetem(t *testing.T) {
	t.Parallel()
	n := testbed.New(t, testbed.Options{Hosts: 2})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	srv := echoServer(t, h1)

	im := testbed.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	err := h0.Impair(im)
	if errors.Is(err, errors.ErrUnsupported) {
		require.Need(t, "kernel:netem", false, err.Error())
	}
	if err != nil {
		t.Fatalf("Impair(%+v) = %v, want nil", im, err)
	}
	if got := rootQdisc(t, h0); got != "netem" {
		t.Errorf("after Impair(%+v), root qdisc of %s = %q, want %q", im, h0.Link, got, "netem")
	}

	im = testbed.Impairment{Loss: 100}
	if err := h0.Impair(im); err != nil {
		t.Fatalf("Impair(%+v) = %v, want nil", im, err)
	}
	if err := dialOnce(t.Context(), h0, srv, dialTimeout); err == nil {
		t.Errorf("after Impair(%+v), dial %s -> %s = nil, want an error", im, h0.Name, srv)
	}

	if err := h0.Impair(testbed.Impairment{}); err != nil {
		t.Fatalf("Impair({}) = %v, want nil", err)
	}
	if got := rootQdisc(t, h0); got != "" {
		t.Errorf("after Impair({}), root qdisc of %s = %q, want none", h0.Link, got)
	}
	if err := dialOnce(t.Context(), h0, srv, 0); err != nil {
		t.Errorf("after Impair({}), dial %s -> %s = %v, want nil", h0.Name, srv, err)
	}
}

// TestImpairInvalid checks that impossible impairments are refused before
// anything is installed.
func TestImpairInvalid(t *testing.T) {
	t.Parallel()
	n := testbed.New(t, testbed.Options{Hosts: 1})
	h := n.Hosts[0]
	for _, im := range []testbed.Impairment{
		{Jitter: time.Millisecond},
		{Delay: -time.Millisecond},
		{Delay: time.Hour},
		{Loss: 101},
		{Loss: -1},
		{Rate: 7},
	} {
		if err := h.Impair(im); err == nil {
			t.Errorf("Impair(%+v) = nil, want an error", im)
		}
	}
	if got := rootQdisc(t, h); got != "" {
		t.Errorf("after refused impairments, root qdisc of %s = %q, want none", h.Link, got)
	}
}

// TestLinkFlap checks that with h0's eth0 down h0 cannot connect to h1, and
// that bringing it up again restores the connection.
func TestLinkFlap(t *testing.T) {
	t.Parallel()
	n := testbed.New(t, testbed.Options{Hosts: 2})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	srv := echoServer(t, h1)

	if err := dialOnce(t.Context(), h0, srv, 0); err != nil {
		t.Fatalf("before the flap, dial %s -> %s = %v, want nil", h0.Name, srv, err)
	}
	if err := h0.SetLinkUp(false); err != nil {
		t.Fatalf("SetLinkUp(false) = %v, want nil", err)
	}
	if err := dialOnce(t.Context(), h0, srv, dialTimeout); err == nil {
		t.Errorf("with %s down, dial %s -> %s = nil, want an error", h0.Link, h0.Name, srv)
	}
	if err := h0.SetLinkUp(true); err != nil {
		t.Fatalf("SetLinkUp(true) = %v, want nil", err)
	}
	payload := []byte("after the flap")
	got, err := roundTrip(t.Context(), h0, srv, payload)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("with %s up again, roundTrip(%s -> %s, %q) = %q, %v; want %q, nil", h0.Link, h0.Name, srv, payload, got, err, payload)
	}
}

// TestTwoNetworks checks that two networks made in one test get different,
// non-overlapping subnets and different names, and that each one works.
func TestTwoNetworks(t *testing.T) {
	t.Parallel()
	a := testbed.New(t, testbed.Options{Hosts: 2})
	b := testbed.New(t, testbed.Options{Hosts: 2})
	if a.Subnet.Overlaps(b.Subnet) {
		t.Errorf("two networks have subnets %v and %v, want disjoint subnets", a.Subnet, b.Subnet)
	}
	if a.Name == b.Name {
		t.Errorf("two networks are both named %q, want distinct names", a.Name)
	}
	for _, n := range []*testbed.Network{a, b} {
		srv := echoServer(t, n.Hosts[1])
		payload := []byte("hello " + n.Name)
		got, err := roundTrip(t.Context(), n.Hosts[0], srv, payload)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("%s: roundTrip(h0 -> %s, %q) = %q, %v; want %q, nil", n.Name, srv, payload, got, err, payload)
		}
	}
}

// TestCleanup checks that a network lives in its namespaces only and leaves
// nothing behind. While it exists, its switch namespace holds the bridge with
// one port per host, and no link of the network (known by hardware address)
// is among the links the root namespace gained since before it was made.
// After the sub-test that made it has finished, its namespaces are gone from
// /var/run/netns, and again no link of it is in the root namespace. (Links
// that other processes, such as Docker, add meanwhile are not the network's
// and are only logged.)
func TestCleanup(t *testing.T) {
	require.Root(t)
	before := rootLinks(t)
	var paths []string
	ours := map[string]string{} // hardware address -> namespace/link
	t.Run("network", func(t *testing.T) {
		n := testbed.New(t, testbed.Options{Hosts: 3})
		sw := "/var/run/netns/" + n.Switch
		paths = append(paths, sw)
		links := nsLinks(t, sw)
		var br *netlink.LinkAttrs
		for _, l := range links {
			ours[l.HardwareAddr.String()] = n.Switch + "/" + l.Name
			if l.Name == testbed.Bridge {
				br = l
			}
		}
		if br == nil {
			t.Fatalf("switch namespace %s has links %v, want a bridge %s", n.Switch, linkNames(links), testbed.Bridge)
		}
		var ports int
		for _, l := range links {
			if l.MasterIndex == br.Index {
				ports++
			}
		}
		if ports != len(n.Hosts) {
			t.Errorf("bridge %s in %s has %d ports, want %d", testbed.Bridge, n.Switch, ports, len(n.Hosts))
		}
		for _, h := range n.Hosts {
			paths = append(paths, h.NSPath)
			for _, l := range nsLinks(t, h.NSPath) {
				ours[l.HardwareAddr.String()] = h.Name + "/" + l.Name
			}
		}
		delete(ours, "") // loopback
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("while the network exists, Stat(%q) = %v, want nil", p, err)
			}
		}
		checkRootLinks(t, "while the network exists", before, ours)
	})
	if len(paths) == 0 {
		t.Fatal("the sub-test made no network")
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after the sub-test, Stat(%q) = %v, want %v", p, err, os.ErrNotExist)
		}
	}
	checkRootLinks(t, "after the sub-test", before, ours)
}

// checkRootLinks fails the test if a link the root namespace gained since
// before has one of the network's hardware addresses.
func checkRootLinks(t *testing.T, when string, before []*netlink.LinkAttrs, ours map[string]string) {
	t.Helper()
	old := map[string]bool{}
	for _, l := range before {
		old[linkKey(l)] = true
	}
	for _, l := range rootLinks(t) {
		if old[linkKey(l)] {
			continue
		}
		if from, ok := ours[l.HardwareAddr.String()]; ok {
			t.Errorf("%s, root namespace has new link %s (%v), want none of the network's (it is %s)", when, l.Name, l.HardwareAddr, from)
		} else {
			t.Logf("%s, root namespace has new link %s (%v), not the network's", when, l.Name, l.HardwareAddr)
		}
	}
}

// TestIperf3 checks that Iperf3 between two hosts reports a positive
// throughput and a duration.
func TestIperf3(t *testing.T) {
	t.Parallel()
	require.Command(t, "iperf3")
	n := testbed.New(t, testbed.Options{Hosts: 2})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	r, err := testbed.Iperf3(t.Context(), h1, h0, h1.Addr, time.Second)
	if err != nil {
		t.Fatalf("Iperf3(%s -> %s) error: %v", h0.Name, h1.Name, err)
	}
	if r.BitsPerSecond <= 0 || r.Bytes <= 0 || r.Duration <= 0 {
		t.Errorf("Iperf3(%s -> %s) = %+v, want positive BitsPerSecond, Bytes and Duration", h0.Name, h1.Name, r)
	}
	t.Logf("raw veth: %.2f Gbit/s, %d retransmits", r.GbitPerSecond(), r.Retransmits)
}

// BenchmarkRawVeth reports the TCP throughput of the raw veth path between
// two hosts (h0 -> bridge -> h1, no tunnel), measured by iperf3 over 3 s
// after a 1 s warm-up, as Gbit/s.
func BenchmarkRawVeth(b *testing.B) {
	require.Command(b, "iperf3")
	logMachine(b)
	n := testbed.New(b, testbed.Options{Hosts: 2})
	h0, h1 := n.Hosts[0], n.Hosts[1]
	var gbits, retrans, runs float64
	for b.Loop() {
		r, err := testbed.Iperf3(b.Context(), h1, h0, h1.Addr, 3*time.Second, "-O", "1")
		if err != nil {
			b.Fatalf("Iperf3(%s -> %s) error: %v", h0.Name, h1.Name, err)
		}
		gbits += r.GbitPerSecond()
		retrans += float64(r.Retransmits)
		runs++
		b.Logf("run %.0f: %.2f Gbit/s, %d retransmits, sender CPU %.0f%%, receiver CPU %.0f%%", runs, r.GbitPerSecond(), r.Retransmits, r.SenderCPU, r.ReceiverCPU)
	}
	b.ReportMetric(gbits/runs, "Gbit/s")
	b.ReportMetric(retrans/runs, "retrans/run")
	b.ReportMetric(0, "ns/op")
}

// logMachine logs what a throughput figure depends on.
func logMachine(b *testing.B) {
	b.Helper()
	b.Logf("environment: %s", machine.Describe())
}

// echoServer listens on h's address and echoes every connection until the
// test ends, and returns its address.
func echoServer(t *testing.T, h *testbed.Host) netip.AddrPort {
	t.Helper()
	l, err := h.Listen("tcp", netip.AddrPortFrom(h.Addr, 0).String())
	if err != nil {
		t.Fatalf("%s: Listen: %v", h.Name, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// roundTrip sends payload from h to the echo server at srv and returns what
// comes back.
func roundTrip(ctx context.Context, h *testbed.Host, srv netip.AddrPort, payload []byte) ([]byte, error) {
	c, err := h.DialContext(ctx, "tcp", srv.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return got, err
	}
	return got, rerr
}

// dialOnce connects from h to srv and hangs up, giving up after timeout
// when it is not zero.
func dialOnce(ctx context.Context, h *testbed.Host, srv netip.AddrPort, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := h.DialContext(ctx, "tcp", srv.String())
	if err != nil {
		return err
	}
	return c.Close()
}

// rootQdisc returns the kind of the configured root qdisc of h's eth0, or
// "" when there is none (the veth's default has no handle).
func rootQdisc(t *testing.T, h *testbed.Host) string {
	t.Helper()
	var kind string
	err := h.Do(func() error {
		l, err := netlink.LinkByName(h.Link)
		if err != nil {
			return err
		}
		qs, err := netlink.QdiscList(l)
		if err != nil {
			return err
		}
		for _, q := range qs {
			if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && a.Handle != 0 {
				kind = q.Type()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: list qdiscs of %s: %v", h.Name, h.Link, err)
	}
	return kind
}

// rootLinks lists the root namespace's links.
func rootLinks(t *testing.T) []*netlink.LinkAttrs {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("LinkList() in the root namespace: %v", err)
	}
	return attrs(links)
}

// nsLinks lists the links of the namespace at path.
func nsLinks(t *testing.T, path string) []*netlink.LinkAttrs {
	t.Helper()
	var links []netlink.Link
	err := ns.WithNetNSPath(path, func(ns.NetNS) (err error) {
		links, err = netlink.LinkList()
		return err
	})
	if err != nil {
		t.Fatalf("LinkList() in %s: %v", path, err)
	}
	return attrs(links)
}

func attrs(links []netlink.Link) []*netlink.LinkAttrs {
	a := make([]*netlink.LinkAttrs, len(links))
	for i, l := range links {
		a[i] = l.Attrs()
	}
	return a
}

func linkKey(l *netlink.LinkAttrs) string {
	return fmt.Sprintf("%d:%s:%v", l.Index, l.Name, l.HardwareAddr)
}

func linkNames(links []*netlink.LinkAttrs) []string {
	var s []string
	for _, l := range links {
		s = append(s, l.Name)
	}
	return s
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCreateClose builds a network outside the test's cleanup, as the gates
// do, uses it, and checks that Close removes its namespaces.
func TestCreateClose(t *testing.T) {
	require.Root(t)
	n, err := testbed.Create(context.Background(), testbed.Options{Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := echoServer(t, n.Hosts[1])
	if err := dialOnce(context.Background(), n.Hosts[0], srv, 5*time.Second); err != nil {
		t.Errorf("dial across a created network: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, h := range n.Hosts {
		if _, err := os.Stat(h.NSPath); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists after Close", h.Name)
		}
	}
}
