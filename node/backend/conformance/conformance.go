// Package conformance is the suite every backend must pass before Rustynet
// claims support for it, called from the backend's own test as
//
//	func TestConformance(t *testing.T) { conformance.Run(t, spec) }
//
// in the manner of testing/fstest.TestFS. It drives several instances of
// the backend over real UDP sockets between network namespaces on a bridge
// (internal/testbed; root is required), each on a channel TUN the suite
// feeds and reads packet by packet, and, for throughput, on the device of a
// userspace TCP/IP stack (gVisor's, see tcpNet) carrying real TCP. Each
// case states the property it checks in MUST language.
//
// The suite logs one line per figure it measures, "conformance-metric
// NAME=VALUE UNIT", which the backend agility report collects.
package conformance

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

// MTU is the device MTU the suite runs at (tuntest's channel TUN).
const MTU = 1420

// ThroughputFloor is the lowest acceptable ratio of TCP throughput through
// two instances on netstack devices to TCP over the raw veth path between
// the same namespaces, measured in the same run.
//
// Measured on 2026-12-01 (AMD EPYC, 2 cores shared with other work, both
// ends on the same cores, kernel 6.18.44, go1.26.8), seven runs of the
// suite with go test -p 1 (one backend at a time): wireguard 0.029 to 0.052
// (0.047 0.044 0.031 0.052 0.032 0.052 0.029), quic 0.027 to 0.048 (0.031
// 0.033 0.029 0.034 0.036 0.027 0.048). One 2 s run spreads by a factor of
// up to 1.8 within a backend, so the floor is the lowest figure seen,
// 0.027, divided by that spread: 0.015. It fails a backend at about half
// the throughput measured here, and does not fail on noise alone.
//
// Those figures came from wireguard-go's netstack, SACK on. With the
// suite's own stack (tcpNet: SACK off, QUIC's devices at its MaxMTU),
// measured on 2026-12-02 on the same machine while other work held its
// 1-minute load average at 3 to 13.5: wireguard 0.036 to 0.078 (20 runs,
// median 0.054), quic 0.015 to 0.116 (100 runs, median 0.057). The one
// run under the floor, quic's 0.0149, came in a batch at loads of 4.5 to
// 13.5; at loads of 7.5 to 11 wireguard fell to 0.013 once in 50 runs on
// the old stack.
//
// It is the floor of a backend ThroughputFloors does not name.
const ThroughputFloor = 0.015

// ThroughputFloors are the floors of backends that reach well above
// ThroughputFloor, set by the same rule from their own runs.
//
// quic: measured on 2026-12-05 (AMD EPYC, 2 cores, kernel 6.18.44, go1.26.8),
// after the data-path work of third_party/quic-go/RUSTYNET.md, six runs
// while other work held the 1-minute load average at 10 to 14: 0.061 to
// 0.103 (0.071 0.069 0.103 0.062 0.061 0.068; wireguard, alternating
// with it, 0.023 to 0.041). The lowest, 0.061, divided by the spread of
// one run (1.8, above) gives 0.034: it fails the backend at about half of
// what it now reaches, where ThroughputFloor let it lose three quarters.
var ThroughputFloors = map[string]float64{
	"quic": 0.034,
}

// FloorFor is the throughput floor of the named backend.
func FloorFor(backend string) float64 {
	if f, ok := ThroughputFloors[backend]; ok {
		return f
	}
	return ThroughputFloor
}

// throughputProperty states the Throughput case with every floor.
func throughputProperty() string {
	var named []string
	for _, b := range slices.Sorted(maps.Keys(ThroughputFloors)) {
		named = append(named, fmt.Sprintf("%g for %s", ThroughputFloors[b], b))
	}
	return fmt.Sprintf("TCP through the backend MUST reach at least its floor of TCP over the raw path, measured in the same run: %s, %g for any other.", strings.Join(named, ", "), ThroughputFloor)
}

// Case is one property of the suite.
type Case struct {
	Name     string
	Property string
	// PresharedKeys marks a case of backends that carry preshared keys
	// (backend.Spec.PresharedKeys): it runs on those, and only those
	// must pass it.
	PresharedKeys bool
	run           func(t *testing.T, e *env)
}

// Cases lists the suite, in the order it runs.
var Cases = []Case{
	{"Connectivity", "Packets MUST flow in both directions between two configured peers.", false, testConnectivity},
	{"Integrity", "A packet of every size from 28 bytes to the MTU MUST arrive byte for byte.", false, testIntegrity},
	{"MTU", "A packet over the MTU MUST NOT be delivered truncated or altered, and MUST NOT stop the traffic after it.", false, testMTU},
	{"PeerChurn", "Adding, removing and changing peers MUST NOT disturb the others; a removed peer's traffic MUST stop.", false, testPeerChurn},
	{"KeyRotation", "After a peer's key changes and both sides are reconfigured, traffic MUST resume.", false, testKeyRotation},
	{"Roaming", "When a peer's address changes mid-stream, traffic MUST resume in both directions once the other side's config carries the new endpoint, with no change on the side that moved.", false, testRoaming},
	{"Replay", "A captured datagram sent again MUST NOT be delivered again, in either direction.", false, testReplay},
	{"Impostor", "A sender without a configured key MUST NOT get a packet delivered, and a peer MUST NOT deliver a packet whose source is outside its allowed IPs.", false, testImpostor},
	{"ManyPeers", "One instance MUST exchange packets with 24 peers at once.", false, testManyPeers},
	{"LinkFlap", "After the link goes down and comes back, traffic MUST resume without reconfiguration.", false, testLinkFlap},
	{"Close", "Close MUST release every goroutine, socket and file descriptor the backend opened.", false, testClose},
	{"Throughput", throughputProperty(), false, testThroughput},
	{"PresharedKeyRotation", "A preshared key installed on both sides and replaced MUST move the session onto it without losing a packet, and peers whose preshared keys differ MUST NOT pass a packet.", true, testPresharedKeyRotation},
	{"RefusedDowngrade", "A peer with a preshared key MUST NOT exchange a packet with one that has none, in either direction.", true, testRefusedDowngrade},
}

// CaseNames lists the names of Cases, in order.
func CaseNames() []string {
	names := make([]string, len(Cases))
	for i, c := range Cases {
		names[i] = c.Name
	}
	return names
}

// CaseNamesFor lists, in order, the cases a backend must pass: every one,
// but for the preshared-key cases when it carries none. The conformance
// gate requires them of every backend rustynetd registers.
func CaseNamesFor(presharedKeys bool) []string {
	var names []string
	for _, c := range Cases {
		if !c.PresharedKeys || presharedKeys {
			names = append(names, c.Name)
		}
	}
	return names
}

// env is the testbed shared by the cases of one Run.
type env struct {
	spec  backend.Spec
	net   *testbed.Network
	hosts []hostNS
	next  int
}

type host struct{ *testbed.Host }

func (h host) Address() netip.Addr { return h.Addr }

// instance creates an instance on host i with the next mesh address.
func (e *env) instance(t testing.TB, i int) *instance {
	e.next++
	return newInstance(t, e.spec, e.hosts[i], e.next)
}

// Run runs every case against the backend spec describes.
func Run(t *testing.T, spec backend.Spec) {
	require.Root(t)
	n := testbed.New(t, testbed.Options{Hosts: 4})
	e := &env{spec: spec, net: n}
	for _, h := range n.Hosts {
		e.hosts = append(e.hosts, host{h})
	}
	for _, c := range Cases {
		if c.PresharedKeys && !spec.PresharedKeys {
			continue // not this backend's to pass (CaseNamesFor)
		}
		t.Run(c.Name, func(t *testing.T) {
			t.Log("property: " + c.Property)
			c.run(t, e)
		})
	}
}

// metric logs a figure for the agility report.
func metric(t *testing.T, name string, value float64, unit string) {
	t.Logf("conformance-metric %s=%g %s", name, value, unit)
}

// testConnectivity: packets MUST flow in both directions between two
// configured peers.
func testConnectivity(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	for _, p := range [][2]*instance{{a, b}, {b, a}} {
		if err := send(p[0], p[1], 100, 10*time.Second); err != nil {
			t.Error(err)
		}
	}
}

// testIntegrity: a packet of every size from 28 bytes (the smallest IPv4
// UDP packet) to the MTU MUST arrive byte for byte.
func testIntegrity(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for size := 28; size <= MTU; size++ {
		p := packet(a.ip, b.ip, size, uint32(size))
		if err := a.inject(p); err != nil {
			t.Fatal(err)
		}
		if err := b.expect(p, 5*time.Second); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
	}
}

// testMTU: a packet over the MTU MUST NOT be delivered truncated or
// altered (dropping it, or delivering it whole, are both allowed), and
// MUST NOT stop the traffic after it.
func testMTU(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{MTU + 1, MTU + 80, 2000} {
		p := packet(a.ip, b.ip, size, uint32(size))
		if err := a.inject(p); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(time.Second)
	wait:
		for {
			select {
			case got := <-b.recv:
				if len(got) >= 32 && string(got[28:32]) == string(p[28:32]) && string(got) != string(p) {
					t.Errorf("a %d-byte packet arrived as %d altered bytes", size, len(got))
				}
			case <-deadline:
				break wait
			}
		}
	}
	if err := send(a, b, MTU, 10*time.Second); err != nil {
		t.Errorf("after oversized packets: %v", err)
	}
}

// handshakeOf returns the last handshake time a reports for peer p.
func handshakeOf(t *testing.T, a *instance, p *instance) (time.Time, bool) {
	st, err := a.b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.PublicKey == p.key.Public() {
			return s.LastHandshake, true
		}
	}
	return time.Time{}, false
}

// testPeerChurn: adding, removing and changing peers MUST NOT disturb the
// others (their sessions survive and their traffic keeps flowing), and a
// removed peer's traffic MUST stop.
func testPeerChurn(t *testing.T, e *env) {
	a, b, c := e.instance(t, 0), e.instance(t, 1), e.instance(t, 2)
	a.set(b.peer(), c.peer())
	b.set(a.peer())
	c.set(a.peer())
	for _, p := range [][2]*instance{{a, b}, {a, c}} {
		if err := send(p[0], p[1], 100, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	hs, _ := handshakeOf(t, a, b)
	if hs.IsZero() {
		t.Fatal("no handshake time reported for a peer that passed traffic")
	}
	if err := a.reconfig(b.peer(), c.peer()); err == nil {
		t.Error("an identical Reconfig did not return ErrNoChanges")
	}
	d := e.instance(t, 3)
	d.set(a.peer())
	a.set(b.peer(), c.peer(), d.peer()) // add d
	a.set(b.peer(), d.peer())           // remove c
	dp := d.peer()
	dp.AllowedIPs = append(dp.AllowedIPs, netip.MustParsePrefix("100.65.0.0/24"))
	a.set(b.peer(), dp) // change d
	if err := send(a, d, 100, 10*time.Second); err != nil {
		t.Errorf("the added peer: %v", err)
	}
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Errorf("the unchanged peer after churn: %v", err)
	}
	if hs2, _ := handshakeOf(t, a, b); !hs2.Equal(hs) {
		t.Errorf("the unchanged peer's session was re-established (handshake %v -> %v)", hs, hs2)
	}
	if _, ok := handshakeOf(t, a, c); ok {
		t.Error("Stats still lists the removed peer")
	}
	p := packet(a.ip, c.ip, 100, 7)
	a.inject(p)
	if err := c.quiet(time.Second, p); err != nil {
		t.Errorf("the removed peer still gets traffic: %v", err)
	}
}

// testKeyRotation: after a peer's key changes and both sides are
// reconfigured (as the controller makes them), traffic MUST resume in both
// directions.
func testKeyRotation(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Rotate on an established, settled session: WireGuard refuses a
	// second handshake initiation from a peer within 20 ms of the last
	// (flood protection), which no real rotation comes near.
	time.Sleep(100 * time.Millisecond)
	b.key = key.NewNode()
	b.set(a.peer())
	a.set(b.peer())
	start := time.Now()
	for _, p := range [][2]*instance{{a, b}, {b, a}} {
		if err := send(p[0], p[1], 100, 10*time.Second); err != nil {
			t.Error(err)
		}
	}
	metric(t, "key_rotation_recovery", float64(time.Since(start).Milliseconds()), "ms")
}

// setAddress replaces host h's eth0 address with addr (same prefix).
func setAddress(h *testbed.Host, old, addr netip.Addr, bits int) error {
	return h.Do(func() error {
		// The new address joins as a secondary of the subnet; without
		// promotion, deleting the primary would delete it too.
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+h.Link+"/promote_secondaries", []byte("1"), 0o644); err != nil {
			return err
		}
		link, err := netlink.LinkByName(h.Link)
		if err != nil {
			return err
		}
		nw := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
		if err := netlink.AddrAdd(link, nw); err != nil {
			return err
		}
		return netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: old.AsSlice(), Mask: net.CIDRMask(bits, 32)}})
	})
}

// testRoaming: when a peer's address changes mid-stream, traffic MUST
// resume in both directions once the other side's config carries the new
// endpoint (as the controller's netmap brings it), with no change on the
// side that moved. Both sides are moved in turn.
func testRoaming(t *testing.T, e *env) {
	for _, mover := range []int{0, 1} {
		t.Run(fmt.Sprintf("instance%d-moves", mover), func(t *testing.T) {
			a, b := e.instance(t, 0), e.instance(t, 1)
			connect(a, b)
			if err := send(a, b, 100, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			moving, other := a, b
			if mover == 1 {
				moving, other = b, a
			}
			h := moving.host.(host).Host
			oldAddr := h.Addr
			newAddr := netip.AddrFrom4([4]byte{oldAddr.As4()[0], oldAddr.As4()[1], oldAddr.As4()[2], 200 + byte(mover)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := runStream(ctx, a, b, 20*time.Millisecond)
			time.Sleep(300 * time.Millisecond)
			if err := setAddress(h, oldAddr, newAddr, e.net.Subnet.Bits()); err != nil {
				t.Fatal(err)
			}
			defer setAddress(h, newAddr, oldAddr, e.net.Subnet.Bits())
			moved := time.Now()
			mp := moving.peer()
			mp.Endpoint = netip.AddrPortFrom(newAddr, moving.b.Port())
			other.set(mp)
			for _, dir := range []string{a.ip.String() + ">" + b.ip.String(), b.ip.String() + ">" + a.ip.String()} {
				deadline := time.Now().Add(15 * time.Second)
				for {
					if _, last := s.count(dir); last.After(moved.Add(100 * time.Millisecond)) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: no packet delivered within 15s of the move", dir)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			metric(t, fmt.Sprintf("roaming_recovery_instance%d", mover), float64(time.Since(moved).Milliseconds()), "ms")
			cancel()
		})
	}
}

// relay is a UDP relay in a namespace between instances a and b that
// forwards both ways from the start, as a path between two peers does:
// a's datagrams arrive on sides[0] and leave from sides[1] for b, b's
// arrive on sides[1] and leave from sides[0] for a. It records what each
// side sends, and can send it again.
type relay struct {
	sides [2]net.PacketConn // [0] is where a reaches b, [1] where b reaches a
	peers [2]net.Addr       // a's and b's own endpoints
	wg    sync.WaitGroup

	mu        sync.Mutex
	captured  [2][][]byte // the datagrams a sent, and those b sent
	bytes     int         // UDP payload bytes relayed, both ways, since reset
	datagrams int         // datagrams relayed, both ways, since reset
}

func newRelay(t *testing.T, h *testbed.Host, a, b netip.AddrPort) *relay {
	r := &relay{peers: [2]net.Addr{net.UDPAddrFromAddrPort(a), net.UDPAddrFromAddrPort(b)}}
	for i := range r.sides {
		pc, err := h.ListenPacket("udp", netip.AddrPortFrom(h.Addr, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		r.sides[i] = pc
	}
	t.Cleanup(func() {
		r.sides[0].Close()
		r.sides[1].Close()
		r.wg.Wait()
	})
	for from := range r.sides {
		in, out, to := r.sides[from], r.sides[1-from], r.peers[1-from]
		r.wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := in.ReadFrom(buf)
				if err != nil {
					return
				}
				r.mu.Lock()
				r.captured[from] = append(r.captured[from], append([]byte(nil), buf[:n]...))
				r.bytes += n
				r.datagrams++
				r.mu.Unlock()
				out.WriteTo(buf[:n], to)
			}
		})
	}
	return r
}

// endpointOf is where instance i (0 for a, 1 for b) reaches the other
// through the relay.
func (r *relay) endpointOf(i int) netip.AddrPort { return addrPort(r.sides[i]) }

// reset zeroes the traffic counters.
func (r *relay) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes, r.datagrams = 0, 0
}

// traffic returns what the relay has carried since reset.
func (r *relay) traffic() (bytes, datagrams int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes, r.datagrams
}

func addrPort(c net.PacketConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// replay sends every datagram side from (0 for a, 1 for b) sent to the
// other side again, from the relay, and returns how many.
func (r *relay) replay(from int) int {
	r.mu.Lock()
	caps := slices.Clone(r.captured[from])
	r.mu.Unlock()
	for _, c := range caps {
		r.sides[1-from].WriteTo(c, r.peers[1-from])
	}
	return len(caps)
}

// testReplay: a datagram captured on the wire and sent again MUST NOT be
// delivered again (nor may any other captured datagram cause a delivery),
// in either direction.
//
// It first measures the set-up of a session, the way a mesh sees it when
// the controller introduces two running peers and one of them then sends.
// Both instances are given each other's key and allowed IPs with no
// endpoint (nothing can be sent yet) and left to settle. Then the clock
// starts, both are given the path through the relay (a first, then b), and
// a sends one 200-byte packet at once. setup_time runs from the clock's
// start to that packet's delivery at b; setup_bytes and setup_datagrams
// are what the relay carried, both ways, in that time.
//
// The relay forwards both ways from the start, so it does not matter which
// side sends first: a backend that connects as soon as it is configured
// (quic: the lower key dials) and one that shakes hands on the first
// packet (wireguard: a initiates) are timed from the same instant, and the
// figures do not depend on which of the randomly generated keys is the
// lower. Keys are known on both sides before either has a path, so no
// first attempt is refused for reaching a peer that does not know the
// sender yet, whichever order the two are configured in.
func testReplay(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	r := newRelay(t, e.net.Hosts[3], a.endpoint(), b.endpoint())
	ap, bp := a.peer(), b.peer()
	ap.Endpoint, bp.Endpoint = netip.AddrPort{}, netip.AddrPort{}
	a.set(bp)
	b.set(ap)
	// Nodes of a mesh run long before a peer is introduced: let the
	// instances finish starting, so that their start-up is not counted as
	// the session's (wireguard-go's workers and peer routines were seen
	// still starting up to 25 ms after Reconfig returned, and its first
	// handshake then took 8 ms instead of 2).
	time.Sleep(250 * time.Millisecond)

	r.reset()
	start := time.Now()
	bp.Endpoint, ap.Endpoint = r.endpointOf(0), r.endpointOf(1)
	a.set(bp)
	b.set(ap)
	first := packet(a.ip, b.ip, 200, 1000)
	if err := a.inject(first); err != nil {
		t.Fatal(err)
	}
	if err := b.expect(first, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	n, d := r.traffic()
	metric(t, "setup_time", float64(took.Microseconds())/1000, "ms from both peers being given the path to the first packet delivered")
	metric(t, "setup_bytes", float64(n), "bytes on the wire, both ways, until the first 200-byte packet was delivered")
	metric(t, "setup_datagrams", float64(d), "datagrams, both ways, until the first packet was delivered")

	// Traffic both ways, for the relay to capture.
	var sent [2][][]byte // what a sent to b, and b to a
	for i := range 19 {
		for from, dir := range [2][2]*instance{{a, b}, {b, a}} {
			p := packet(dir[0].ip, dir[1].ip, 201+i, uint32(1001+i))
			if err := dir[0].inject(p); err != nil {
				t.Fatal(err)
			}
			if err := dir[1].expect(p, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			sent[from] = append(sent[from], p)
		}
	}
	sent[0] = append(sent[0], first)
	a.drain()
	b.drain()
	var replayed [2]int
	for from, name := range []string{"a", "b"} {
		replayed[from] = r.replay(from)
		if replayed[from] < len(sent[from]) {
			t.Fatalf("the relay captured %d datagrams from %s, fewer than the %d packets it sent", replayed[from], name, len(sent[from]))
		}
	}
	// Both replays are on their way; whatever the one to a delivers is
	// queued for a by the end of b's 2 s wait.
	if err := b.quiet(2*time.Second, sent[0]...); err != nil {
		t.Errorf("after a's %d captured datagrams were replayed to b: %v", replayed[0], err)
	}
	if err := a.quiet(100*time.Millisecond, sent[1]...); err != nil {
		t.Errorf("after b's %d captured datagrams were replayed to a: %v", replayed[1], err)
	}
	metric(t, "replayed_datagrams", float64(replayed[0]+replayed[1]), "datagrams, both ways")
}

// testImpostor: a sender whose key the receiver has not configured MUST
// NOT get a packet delivered, even knowing the receiver's key and
// endpoint; and a configured peer MUST NOT get a packet delivered whose
// source address lies outside the allowed IPs the receiver has for it.
func testImpostor(t *testing.T, e *env) {
	a, b, x := e.instance(t, 0), e.instance(t, 1), e.instance(t, 2)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// x claims a's address and knows b.
	x.ip = a.ip
	x.set(b.peer())
	forged := packet(x.ip, b.ip, 120, 4242)
	for range 5 {
		x.inject(forged)
		time.Sleep(200 * time.Millisecond)
	}
	if err := b.quiet(2*time.Second, forged); err != nil {
		t.Errorf("impostor: %v", err)
	}
	// a sends with a source outside its allowed IPs.
	spoofed := packet(netip.MustParseAddr("100.64.99.99"), b.ip, 120, 4343)
	a.inject(spoofed)
	if err := b.quiet(2*time.Second, spoofed); err != nil {
		t.Errorf("spoofed source: %v", err)
	}
}

// testManyPeers: one instance MUST exchange packets with 24 peers at once.
func testManyPeers(t *testing.T, e *env) {
	const n = 24
	hub := e.instance(t, 0)
	var spokes []*instance
	var peers []backend.Peer
	for i := range n {
		s := e.instance(t, 1+i%3)
		s.set(hub.peer())
		spokes = append(spokes, s)
		peers = append(peers, s.peer())
	}
	hub.set(peers...)
	// Every spoke sends at once (re-sending every 500ms, as handshakes
	// may be pending); one reader matches what the hub receives.
	want := map[string]*instance{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, s := range spokes {
		p := packet(s.ip, hub.ip, 100, uint32(i))
		want[string(p)] = s
		go func() {
			for ctx.Err() == nil {
				s.inject(p)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
	}
	for len(want) > 0 && ctx.Err() == nil {
		select {
		case got := <-hub.recv:
			delete(want, string(got))
		case <-ctx.Done():
		}
	}
	cancel()
	for _, s := range want {
		t.Errorf("%s -> hub: no packet delivered within 30s while %d spokes sent at once", s.ip, n)
	}
	for _, s := range spokes {
		if err := send(hub, s, 100, 20*time.Second); err != nil {
			t.Error(err)
		}
	}
	if st, err := hub.b.Stats(); err != nil || len(st) != n {
		t.Errorf("hub Stats() = %d peers, %v; want %d", len(st), err, n)
	}
}

// testLinkFlap: after the link goes down for two seconds and comes back,
// traffic MUST resume in both directions without reconfiguration.
func testLinkFlap(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h := a.host.(host).Host
	if err := h.SetLinkUp(false); err != nil {
		t.Fatal(err)
	}
	p := packet(a.ip, b.ip, 100, 1)
	a.inject(p) // lost while the link is down
	time.Sleep(2 * time.Second)
	if err := h.SetLinkUp(true); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for _, p := range [][2]*instance{{a, b}, {b, a}} {
		if err := send(p[0], p[1], 100, 20*time.Second); err != nil {
			t.Error(err)
		}
	}
	metric(t, "link_flap_recovery", float64(time.Since(up).Milliseconds()), "ms")
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// testClose: Close MUST release every goroutine, socket and file
// descriptor the backend opened, even after traffic; its port MUST be free
// again; and a second Close MUST be harmless.
func testClose(t *testing.T, e *env) {
	fds := openFDs(t)
	ignore := goleak.IgnoreCurrent()
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	port := a.endpoint()
	a.close()
	b.close()
	if err := a.b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
	// Let the runtime's netpoller drop closed descriptors.
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > fds && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := openFDs(t); got > fds {
		t.Errorf("%d file descriptors open after Close, %d before the backends were created", got, fds)
	}
	pc, err := a.host.(host).ListenPacket("udp", port.String())
	if err != nil {
		t.Errorf("the port of a closed backend is still taken: %v", err)
	} else {
		pc.Close()
	}
}

// tcpRate streams bytes from dial to listen for d and returns the
// receiver's rate in bits per second.
func tcpRate(t *testing.T, ln net.Listener, dial func() (net.Conn, error), d time.Duration) float64 {
	type result struct {
		bytes int64
		dur   time.Duration
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{}
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		n, _ := c.Read(buf) // the clock starts at the first byte
		start := time.Now()
		m, _ := io.CopyBuffer(io.Discard, c, buf)
		res <- result{int64(n) + m, time.Since(start)}
	}()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	c.Close()
	r := <-res
	if r.dur <= 0 {
		t.Fatal("the receiver measured nothing")
	}
	return float64(r.bytes*8) / r.dur.Seconds()
}

// testThroughput: TCP through two instances on netstack devices MUST reach
// at least its floor (FloorFor) of TCP over the raw veth path between the same
// two namespaces, measured in the same run (2 s each, raw first).
func testThroughput(t *testing.T, e *env) {
	ha, hb := e.net.Hosts[0], e.net.Hosts[1]
	ln, err := hb.Listen("tcp", netip.AddrPortFrom(hb.Addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	raw := tcpRate(t, ln, func() (net.Conn, error) {
		return ha.DialContext(context.Background(), "tcp", ln.Addr().String())
	}, 2*time.Second)
	ln.Close()

	// The device MTU is the one the node would run: the backend's MaxMTU
	// when that is lower than the suite's.
	mtu := MTU
	if m := e.spec.MaxMTU; m > 0 && m < mtu {
		mtu = m
	}
	t.Logf("device MTU %d", mtu)
	a, b := e.instance(t, 0), e.instance(t, 1)
	var nets [2]*tcpNet
	for i, in := range []*instance{a, b} {
		dev, err := newTCPNet(in.ip, mtu)
		if err != nil {
			t.Fatal(err)
		}
		in.close() // replace the channel-TUN backend with one on the TCP stack's device
		in.closed = false
		in.done = make(chan struct{})
		if err := in.create(dev); err != nil {
			t.Fatal(err)
		}
		nets[i] = dev
	}
	connect(a, b)
	tln, err := nets[1].listen(netip.AddrPortFrom(b.ip, 5201))
	if err != nil {
		t.Fatal(err)
	}
	defer tln.Close()
	dial := func() (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := nets[0].dial(ctx, netip.AddrPortFrom(b.ip, 5201))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	tunnel := tcpRate(t, tln, dial, 2*time.Second)
	ratio := tunnel / raw
	metric(t, "raw_tcp", raw/1e9, "Gbit/s")
	metric(t, "tunnel_tcp", tunnel/1e9, "Gbit/s")
	metric(t, "tunnel_to_raw", ratio, "ratio")
	if floor := FloorFor(e.spec.Name); ratio < floor {
		t.Errorf("TCP through the backend: %.3f Gbit/s, %.4f of the raw path's %.2f Gbit/s; %s's floor is %g", tunnel/1e9, ratio, raw/1e9, e.spec.Name, floor)
	}
}
