// Package filter enforces the direction of ACL rules on the packet device.
// A peer that this node may reach, but that may not reach this node, can
// answer connections the node opens and nothing else: the filter records
// the flows the node sends to such peers, and drops packets from them that
// are not replies to one. Packets from every other peer pass untouched.
//
// It also holds back the traffic of peers that must first agree a
// post-quantum preshared key (node/pq, pq: require): to and from such a
// gated peer only the exchange passes (TCP to the exchange port of either
// side, and its replies). Every peer, restricted or not, may open the
// exchange with this node: it is part of the tunnel, as WireGuard's own
// handshakes are.
//
// It wraps the tun.Device the backend is handed, so it works the same
// under every backend and on both kernel and netstack devices.
package filter

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// Flow lifetimes: how long after the node last sent on a flow a restricted
// peer may still answer on it.
const (
	tcpFlowTTL   = 5 * time.Minute
	otherFlowTTL = time.Minute
	sweepEvery   = 30 * time.Second
	maxFlows     = 1 << 16
)

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// flow identifies a flow as the node sent it: from local to peer.
type flow struct {
	proto      uint8
	local      netip.Addr
	peer       netip.Addr
	lport, pid uint16 // local port (or ICMP echo ID), peer port
}

// Device is a tun.Device that filters packets from restricted peers.
type Device struct {
	tun.Device

	active  atomic.Bool // any restricted or gated peer at all
	gating  atomic.Bool // any gated peer
	dropped atomic.Uint64

	mu         sync.Mutex
	restricted map[netip.Addr]bool
	gated      map[netip.Addr]bool
	port       uint16 // the post-quantum exchange's TCP port; 0: none
	flows      map[flow]time.Time
	lastSweep  time.Time
}

// Wrap returns d with the filter in front of it; it passes everything
// until SetRestricted names a peer.
func Wrap(d tun.Device) *Device {
	return &Device{Device: d, restricted: map[netip.Addr]bool{}, gated: map[netip.Addr]bool{}, flows: map[flow]time.Time{}}
}

// SetRestricted replaces the set of peer addresses that may not open
// connections to this node.
func (d *Device) SetRestricted(addrs []netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.restricted = make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		d.restricted[a] = true
	}
	d.active.Store(len(d.restricted)+len(d.gated) > 0)
}

// SetGated sets the post-quantum exchange's TCP port (0: none) and
// replaces the set of peer addresses whose traffic waits for it: to and
// from those, only the exchange passes.
func (d *Device) SetGated(port uint16, addrs []netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.port = port
	d.gated = make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		d.gated[a] = true
	}
	d.gating.Store(len(d.gated) > 0)
	d.active.Store(len(d.restricted)+len(d.gated) > 0)
}

// Dropped counts the packets the filter has refused.
func (d *Device) Dropped() uint64 { return d.dropped.Load() }

// Read reads packets the node sends, records the flows to restricted and
// gated peers, and holds back what a gated peer may not be sent yet.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := d.Device.Read(bufs, sizes, offset)
		if n == 0 || !d.active.Load() {
			return n, err
		}
		now := time.Now()
		gating := d.gating.Load()
		kept := 0
		// A batch is mostly packets of one flow (a TCP segment offload
		// split into MSS-sized packets): a packet whose header is the
		// previous one's has its verdict, and its flow was recorded with
		// this batch's time already, so the maps are not read again.
		var last header
		lastOK, lastKeep := false, false
		d.mu.Lock()
		for i := range n {
			pkt := bufs[i][offset : offset+sizes[i]]
			h, ok := parse(pkt)
			keep := true
			if ok && lastOK && h == last {
				keep = lastKeep
			} else {
				if ok && gating && d.gated[h.dst] && !d.exchangeOutLocked(h) {
					keep = false
				} else if ok && (d.restricted[h.dst] || d.gated[h.dst]) && len(d.flows) < maxFlows {
					d.flows[flow{h.proto, h.src, h.dst, h.sport, h.dport}] = now
				}
				last, lastOK, lastKeep = h, ok, keep
			}
			if !keep {
				d.dropped.Add(1)
				continue
			}
			if kept != i {
				copy(bufs[kept][offset:], pkt)
				sizes[kept] = sizes[i]
			}
			kept++
		}
		if now.Sub(d.lastSweep) > sweepEvery {
			d.sweepLocked(now)
		}
		d.mu.Unlock()
		if kept > 0 || err != nil {
			return kept, err
		}
		// Everything read was held back: read on rather than hand the
		// backend an empty batch.
	}
}

// exchangeOutLocked reports whether h, sent by this node, is part of a
// post-quantum exchange: TCP to the peer's exchange port, or from this
// node's (its responder answering).
func (d *Device) exchangeOutLocked(h header) bool {
	return d.port != 0 && h.proto == protoTCP && !h.fragment && (h.dport == d.port || h.sport == d.port)
}

// Write delivers packets from peers, dropping those from restricted peers
// that do not answer a recorded flow.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if !d.active.Load() {
		return d.Device.Write(bufs, offset)
	}
	now := time.Now()
	// keep stays nil while every packet passes: then the batch goes to the
	// device as it came, with nothing allocated. As in Read, a packet whose
	// header is the previous one's has its verdict (Write changes no
	// state).
	var keep [][]byte
	var last header
	lastOK, lastAllow := false, false
	d.mu.Lock()
	for i, b := range bufs {
		pkt := b[offset:]
		h, ok := parse(pkt)
		var allow bool
		if ok && lastOK && h == last {
			allow = lastAllow
		} else {
			allow = d.allowParsedLocked(h, ok, len(pkt), now)
			last, lastOK, lastAllow = h, ok, allow
		}
		switch {
		case !allow:
			if keep == nil {
				keep = make([][]byte, i, len(bufs))
				copy(keep, bufs[:i])
			}
			d.dropped.Add(1)
		case keep != nil:
			keep = append(keep, b)
		}
	}
	d.mu.Unlock()
	if keep == nil {
		keep = bufs
	}
	if len(keep) == 0 {
		return len(bufs), nil
	}
	if _, err := d.Device.Write(keep, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// allowParsedLocked reports whether a packet from a peer passes: h and ok
// are what parse made of it, size its length.
func (d *Device) allowParsedLocked(h header, ok bool, size int, now time.Time) bool {
	if !ok {
		// Not IP: nothing a peer could use to reach us. Let the stack
		// decide, unless the source is unknown.
		return size == 0
	}
	if d.gated[h.src] {
		// Only the exchange: to this node's responder, or replies on a
		// connection this node opened to the peer's.
		if d.port == 0 || h.proto != protoTCP || h.fragment {
			return false
		}
		if h.dport == d.port {
			return true
		}
		t, ok := d.flows[flow{h.proto, h.dst, h.src, h.dport, h.sport}]
		return ok && h.sport == d.port && now.Sub(t) < ttl(h.proto)
	}
	if !d.restricted[h.src] {
		return true
	}
	if d.port != 0 && h.proto == protoTCP && !h.fragment && h.dport == d.port {
		return true // a restricted peer may still open the exchange
	}
	var key flow
	switch h.proto {
	case protoTCP, protoUDP:
		if h.fragment {
			// Later fragments carry no ports: allow them if any flow
			// to the peer is live.
			return d.anyFlowLocked(h.dst, h.src, now)
		}
		key = flow{h.proto, h.dst, h.src, h.dport, h.sport}
	case protoICMP, protoICMPv6:
		if !h.echoReply {
			return false
		}
		key = flow{h.proto, h.dst, h.src, h.sport, 0}
	default:
		return false
	}
	t, ok := d.flows[key]
	return ok && now.Sub(t) < ttl(h.proto)
}

func (d *Device) anyFlowLocked(local, peer netip.Addr, now time.Time) bool {
	for f, t := range d.flows {
		if f.local == local && f.peer == peer && now.Sub(t) < ttl(f.proto) {
			return true
		}
	}
	return false
}

func (d *Device) sweepLocked(now time.Time) {
	d.lastSweep = now
	for f, t := range d.flows {
		if now.Sub(t) >= ttl(f.proto) || !d.restricted[f.peer] && !d.gated[f.peer] {
			delete(d.flows, f)
		}
	}
}

func ttl(proto uint8) time.Duration {
	if proto == protoTCP {
		return tcpFlowTTL
	}
	return otherFlowTTL
}

// header is what the filter reads of a packet. For ICMP echo, sport holds
// the echo identifier.
type header struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	fragment     bool // a non-first fragment
	echoReply    bool
}

// parse reads the IPv4 or IPv6 header and, where present, the ports or the
// ICMP echo identifier.
func parse(p []byte) (header, bool) {
	var h header
	if len(p) < 1 {
		return h, false
	}
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return h, false
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return h, false
		}
		h.proto = p[9]
		h.src = netip.AddrFrom4([4]byte(p[12:16]))
		h.dst = netip.AddrFrom4([4]byte(p[16:20]))
		if binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
			h.fragment = true
			return h, true
		}
		l4 = p[ihl:]
	case 6:
		if len(p) < 40 {
			return h, false
		}
		h.proto = p[6]
		h.src = netip.AddrFrom16([16]byte(p[8:24]))
		h.dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return h, false
	}
	switch h.proto {
	case protoTCP, protoUDP:
		if len(l4) >= 4 {
			h.sport = binary.BigEndian.Uint16(l4[0:2])
			h.dport = binary.BigEndian.Uint16(l4[2:4])
		}
	case protoICMP, protoICMPv6:
		if len(l4) >= 6 {
			typ := l4[0]
			// Echo request/reply: 8/0 for ICMP, 128/129 for ICMPv6.
			if typ == 8 || typ == 0 || typ == 128 || typ == 129 {
				h.sport = binary.BigEndian.Uint16(l4[4:6])
			}
			h.echoReply = typ == 0 || typ == 129
		}
	}
	return h, true
}
