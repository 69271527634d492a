package quic

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

const wait = 10 * time.Second

// settle is how long a test that checks a connection was left alone gives
// a wrongful reconnection to happen (one takes about 2 ms on loopback).
const settle = 200 * time.Millisecond

type end struct {
	b   backend.Backend
	tun *tuntest.ChannelTUN
	key key.NodePrivate
	ip  netip.Addr // 100.64.0.i
	ip6 netip.Addr // fd7a:115c:a1e0::i
}

func newEnd(t testing.TB, i int, k key.NodePrivate) *end {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	b, err := New(backend.Options{Device: ct.TUN()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &end{b: b, tun: ct, key: k,
		ip:  netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}),
		ip6: netip.AddrFrom16([16]byte{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 15: byte(i)}),
	}
}

// addr is where the end listens.
func (e *end) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), e.b.Port())
}

// peer is e as its peers configure it, reached at ep.
func (e *end) peer(ep netip.AddrPort) backend.Peer {
	return backend.Peer{
		PublicKey:  e.key.Public(),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(e.ip, 32), netip.PrefixFrom(e.ip6, 128)},
		Endpoint:   ep,
		BackendKey: PublicKey(e.key),
	}
}

func configure(t testing.TB, e *end, peers ...backend.Peer) {
	t.Helper()
	if err := e.b.Reconfig(&backend.Config{PrivateKey: e.key, Peers: peers}); err != nil && !errors.Is(err, backend.ErrNoChanges) {
		t.Fatal(err)
	}
}

// keys returns two node keys, the first the lower, so that its node dials.
func keys() (lo, hi key.NodePrivate) {
	a, b := key.NewNode(), key.NewNode()
	if dials(a.Public(), b.Public()) {
		return a, b
	}
	return b, a
}

// keyBelow returns a node key that dials the node whose key is k.
func keyBelow(k api.NodePublic) key.NodePrivate {
	for {
		n := key.NewNode()
		if dials(n.Public(), k) {
			return n
		}
	}
}

// pair returns two configured ends; a dials b.
func pair(t testing.TB) (a, b *end) {
	t.Helper()
	ka, kb := keys()
	a, b = newEnd(t, 1, ka), newEnd(t, 2, kb)
	configure(t, a)
	configure(t, b)
	configure(t, a, b.peer(b.addr()))
	configure(t, b, a.peer(a.addr()))
	return a, b
}

// packet4 builds an IPv4 packet of size bytes (at least 20) whose payload
// depends on seq.
func packet4(src, dst netip.Addr, size int, seq uint16) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	binary.BigEndian.PutUint16(p[4:], seq)
	p[8], p[9] = 64, 253 // TTL; protocol reserved for experiments
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	for i := 20; i < size; i++ {
		p[i] = byte(i*7 + int(seq))
	}
	return p
}

// packet6 builds an IPv6 packet of size bytes (at least 40).
func packet6(src, dst netip.Addr, size int, seq uint16) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(size-40))
	p[6], p[7] = 59, 64 // no next header; hop limit
	copy(p[8:24], src.AsSlice())
	copy(p[24:40], dst.AsSlice())
	for i := 40; i < size; i++ {
		p[i] = byte(i*3 + int(seq))
	}
	return p
}

// expect reads the next packet e's device is given and checks it is want.
func expect(t testing.TB, e *end, want []byte, what string) {
	t.Helper()
	select {
	case got := <-e.tun.Inbound:
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got a %d-byte packet %x..., want the %d-byte packet %x...", what, len(got), got[:min(len(got), 28)], len(want), want[:min(len(want), 28)])
		}
	case <-time.After(wait):
		t.Fatalf("%s: packet did not arrive", what)
	}
}

// transfer sends pkt from a's device and checks that b's device gets it
// unchanged.
func transfer(t testing.TB, a, b *end, pkt []byte, what string) {
	t.Helper()
	a.tun.Outbound <- pkt
	expect(t, b, pkt, what)
}

// send sends a ping from a to b and checks it arrives unchanged.
func send(t testing.TB, a, b *end) {
	t.Helper()
	transfer(t, a, b, tuntest.Ping(b.ip, a.ip), fmt.Sprintf("ping %s -> %s", a.ip, b.ip))
}

func statsOf(t testing.TB, e *end, of api.NodePublic) (backend.PeerStats, bool) {
	t.Helper()
	st, err := e.b.Stats()
	if err != nil {
		t.Fatalf("Stats() = %v", err)
	}
	for _, s := range st {
		if s.PublicKey == of {
			return s, true
		}
	}
	return backend.PeerStats{}, false
}

func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTraffic: packets MUST cross both ways byte for byte, IPv4 packets of
// every size from 28 bytes to the device MTU (fragmented where they do not
// fit a datagram) and full-MTU IPv6 packets; Stats MUST report the peer
// with its handshake, endpoint and the IP bytes carried; and Close MUST
// release every goroutine.
func TestTraffic(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := pair(t)
	send(t, a, b)
	send(t, b, a)
	var sent uint64
	for size := 28; size <= tuntest.DefaultMTU; size++ {
		transfer(t, a, b, packet4(a.ip, b.ip, size, uint16(size)), fmt.Sprintf("%d-byte packet a -> b", size))
		transfer(t, b, a, packet4(b.ip, a.ip, size, uint16(size)), fmt.Sprintf("%d-byte packet b -> a", size))
		sent += uint64(size)
	}
	transfer(t, a, b, packet6(a.ip6, b.ip6, tuntest.DefaultMTU, 1), "IPv6 packet a -> b")
	transfer(t, b, a, packet6(b.ip6, a.ip6, tuntest.DefaultMTU, 2), "IPv6 packet b -> a")
	sent += tuntest.DefaultMTU + 32 // the ping

	// The counters are updated after a packet is handed on: poll them.
	for _, d := range []struct{ from, to *end }{{a, b}, {b, a}} {
		var st backend.PeerStats
		eventually(t, func() bool {
			st, _ = statsOf(t, d.from, d.to.key.Public())
			return st.TxBytes == sent && st.RxBytes == sent
		}, fmt.Sprintf("Stats of %s for %s to count %d bytes each way", d.from.ip, d.to.ip, sent))
		if st.LastHandshake.IsZero() || st.Endpoint != d.to.addr() {
			t.Errorf("Stats of %s for %s = %+v; want a handshake and endpoint %s", d.from.ip, d.to.ip, st, d.to.addr())
		}
	}
	a.b.Close()
	b.b.Close()
}

// TestReconfigIdempotentAndUndisturbed: an identical Reconfig MUST return
// ErrNoChanges; adding a peer MUST leave the connection with an unchanged
// one as it was (same handshake) and its traffic flowing; removing a peer
// MUST stop its traffic both ways and drop it from Stats.
func TestReconfigIdempotentAndUndisturbed(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	if err := a.b.Reconfig(&backend.Config{PrivateKey: a.key, Peers: []backend.Peer{b.peer(b.addr())}}); !errors.Is(err, backend.ErrNoChanges) {
		t.Errorf("identical Reconfig = %v, want ErrNoChanges", err)
	}
	before, _ := statsOf(t, a, b.key.Public())
	beforeB, _ := statsOf(t, b, a.key.Public())

	c := newEnd(t, 3, key.NewNode())
	configure(t, c)
	configure(t, c, a.peer(a.addr()))
	configure(t, a, b.peer(b.addr()), c.peer(c.addr()))
	time.Sleep(settle) // time for a reconnection, were one made
	send(t, a, c)
	send(t, c, a)
	send(t, a, b)
	send(t, b, a)
	after, _ := statsOf(t, a, b.key.Public())
	afterB, _ := statsOf(t, b, a.key.Public())
	if !after.LastHandshake.Equal(before.LastHandshake) || !afterB.LastHandshake.Equal(beforeB.LastHandshake) {
		t.Errorf("adding a peer reconnected an unchanged one: handshake %v -> %v (a), %v -> %v (b)",
			before.LastHandshake, after.LastHandshake, beforeB.LastHandshake, afterB.LastHandshake)
	}

	// Removing c: Stats forgets it, and its traffic stops both ways. The
	// packets that must not pass are sent first; the next packet each
	// device gets must be the one that may.
	configure(t, a, b.peer(b.addr()))
	if st, _ := a.b.Stats(); len(st) != 1 || st[0].PublicKey != b.key.Public() {
		t.Errorf("after removing c, Stats() = %+v, want b alone", st)
	}
	c.tun.Outbound <- tuntest.Ping(a.ip, c.ip)
	a.tun.Outbound <- tuntest.Ping(c.ip, a.ip)
	send(t, b, a)
	configure(t, c, a.peer(a.addr()), b.peer(b.addr()))
	configure(t, b, a.peer(a.addr()), c.peer(c.addr()))
	send(t, b, c)
}

// TestKeepaliveChange: changing a peer's Keepalive, on the side that
// leads and on the other, MUST NOT re-establish its connection, and
// traffic MUST keep flowing.
func TestKeepaliveChange(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	before, _ := statsOf(t, b, a.key.Public())
	pb, pa := b.peer(b.addr()), a.peer(a.addr())
	pb.Keepalive, pa.Keepalive = 5*time.Second, 7*time.Second
	configure(t, a, pb)
	configure(t, b, pa)
	time.Sleep(settle) // time for a reconnection, were one made
	send(t, a, b)
	send(t, b, a)
	after, _ := statsOf(t, b, a.key.Public())
	if !after.LastHandshake.Equal(before.LastHandshake) {
		t.Errorf("changing Keepalive reconnected: handshake %v -> %v", before.LastHandshake, after.LastHandshake)
	}
}

// TestKeyRotation: when a node changes its key and its peer learns the new
// node and backend keys, traffic MUST resume both ways over a new
// connection.
func TestKeyRotation(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	old, _ := statsOf(t, b, a.key.Public())
	a.key = key.NewNode()
	configure(t, a, b.peer(b.addr()))
	configure(t, b, a.peer(a.addr()))
	send(t, a, b)
	send(t, b, a)
	st, ok := statsOf(t, b, a.key.Public())
	if !ok || !st.LastHandshake.After(old.LastHandshake) {
		t.Errorf("after the rotation b.Stats() for a = %+v (listed %t); want a handshake after %v", st, ok, old.LastHandshake)
	}
	if _, ok := statsOf(t, b, old.PublicKey); ok {
		t.Errorf("b still lists a's old key")
	}
}

// TestImpostor: a node whose key the receiver has not configured MUST NOT
// get a packet delivered, even claiming a configured peer's address.
func TestImpostor(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	// c dials b (its key is lower), knows b's true keys, and sends from
	// a's address; b has never heard of c.
	c := newEnd(t, 1, keyBelow(b.key.Public()))
	configure(t, c)
	configure(t, c, b.peer(b.addr()))
	for i := range 20 {
		c.tun.Outbound <- packet4(a.ip, b.ip, 100, uint16(1000+i))
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing from c may be waiting: the next packet b gets is a's.
	send(t, a, b)
	if st, _ := b.b.Stats(); len(st) != 1 {
		t.Errorf("b.Stats() = %+v, want a alone", st)
	}
}

// TestSpoofedSource: a packet from a peer whose source address is outside
// that peer's AllowedIPs, another peer's address included, MUST be
// dropped.
func TestSpoofedSource(t *testing.T) {
	a, b := pair(t)
	c := newEnd(t, 3, key.NewNode())
	configure(t, c)
	configure(t, b, a.peer(a.addr()), c.peer(c.addr()))
	configure(t, c, b.peer(b.addr()))
	send(t, c, b)
	send(t, a, b)
	a.tun.Outbound <- packet4(c.ip, b.ip, 100, 1)                               // c's address
	a.tun.Outbound <- packet4(netip.MustParseAddr("100.64.0.99"), b.ip, 100, 2) // nobody's
	a.tun.Outbound <- packet6(c.ip6, b.ip6, 100, 3)
	want := packet4(a.ip, b.ip, 100, 4)
	transfer(t, a, b, want, "a's own packet after spoofed ones")
}

// relay is a UDP forwarder standing between a dialing node and the node it
// dials, as a NAT would: the dialer sends to front, the relay sends on to
// the other node from back, whose port can change (rebind). It records
// what the dialer sends and counts the bytes each way.
type relay struct {
	front *net.UDPConn
	to    *net.UDPAddr
	wg    sync.WaitGroup

	up, down atomic.Uint64 // UDP payload bytes towards `to` and back
	drop     atomic.Bool   // lose everything, both ways

	mu       sync.Mutex
	client   *net.UDPAddr
	back     *net.UDPConn
	backs    []*net.UDPConn
	captured [][]byte
}

func newRelay(t testing.TB, to netip.AddrPort) *relay {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{front: front, to: net.UDPAddrFromAddrPort(to)}
	r.rebind(t)
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.client = from
			r.captured = append(r.captured, bytes.Clone(buf[:n]))
			back := r.back
			r.mu.Unlock()
			r.up.Add(uint64(n))
			if !r.drop.Load() {
				back.WriteToUDP(buf[:n], r.to)
			}
		}
	})
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() netip.AddrPort { return r.front.LocalAddr().(*net.UDPAddr).AddrPort() }

// rebind makes the relay forward from a new port, and returns it.
func (r *relay) rebind(t testing.TB) netip.AddrPort {
	t.Helper()
	back, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.back = back
	r.backs = append(r.backs, back)
	r.mu.Unlock()
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := back.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			client := r.client
			r.mu.Unlock()
			r.down.Add(uint64(n))
			if client != nil && !r.drop.Load() {
				r.front.WriteToUDP(buf[:n], client)
			}
		}
	})
	return back.LocalAddr().(*net.UDPAddr).AddrPort()
}

// inject sends d to the far node as if the dialer had sent it.
func (r *relay) inject(d []byte) {
	r.mu.Lock()
	back := r.back
	r.mu.Unlock()
	back.WriteToUDP(d, r.to)
}

func (r *relay) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.captured
	r.captured = nil
	return c
}

func (r *relay) close() {
	r.front.Close()
	r.mu.Lock()
	for _, b := range r.backs {
		b.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// relayedPair returns a dialing b through a relay.
func relayedPair(t testing.TB) (a, b *end, r *relay) {
	t.Helper()
	ka, kb := keys()
	a, b = newEnd(t, 1, ka), newEnd(t, 2, kb)
	configure(t, a)
	configure(t, b)
	r = newRelay(t, b.addr())
	configure(t, a, b.peer(r.addr()))
	configure(t, b, a.peer(a.addr()))
	return a, b, r
}

// TestReplayAndInjection: a datagram captured on the wire and sent again,
// or altered in any byte, MUST NOT deliver a packet.
func TestReplayAndInjection(t *testing.T) {
	a, b, r := relayedPair(t)
	var delivered uint64
	for i := range 5 {
		p := packet4(a.ip, b.ip, 200+i, uint16(i))
		transfer(t, a, b, p, "packet before the replay")
		delivered += uint64(len(p))
	}
	big := packet4(a.ip, b.ip, tuntest.DefaultMTU, 99) // fragmented while PMTUD runs
	transfer(t, a, b, big, "full-size packet before the replay")
	delivered += uint64(len(big))

	captured := r.take()
	if len(captured) == 0 {
		t.Fatal("the relay captured nothing")
	}
	for _, d := range captured {
		r.inject(d)
	}
	for _, d := range captured {
		for _, i := range []int{0, len(d) / 2, len(d) - 1} {
			forged := bytes.Clone(d)
			forged[i] ^= 0x40
			r.inject(forged)
		}
	}
	// Every injected datagram went out before this packet; b delivers in
	// arrival order, so anything they delivered would come first.
	fresh := packet4(a.ip, b.ip, 300, 7)
	transfer(t, a, b, fresh, "the first packet after the replay")
	delivered += uint64(len(fresh))
	// The counter is updated after a packet is handed on: poll it.
	var rx uint64
	eventually(t, func() bool {
		st, _ := statsOf(t, b, a.key.Public())
		rx = st.RxBytes
		return rx >= delivered
	}, "b's receive counter to catch up")
	if rx != delivered {
		t.Errorf("b received %d bytes from a, want %d: replayed or forged datagrams were delivered", rx, delivered)
	}
	t.Logf("replayed %d datagrams and %d altered copies", len(captured), 3*len(captured))
}

// TestRoamingDialer: when the dialing peer's source address changes
// mid-stream (NAT rebinding), traffic MUST continue both ways and the
// accepting side MUST follow the peer to its new address.
func TestRoamingDialer(t *testing.T) {
	a, b, r := relayedPair(t)
	send(t, a, b)
	send(t, b, a)
	moved := r.rebind(t)
	for i := range 20 {
		transfer(t, a, b, packet4(a.ip, b.ip, 100+i, uint16(i)), "a -> b after a's address changed")
		transfer(t, b, a, packet4(b.ip, a.ip, 100+i, uint16(i)), "b -> a after a's address changed")
	}
	eventually(t, func() bool {
		send(t, a, b)
		st, _ := statsOf(t, b, a.key.Public())
		return st.Endpoint == moved
	}, fmt.Sprintf("b to see a at %s", moved))
	send(t, b, a)
}

// TestEndpointChange: when the configured endpoint of a dialed peer
// changes, the dialer MUST reconnect there and traffic MUST continue.
func TestEndpointChange(t *testing.T) {
	a, b, r := relayedPair(t)
	send(t, a, b)
	configure(t, a, b.peer(b.addr()))
	r.close()
	send(t, a, b)
	send(t, b, a)
	if st, _ := statsOf(t, a, b.key.Public()); st.Endpoint != b.addr() {
		t.Errorf("a reaches b at %s, want %s", st.Endpoint, b.addr())
	}
}

// TestFollowerFallback: when the leader of a pair (the lower key) cannot
// reach the other node but the other node can reach it (a NAT or firewall
// in front of the follower), the follower MUST connect, and traffic MUST
// flow both ways; once the leader can reach the follower, its connection
// MUST take over.
func TestFollowerFallback(t *testing.T) {
	ka, kb := keys()
	a, b := newEnd(t, 1, ka), newEnd(t, 2, kb) // a leads
	configure(t, a)
	configure(t, b)
	hole, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // reads nothing
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	configure(t, a, b.peer(hole.LocalAddr().(*net.UDPAddr).AddrPort()))
	configure(t, b, a.peer(a.addr()))
	send(t, a, b)
	send(t, b, a)
	fallback, _ := statsOf(t, a, b.key.Public())

	configure(t, a, b.peer(b.addr()))
	send(t, a, b)
	send(t, b, a)
	st, _ := statsOf(t, b, a.key.Public())
	if !st.LastHandshake.After(fallback.LastHandshake) || st.Endpoint != a.addr() {
		t.Errorf("b.Stats() for a = %+v; want a handshake after the fallback's (%v)", st, fallback.LastHandshake)
	}
}

// TestAcceptorRestart: when the accepting node crashes and comes back on
// the same port with the same key, the dialer MUST reconnect well within
// the idle timeout: the restarted node answers the dead connection with a
// stateless reset (its key derives from the node key) and the dialer
// redials.
func TestAcceptorRestart(t *testing.T) {
	a, b, r := relayedPair(t)
	send(t, a, b)
	send(t, b, a)
	port := b.b.Port()
	r.drop.Store(true) // b's CONNECTION_CLOSE is lost, as in a crash
	b.b.Close()
	time.Sleep(100 * time.Millisecond)
	r.drop.Store(false)

	b2 := newEnd(t, 2, b.key)
	if err := b2.b.Reconfig(&backend.Config{PrivateKey: b.key, ListenPort: port, Peers: []backend.Peer{a.peer(a.addr())}}); err != nil {
		t.Fatal(err)
	}
	// The first packets go down the dead connection and trigger the reset.
	deadline := time.Now().Add(wait)
	for delivered := false; !delivered; {
		if time.Now().After(deadline) {
			t.Fatalf("a did not reach the restarted b within %v (idle timeout %v)", wait, idleTimeout)
		}
		a.tun.Outbound <- tuntest.Ping(b2.ip, a.ip)
		select {
		case <-b2.tun.Inbound:
			delivered = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	send(t, b2, a)
}

// TestClassicalRefused: a peer offering only the classical X25519 key
// exchange MUST NOT connect, whichever side dials, even with the right
// certificate; the same client offering X25519MLKEM768 connects.
func TestClassicalRefused(t *testing.T) {
	t.Run("dialing us", func(t *testing.T) {
		b := newEnd(t, 2, key.NewNode())
		k := keyBelow(b.key.Public()) // k dials b
		configure(t, b)
		configure(t, b, backend.Peer{PublicKey: k.Public(), BackendKey: PublicKey(k),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}})
		cert, err := certificate(signingKey(k))
		if err != nil {
			t.Fatal(err)
		}
		dial := func(curve tls.CurveID) error {
			conf := &tls.Config{
				MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{curve},
				Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn}, InsecureSkipVerify: true,
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, err := quicgo.DialAddr(ctx, b.addr().String(), conf, &quicgo.Config{EnableDatagrams: true})
			if err != nil {
				return err
			}
			defer c.CloseWithError(0, "")
			// TLS 1.3 client authentication completes after the client's
			// Finished: wait for the backend's verdict.
			return awaitAccepted(ctx, c)
		}
		if err := dial(tls.X25519); err == nil {
			t.Errorf("a client offering only X25519 connected")
		} else {
			t.Logf("X25519 only: %v", err)
		}
		if err := dial(tls.X25519MLKEM768); err != nil {
			t.Errorf("the same client offering X25519MLKEM768: %v", err)
		}
	})
	t.Run("dialed by us", func(t *testing.T) {
		a := newEnd(t, 1, key.NewNode())
		k := key.NewNode()
		for !dials(a.key.Public(), k.Public()) {
			k = key.NewNode()
		}
		cert, err := certificate(signingKey(k))
		if err != nil {
			t.Fatal(err)
		}
		var hellos atomic.Int32
		conf := &tls.Config{
			MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519},
			Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn},
			ClientAuth: tls.RequireAnyClientCert,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				hellos.Add(1)
				return nil, nil
			},
		}
		ln, err := quicgo.ListenAddr("127.0.0.1:0", conf, &quicgo.Config{EnableDatagrams: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept(context.Background())
			if err == nil {
				c.CloseWithError(0, "")
				accepted <- nil
			}
		}()
		configure(t, a)
		configure(t, a, backend.Peer{PublicKey: k.Public(), BackendKey: PublicKey(k),
			Endpoint:   ln.Addr().(*net.UDPAddr).AddrPort(),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}})
		// A second ClientHello means the first attempt failed.
		eventually(t, func() bool { return hellos.Load() >= 2 }, "the backend to dial twice")
		select {
		case <-accepted:
			t.Errorf("a server offering only X25519 accepted the backend's connection")
		default:
		}
		if st, _ := statsOf(t, a, k.Public()); !st.LastHandshake.IsZero() {
			t.Errorf("the backend reports a handshake with a classical-only server")
		}
	})
}

// TestCheckState: an established connection whose key exchange is not
// X25519MLKEM768, or not TLS 1.3, MUST be refused.
func TestCheckState(t *testing.T) {
	for _, cs := range []tls.ConnectionState{
		{Version: tls.VersionTLS13, CurveID: tls.X25519},
		{Version: tls.VersionTLS13, CurveID: tls.CurveP256},
		{Version: tls.VersionTLS13},
		{Version: tls.VersionTLS12, CurveID: tls.X25519MLKEM768},
	} {
		if err := checkState(cs); err == nil {
			t.Errorf("checkState(version %#x, %v) = nil, want an error", cs.Version, cs.CurveID)
		}
	}
	if err := checkState(tls.ConnectionState{Version: tls.VersionTLS13, CurveID: tls.X25519MLKEM768}); err != nil {
		t.Errorf("checkState(TLS 1.3, X25519MLKEM768) = %v, want nil", err)
	}
}

// TestPublicKey: the backend key MUST be the standard base64 of the
// Ed25519 key whose seed is HKDF-SHA256(node private key, no salt,
// "rustynet quic ed25519 v1"); the vector was computed independently
// (Python's cryptography package). The registry MUST report it.
func TestPublicKey(t *testing.T) {
	var k key.NodePrivate
	if err := k.UnmarshalText([]byte("privkey:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")); err != nil {
		t.Fatal(err)
	}
	const want = "9+R6VysZjmvrJNByXTIi9gdXth4MpL3yDdkehM7/vyg="
	if got := PublicKey(k); got != want {
		t.Errorf("PublicKey(k) = %q, want %q", got, want)
	}
	var r backend.Registry
	Register(&r)
	if got := r.PublicKey(Name, k); got != want {
		t.Errorf("Registry.PublicKey(%q, k) = %q, want %q", Name, got, want)
	}
}

// TestBadBackendKey: a peer without a usable backend key MUST stay
// configured (listed by Stats) and never connect; with another node's key
// nothing MUST be delivered to it. Packets for it wait (as WireGuard stages
// them during a handshake) and pass once the right key is configured.
func TestBadBackendKey(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	p := b.peer(b.addr())
	p.BackendKey = "not base64"
	configure(t, a, p)
	if _, ok := statsOf(t, a, b.key.Public()); !ok {
		t.Errorf("a peer with a malformed key is not listed")
	}
	p.BackendKey = PublicKey(key.NewNode()) // someone else's
	configure(t, a, p)
	ping := tuntest.Ping(b.ip, a.ip)
	a.tun.Outbound <- ping
	select {
	case <-b.tun.Inbound:
		t.Fatalf("a packet reached b while a expected another key for it")
	case <-time.After(time.Second):
	}
	configure(t, a, b.peer(b.addr()))
	expect(t, b, ping, "the staged ping once b's key is right")
}

// TestClose: Close MUST close the packet device, release every goroutine
// and socket, and MAY be called again; so for a backend never configured.
func TestClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := pair(t)
	send(t, a, b)
	port := a.b.Port()
	for range 2 {
		if err := a.b.Close(); err != nil {
			t.Errorf("a.Close() = %v", err)
		}
	}
	if _, err := a.tun.TUN().Read([][]byte{make([]byte, 100)}, []int{0}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("after Close, reading the device gives %v, want os.ErrClosed", err)
	}
	if err := a.b.Reconfig(&backend.Config{PrivateKey: a.key}); err == nil {
		t.Errorf("Reconfig after Close succeeded")
	}
	// The port is free again.
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
	if err != nil {
		t.Errorf("port %d still taken after Close: %v", port, err)
	} else {
		c.Close()
	}
	b.b.Close()
	b.b.Close()
	n := newEnd(t, 3, key.NewNode())
	n.b.Close()
	n.b.Close()
}

// TestRebind: changing the listen port MUST move the backend to it and
// traffic MUST resume.
func TestRebind(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	probe, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close()
	if err := b.b.Reconfig(&backend.Config{PrivateKey: b.key, ListenPort: port, Peers: []backend.Peer{a.peer(a.addr())}}); err != nil {
		t.Fatal(err)
	}
	if b.b.Port() != port {
		t.Fatalf("Port() = %d after rebinding to %d", b.b.Port(), port)
	}
	configure(t, a, b.peer(b.addr()))
	send(t, a, b)
	send(t, b, a)
}

// BenchmarkThroughput pushes packets from one device to the other through
// the backend over loopback, keeping up to 64 in flight, and reports the
// goodput in Mbit/s and the share of packets lost. size=1420 is the
// device MTU: such a packet does not fit one datagram (at most MaxMTU, 1404
// bytes, on a 1500-byte path) and travels in two fragments; size=1400 fits.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{tuntest.DefaultMTU, 1400} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			x, y := pair(b)
			send(b, x, y)
			throughput(b, x, y, packet4(x.ip, y.ip, size, 0))
		})
	}
}

// throughput sends b.N copies of pkt from x to y and reports the goodput.
func throughput(b *testing.B, x, y *end, pkt []byte) {
	const window = 64
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-y.tun.Inbound:
				if got.Add(1) == int64(b.N) {
					return
				}
				select {
				case tokens <- struct{}{}:
				default:
				}
			case <-time.After(time.Second):
				return // the rest was lost
			}
		}
	}()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		select {
		case <-tokens:
		case <-time.After(50 * time.Millisecond): // a lost packet's token
		}
		x.tun.Outbound <- pkt
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got.Load())*float64(len(pkt))*8/elapsed.Seconds()/1e6, "Mbit/s")
	b.ReportMetric(100*(1-float64(got.Load())/float64(b.N)), "%lost")
}

// BenchmarkHandshake measures one connection set-up with the backend's own
// TLS and QUIC settings (mutual Ed25519 certificates, X25519MLKEM768) over
// loopback: the time from dialing until the dialer may use the connection
// (the acceptor has verified it and said so), and the bytes and packets
// exchanged by then, both ways, as the dialer counts them (UDP payload).
func BenchmarkHandshake(b *testing.B) {
	ccert, scert, ckey, skey := identities(b)
	listen := func() (*quicgo.Transport, *net.UDPConn) {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		return &quicgo.Transport{Conn: s}, s
	}
	st, ss := listen()
	defer ss.Close()
	defer st.Close()
	ct, cs := listen()
	defer cs.Close()
	defer ct.Close()
	ln, err := st.Listen(serverTLS(scert, func(k edKey) bool { return k == ckey }), quicConfig(keepalive, false))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *quicgo.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			if err := sendAccepted(c); err != nil {
				b.Error(err)
			}
			accepted <- c
		}
	}()
	ctls := clientTLS(ccert, skey)
	var bytesTotal, packets uint64
	b.ResetTimer()
	for range b.N {
		c, err := ct.Dial(context.Background(), ss.LocalAddr(), ctls, quicConfig(keepalive, true))
		if err != nil {
			b.Fatal(err)
		}
		if err := awaitAccepted(context.Background(), c); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := checkConn(c); err != nil {
			b.Fatal(err)
		}
		s := c.ConnectionStats()
		bytesTotal += s.BytesSent + s.BytesReceived
		packets += s.PacketsSent + s.PacketsReceived
		c.CloseWithError(0, "")
		(<-accepted).CloseWithError(0, "")
		b.StartTimer()
	}
	b.ReportMetric(float64(bytesTotal)/float64(b.N), "B/handshake")
	b.ReportMetric(float64(packets)/float64(b.N), "packets/handshake")
}
