package quic

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// maxPacket is the largest IP packet carried (the IPv4 total length and
// the IPv6 payload length are 16-bit; jumbograms are not carried).
const maxPacket = 65535

// ipAddrs returns the source and destination of a well-formed IP packet:
// the version is 4 or 6 and the length in the header equals len(pkt). A
// packet that fails this is never sent nor delivered, so a truncated one
// cannot pass.
func ipAddrs(pkt []byte) (src, dst netip.Addr, ok bool) {
	if len(pkt) == 0 {
		return src, dst, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return src, dst, false
		}
		if ihl := int(pkt[0]&0x0f) * 4; ihl < 20 || ihl > len(pkt) {
			return src, dst, false
		}
		if int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt) {
			return src, dst, false
		}
		return netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < 40 || int(binary.BigEndian.Uint16(pkt[4:6]))+40 != len(pkt) {
			return src, dst, false
		}
		return netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return src, dst, false
}

// table maps addresses to peers by longest prefix match. It is built
// whole on Reconfig and read without locks.
type table struct {
	v4, v6 fib
}

type fib struct {
	bits []int // the prefix lengths present, longest first
	m    map[netip.Prefix]*peer
}

// newTable builds the table from the peers in order; when two peers claim
// the same prefix, the first one keeps it.
func newTable(peers []*peer) *table {
	t := &table{
		v4: fib{m: make(map[netip.Prefix]*peer)},
		v6: fib{m: make(map[netip.Prefix]*peer)},
	}
	for _, p := range peers {
		for _, pfx := range p.cfg.AllowedIPs {
			if !pfx.IsValid() {
				continue
			}
			pfx = pfx.Masked()
			f := &t.v6
			if pfx.Addr().Is4() {
				f = &t.v4
			}
			if _, taken := f.m[pfx]; taken {
				continue
			}
			f.m[pfx] = p
			if !slices.Contains(f.bits, pfx.Bits()) {
				f.bits = append(f.bits, pfx.Bits())
			}
		}
	}
	for _, f := range []*fib{&t.v4, &t.v6} {
		slices.Sort(f.bits)
		slices.Reverse(f.bits)
	}
	return t
}

// lookup returns the peer whose prefix containing a is the longest, or nil.
func (t *table) lookup(a netip.Addr) *peer {
	f := &t.v6
	if a.Is4() {
		f = &t.v4
	}
	for _, bits := range f.bits {
		pfx, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if p := f.m[pfx]; p != nil {
			return p
		}
	}
	return nil
}
