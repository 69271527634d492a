// Package ipam hands out mesh addresses: one IPv4 address from a CGNAT
// prefix (100.64.0.0/10 by default) and one IPv6 address from a ULA prefix,
// at the same offset in each, so a node's two addresses are easy to relate.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Default prefixes.
var (
	DefaultIPv4 = netip.MustParsePrefix("100.64.0.0/10")
	DefaultIPv6 = netip.MustParsePrefix("fd52:7573:7479::/48")
)

// ErrExhausted is returned when every address of the pool is in use.
var ErrExhausted = errors.New("address pool exhausted")

// Pool is a pair of prefixes. Offsets 1 to Size() are usable; offset 0 (the
// network address) and the last offset of the IPv4 prefix (its broadcast
// address) are never handed out.
type Pool struct {
	v4, v6 netip.Prefix
	size   uint64
}

// NewPool checks the prefixes and returns a pool over them.
func NewPool(v4, v6 netip.Prefix) (*Pool, error) {
	if !v4.IsValid() || !v4.Addr().Is4() {
		return nil, fmt.Errorf("IPv4 prefix %s: not an IPv4 prefix", v4)
	}
	if !v6.IsValid() || !v6.Addr().Is6() || v6.Addr().Is4In6() {
		return nil, fmt.Errorf("IPv6 prefix %s: not an IPv6 prefix", v6)
	}
	if v4.Masked() != v4 {
		return nil, fmt.Errorf("IPv4 prefix %s has host bits set (want %s)", v4, v4.Masked())
	}
	if v6.Masked() != v6 {
		return nil, fmt.Errorf("IPv6 prefix %s has host bits set (want %s)", v6, v6.Masked())
	}
	if v4.Bits() > 30 {
		return nil, fmt.Errorf("IPv4 prefix %s is too small: want /30 or shorter", v4)
	}
	if v6.Bits() > 120 {
		return nil, fmt.Errorf("IPv6 prefix %s is too small: want /120 or shorter", v6)
	}
	size := uint64(1)<<(32-v4.Bits()) - 2
	if hb := 128 - v6.Bits(); hb < 64 {
		if s6 := uint64(1)<<hb - 2; s6 < size {
			size = s6
		}
	}
	return &Pool{v4: v4, v6: v6, size: size}, nil
}

// Size is the number of usable offsets.
func (p *Pool) Size() uint64 { return p.size }

// Prefixes returns the IPv4 and IPv6 prefixes.
func (p *Pool) Prefixes() (v4, v6 netip.Prefix) { return p.v4, p.v6 }

// Addrs returns the addresses at offset i (1 <= i <= Size()).
func (p *Pool) Addrs(i uint64) (v4, v6 netip.Addr) {
	b4 := p.v4.Addr().As4()
	binary.BigEndian.PutUint32(b4[:], binary.BigEndian.Uint32(b4[:])+uint32(i))
	b6 := p.v6.Addr().As16()
	binary.BigEndian.PutUint64(b6[8:], binary.BigEndian.Uint64(b6[8:])+i)
	return netip.AddrFrom4(b4), netip.AddrFrom16(b6)
}

// Contains reports whether a is in one of the pool's prefixes.
func (p *Pool) Contains(a netip.Addr) bool { return p.v4.Contains(a) || p.v6.Contains(a) }

// Allocate finds the first free offset after cursor, wrapping around, so
// that a freed address is reused only after every other one. taken reports
// whether an address is in use. It returns the offset (the next cursor) and
// its addresses, or ErrExhausted.
func (p *Pool) Allocate(cursor uint64, taken func(netip.Addr) (bool, error)) (uint64, netip.Addr, netip.Addr, error) {
	for n := uint64(0); n < p.size; n++ {
		i := (cursor+n)%p.size + 1
		v4, v6 := p.Addrs(i)
		t4, err := taken(v4)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		if t4 {
			continue
		}
		t6, err := taken(v6)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		if !t6 {
			return i, v4, v6, nil
		}
	}
	return 0, netip.Addr{}, netip.Addr{}, fmt.Errorf("%w: all %d addresses of %s and %s are in use", ErrExhausted, p.size, p.v4, p.v6)
}
