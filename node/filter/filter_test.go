package filter

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// fakeDev hands out queued packets on Read and records Writes.
type fakeDev struct {
	out     [][]byte // packets the OS sends (returned by Read)
	written [][]byte
}

func (f *fakeDev) File() *os.File { return nil }
func (f *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) && len(f.out) > 0 {
		sizes[n] = copy(bufs[n][offset:], f.out[0])
		f.out = f.out[1:]
		n++
	}
	return n, nil
}
func (f *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		f.written = append(f.written, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}
func (f *fakeDev) MTU() (int, error)        { return 1420, nil }
func (f *fakeDev) Name() (string, error)    { return "fake", nil }
func (f *fakeDev) Events() <-chan tun.Event { return nil }
func (f *fakeDev) Close() error             { return nil }
func (f *fakeDev) BatchSize() int           { return 1 }

var (
	local = netip.MustParseAddr("100.64.0.1")
	peer  = netip.MustParseAddr("100.64.0.2")
	other = netip.MustParseAddr("100.64.0.3")
)

// ipv4 builds an IPv4 packet with an L4 header of 8 bytes: ports for TCP and
// UDP, type/code/checksum/id for ICMP.
func ipv4(proto uint8, src, dst netip.Addr, a, b uint16) []byte {
	p := make([]byte, 28)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], 28)
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	if proto == protoICMP {
		p[20] = byte(a) // type
		binary.BigEndian.PutUint16(p[24:26], b)
	} else {
		binary.BigEndian.PutUint16(p[20:22], a)
		binary.BigEndian.PutUint16(p[22:24], b)
	}
	return p
}

// deliver writes one packet from the tunnel and reports whether it reached
// the device.
func deliver(d *Device, f *fakeDev, pkt []byte) bool {
	before := len(f.written)
	d.Write([][]byte{pkt}, 0)
	return len(f.written) > before
}

// send passes one packet the node sends through Read.
func send(d *Device, f *fakeDev, pkt []byte) {
	f.out = append(f.out, pkt)
	buf := [][]byte{make([]byte, 1500)}
	d.Read(buf, []int{0}, 0)
}

func TestRestrictedPeerMayOnlyAnswer(t *testing.T) {
	f := &fakeDev{}
	d := Wrap(f)
	d.SetRestricted([]netip.Addr{peer})

	if deliver(d, f, ipv4(protoTCP, peer, local, 40000, 22)) {
		t.Error("a restricted peer opened a TCP connection to the node")
	}
	if deliver(d, f, ipv4(protoICMP, peer, local, 8, 7)) {
		t.Error("a restricted peer's echo request got through")
	}
	if !deliver(d, f, ipv4(protoTCP, other, local, 40000, 22)) {
		t.Error("an unrestricted peer's connection was dropped")
	}

	send(d, f, ipv4(protoTCP, local, peer, 50000, 80))
	if !deliver(d, f, ipv4(protoTCP, peer, local, 80, 50000)) {
		t.Error("the reply to the node's own TCP connection was dropped")
	}
	if deliver(d, f, ipv4(protoTCP, peer, local, 80, 50001)) {
		t.Error("a packet to another port passed as a reply")
	}
	send(d, f, ipv4(protoUDP, local, peer, 5353, 53))
	if !deliver(d, f, ipv4(protoUDP, peer, local, 53, 5353)) {
		t.Error("the reply to the node's own UDP flow was dropped")
	}
	send(d, f, ipv4(protoICMP, local, peer, 8, 99))
	if !deliver(d, f, ipv4(protoICMP, peer, local, 0, 99)) {
		t.Error("the echo reply to the node's ping was dropped")
	}
	if deliver(d, f, ipv4(protoICMP, peer, local, 0, 100)) {
		t.Error("an echo reply with another ID passed")
	}
	if got := d.Dropped(); got != 4 {
		t.Errorf("Dropped() = %d, want 4", got)
	}

	d.SetRestricted(nil)
	if !deliver(d, f, ipv4(protoTCP, peer, local, 40000, 22)) {
		t.Error("with no restricted peers a packet was dropped")
	}
}

func TestParseRejectsShortPackets(t *testing.T) {
	for _, p := range [][]byte{nil, {0x45}, make([]byte, 19), {0x60, 0, 0}, {0x46, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}} {
		if _, ok := parse(p); ok && len(p) < 20 {
			t.Errorf("parse(%x) accepted a short packet", p)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ipv4(protoTCP, peer, local, 1, 2))
	f.Add(ipv4(protoICMP, peer, local, 0, 2))
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, p []byte) {
		fd := &fakeDev{}
		d := Wrap(fd)
		d.SetRestricted([]netip.Addr{peer})
		parse(p)
		d.Write([][]byte{p}, 0)
	})
}

// readAll passes packets the node sends through one Read and returns what
// came out.
func readAll(d *Device, f *fakeDev, pkts ...[]byte) [][]byte {
	f.out = append(f.out, pkts...)
	bufs := make([][]byte, len(pkts))
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, len(pkts))
	n, _ := d.Read(bufs, sizes, 0)
	var out [][]byte
	for i := range n {
		out = append(out, bufs[i][:sizes[i]])
	}
	return out
}

// TestGatedPeerPassesOnlyTheExchange: to and from a peer that waits for
// its post-quantum key, only the exchange passes, both ways; other peers
// are untouched, and a batch keeps its order.
func TestGatedPeerPassesOnlyTheExchange(t *testing.T) {
	const port = 5362
	f := &fakeDev{}
	d := Wrap(f)
	d.SetGated(port, []netip.Addr{peer})

	for _, c := range []struct {
		pkt  []byte
		pass bool
		what string
	}{
		{ipv4(protoTCP, local, peer, 50000, port), true, "the node opening the exchange"},
		{ipv4(protoTCP, local, peer, port, 41000), true, "the node's responder answering"},
		{ipv4(protoTCP, local, peer, 50000, 80), false, "TCP to another port"},
		{ipv4(protoUDP, local, peer, 5353, 53), false, "UDP"},
		{ipv4(protoICMP, local, peer, 8, 1), false, "a ping"},
		{ipv4(protoTCP, local, other, 50000, 80), true, "TCP to a peer that is not gated"},
	} {
		if got := len(readAll(d, f, c.pkt)) == 1; got != c.pass {
			t.Errorf("sending %s: passed %v, want %v", c.what, got, c.pass)
		}
	}
	for _, c := range []struct {
		pkt  []byte
		pass bool
		what string
	}{
		{ipv4(protoTCP, peer, local, 41000, port), true, "the peer opening the exchange"},
		{ipv4(protoTCP, peer, local, port, 50000), true, "the reply on the exchange the node opened"},
		{ipv4(protoTCP, peer, local, port, 50001), false, "a packet from the peer's exchange port to another of the node's ports"},
		{ipv4(protoTCP, peer, local, 40000, 22), false, "TCP to another port"},
		{ipv4(protoUDP, peer, local, 53, 5353), false, "UDP"},
		{ipv4(protoTCP, other, local, 40000, 22), true, "TCP from a peer that is not gated"},
	} {
		if got := deliver(d, f, c.pkt); got != c.pass {
			t.Errorf("receiving %s: passed %v, want %v", c.what, got, c.pass)
		}
	}

	// A batch: what is held back leaves no gap, and the order stays.
	a, b := ipv4(protoTCP, local, other, 1, 2), ipv4(protoTCP, local, other, 3, 4)
	out := readAll(d, f, a, ipv4(protoUDP, local, peer, 1, 2), b)
	if len(out) != 2 || string(out[0]) != string(a) || string(out[1]) != string(b) {
		t.Errorf("a batch of 3 with one held back came out as %d packets", len(out))
	}

	d.SetGated(port, nil)
	if !deliver(d, f, ipv4(protoTCP, peer, local, 40000, 22)) || len(readAll(d, f, ipv4(protoUDP, local, peer, 1, 2))) != 1 {
		t.Error("with no gated peer, traffic was still held back")
	}
}

// TestRestrictedPeerMayOpenTheExchange: a peer that may not open
// connections to the node may still open the post-quantum exchange.
func TestRestrictedPeerMayOpenTheExchange(t *testing.T) {
	f := &fakeDev{}
	d := Wrap(f)
	d.SetRestricted([]netip.Addr{peer})
	d.SetGated(5362, nil)
	if !deliver(d, f, ipv4(protoTCP, peer, local, 41000, 5362)) {
		t.Error("a restricted peer could not open the exchange")
	}
	if deliver(d, f, ipv4(protoTCP, peer, local, 41000, 22)) {
		t.Error("a restricted peer opened another connection")
	}
}
