package quic

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// wire is a datagramConn whose maximum datagram is max; shrink, if set,
// lowers it to that value after the first datagram sent.
type wire struct {
	max, shrink int
	sent        [][]byte
}

func (w *wire) SendDatagram(d []byte) error {
	if len(d) > w.max {
		return &quicgo.DatagramTooLargeError{MaxDatagramPayloadSize: int64(w.max)}
	}
	w.sent = append(w.sent, bytes.Clone(d))
	if w.shrink != 0 {
		w.max, w.shrink = w.shrink, 0
	}
	return nil
}

// deliver runs datagrams through a receiver as receive does and returns
// the packets it would write to the device.
func deliver(r *reassembler, ds [][]byte, now time.Time) [][]byte {
	var out [][]byte
	for _, d := range ds {
		switch d[0] >> 4 {
		case 4, 6:
			out = append(out, d)
		default:
			if p := r.add(d, now); p != nil {
				out = append(out, p.copyTo(make([]byte, p.size)))
			}
		}
	}
	return out
}

// TestFragmentRoundTrip: every packet size up to the IP maximum MUST come
// out of fragmentation and reassembly, in any arrival order, exactly as it
// went in, and only the packets that do not fit MUST be fragmented.
func TestFragmentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src, dst := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2")
	for _, limit := range []int{1200, 1412} {
		var r reassembler
		w := &wire{max: limit}
		f := fragmenter{conn: w}
		sizes := []int{20, 28, limit - 1, limit, limit + 1, 1420, 9000, maxPacket}
		for range 50 {
			sizes = append(sizes, 20+rng.IntN(maxPacket-20))
		}
		for _, size := range sizes {
			pkt := packet4(src, dst, size, uint16(size))
			w.sent = nil
			if err := f.send(pkt); err != nil {
				t.Fatalf("send(%d bytes, max %d) = %v", size, limit, err)
			}
			if whole := size <= limit; whole != (len(w.sent) == 1 && w.sent[0][0]>>4 == 4) {
				t.Errorf("%d-byte packet with max %d: sent as %d datagrams", size, limit, len(w.sent))
			}
			rng.Shuffle(len(w.sent), func(i, j int) { w.sent[i], w.sent[j] = w.sent[j], w.sent[i] })
			got := deliver(&r, w.sent, time.Now())
			if len(got) != 1 || !bytes.Equal(got[0], pkt) {
				t.Fatalf("%d-byte packet with max %d: %d packets out, want it once, intact", size, limit, len(got))
			}
		}
		if len(r.pending) != 0 || r.bytes != 0 {
			t.Errorf("after complete packets, %d pending (%d bytes), want none", len(r.pending), r.bytes)
		}
	}
}

// TestFragmentMaxShrinks: when the maximum datagram shrinks while a
// packet is being fragmented, the packet MUST be sent again in smaller
// fragments and arrive once, intact.
func TestFragmentMaxShrinks(t *testing.T) {
	w := &wire{max: 1200, shrink: 600}
	f := fragmenter{conn: w}
	pkt := packet4(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 3000, 1)
	if err := f.send(pkt); err != nil {
		t.Fatal(err)
	}
	var r reassembler
	got := deliver(&r, w.sent, time.Now())
	if len(got) != 1 || !bytes.Equal(got[0], pkt) {
		t.Fatalf("got %d packets, want the packet once, intact", len(got))
	}
}

// TestReassemblyNeverPartial: a packet missing a fragment, or whose
// fragments disagree, MUST NOT be delivered, duplicates MUST NOT deliver
// it twice, and malformed fragments MUST be dropped.
func TestReassemblyNeverPartial(t *testing.T) {
	w := &wire{max: 500}
	f := fragmenter{conn: w}
	pkt := packet4(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1400, 1)
	if err := f.send(pkt); err != nil {
		t.Fatal(err)
	}
	frags := w.sent
	if len(frags) != 3 {
		t.Fatalf("%d fragments, want 3", len(frags))
	}
	now := time.Now()

	var r reassembler
	if got := deliver(&r, frags[:2], now); len(got) != 0 {
		t.Errorf("two of three fragments delivered %d packets", len(got))
	}
	// A fragment claiming another count discards what was gathered.
	odd := bytes.Clone(frags[2])
	odd[6] = 4
	if got := deliver(&r, [][]byte{odd, frags[2]}, now); len(got) != 0 {
		t.Errorf("inconsistent fragments delivered %d packets", len(got))
	}
	if got := deliver(&r, [][]byte{frags[0], frags[1], frags[1], frags[2], frags[2]}, now); len(got) != 1 || !bytes.Equal(got[0], pkt) {
		t.Errorf("with duplicates: %d packets, want 1, intact", len(got))
	}
	for _, bad := range [][]byte{
		{typeFragment, 0, 0, 0, 9, 0, 2},          // no data
		{typeFragment, 0, 0, 0, 9, 0, 1, 0x45},    // count 1
		{typeFragment, 0, 0, 0, 9, 2, 2, 0x45},    // index beyond count
		{typeFragment, 0, 0, 0, 9, 0, 0, 0x45},    // count 0
		{0x02, 0, 0, 0, 9, 0, 2, 0x45},            // unknown type
		{typeFragment, 0, 0, 0, 9, 0, 2, 0x45, 0}, // fine alone, never completed
	} {
		if got := deliver(&r, [][]byte{bad}, now); len(got) != 0 {
			t.Errorf("malformed fragment %x delivered a packet", bad)
		}
	}
	// The last one, and the packet the trailing duplicates began, wait,
	// then time out.
	if len(r.pending) != 2 {
		t.Errorf("%d packets pending, want 2", len(r.pending))
	}
	r.add(frags[0], now.Add(2*reassemblyTimeout))
	if len(r.pending) != 1 || r.bytes != len(frags[0])-fragHeader {
		t.Errorf("after the timeout: %d pending, %d bytes; want only the new one", len(r.pending), r.bytes)
	}
	// Fragments of one packet arriving across the timeout never join.
	if got := deliver(&r, frags[1:], now.Add(4*reassemblyTimeout)); len(got) != 0 {
		t.Errorf("fragments split by the timeout delivered %d packets", len(got))
	}
}

// TestReassemblyBounded: however many packets are left incomplete, the
// reassembly buffer MUST stay within maxPending packets and
// maxPendingBytes bytes.
func TestReassemblyBounded(t *testing.T) {
	var r reassembler
	now := time.Now()
	part := make([]byte, fragHeader+60000)
	part[0], part[6] = typeFragment, 2
	for id := range 1000 {
		part[1], part[2] = byte(id>>8), byte(id)
		r.add(bytes.Clone(part), now)
		if len(r.pending) > maxPending || r.bytes > maxPendingBytes {
			t.Fatalf("after %d incomplete packets: %d pending, %d bytes", id+1, len(r.pending), r.bytes)
		}
	}
}

// TestIPAddrs: only well-formed IPv4 and IPv6 packets whose header length
// matches their size MUST be accepted.
func TestIPAddrs(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	a6, b6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	p4, p6 := packet4(a, b, 100, 1), packet6(a6, b6, 100, 1)
	if src, dst, ok := ipAddrs(p4); !ok || src != a || dst != b {
		t.Errorf("ipAddrs(IPv4) = %v, %v, %t", src, dst, ok)
	}
	if src, dst, ok := ipAddrs(p6); !ok || src != a6 || dst != b6 {
		t.Errorf("ipAddrs(IPv6) = %v, %v, %t", src, dst, ok)
	}
	badIHL := bytes.Clone(p4)
	badIHL[0] = 0x44
	for name, p := range map[string][]byte{
		"empty": nil, "IPv4 truncated": p4[:99], "IPv6 truncated": p6[:99],
		"IPv4 padded": append(bytes.Clone(p4), 0), "IPv6 padded": append(bytes.Clone(p6), 0),
		"IPv4 header only": p4[:19], "IPv4 IHL 4": badIHL, "version 5": append([]byte{0x55}, p4[1:]...),
	} {
		if _, _, ok := ipAddrs(p); ok {
			t.Errorf("ipAddrs(%s) accepted it", name)
		}
	}
}

// TestTable: lookups MUST pick the longest matching prefix, per family,
// and the first peer to claim a prefix keeps it.
func TestTable(t *testing.T) {
	p1, p2, p3 := &peer{}, &peer{}, &peer{}
	p1.cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	p2.cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.1.2.3/32")}
	p3.cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("0.0.0.0/0")}
	tb := newTable([]*peer{p1, p2, p3})
	for addr, want := range map[string]*peer{
		"10.9.9.9": p1, "10.1.9.9": p2, "10.1.2.3": p2, "192.0.2.1": p3, "fd12::1": p1, "2001:db8::1": nil,
	} {
		if got := tb.lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("lookup(%s) = %p, want %p", addr, got, want)
		}
	}
}
