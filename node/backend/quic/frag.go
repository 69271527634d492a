package quic

import (
	"encoding/binary"
	"errors"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// The payload of every QUIC datagram is an IP packet, whole (its first
// nibble is the IP version, 4 or 6), a heartbeat (typeHeartbeat and
// padding, ignored), or a fragment of an IP packet:
//
//	offset  size  field
//	0       1     type: typeFragment (high nibble 0, no IP version)
//	1       4     packet id, big-endian, chosen by the sender per connection
//	5       1     index of this fragment, from 0
//	6       1     count of fragments, 2 to 255
//	7       1+    the fragment's bytes of the packet
//
// Anything else is dropped. A packet is fragmented only when it does not
// fit the connection's current maximum datagram payload (quic-go derives
// it from the path MTU), into count nearly equal parts sent in order. The
// receiver joins the parts in index order and delivers the packet only if
// its IP header's length then matches its size.
const (
	typeFragment = 0x01
	fragHeader   = 7
	maxFragments = 255

	// The dialer sends a heartbeat every keep-alive period. Unlike QUIC's
	// own keep-alive PING it is large enough (a QUIC packet of over 42
	// bytes) that an acceptor that lost the connection, having restarted,
	// answers it with a stateless reset, and the dialer redials at once.
	typeHeartbeat = 0x02
	heartbeatSize = 48

	// Reassembly is bounded per connection: at most maxPending packets
	// and maxPendingBytes bytes wait for their other fragments, for at
	// most reassemblyTimeout; the oldest go first.
	maxPending        = 64
	maxPendingBytes   = 1 << 20
	reassemblyTimeout = 2 * time.Second

	// reprobeEvery is how many packets are fragmented by the last known
	// maximum datagram size before trying whole packets again, in case the
	// path MTU grew.
	reprobeEvery = 256
)

var errTooLarge = errors.New("packet too large for the path")

// datagramConn is the part of a quic-go connection the fragmenter uses.
type datagramConn interface {
	SendDatagram([]byte) error
}

// fragmenter sends packets on one connection, fragmenting them when
// needed. It is used by one goroutine.
type fragmenter struct {
	conn   datagramConn
	max    int // the last maximum datagram payload reported; 0 if none
	probe  int // packets left before trying whole packets again
	id     uint32
	packet []byte // scratch for one fragment
}

// send sends pkt, whole if it fits, else in fragments.
func (f *fragmenter) send(pkt []byte) error {
	if f.max == 0 || len(pkt) <= f.max || f.probe <= 0 {
		err := f.conn.SendDatagram(pkt)
		var tl *quicgo.DatagramTooLargeError
		if !errors.As(err, &tl) {
			if err == nil && f.max != 0 {
				f.max = max(f.max, len(pkt)) // the path MTU grew
			}
			return err
		}
		f.max, f.probe = int(tl.MaxDatagramPayloadSize), reprobeEvery
	}
	f.probe--
	// The maximum can shrink between two datagrams (quic-go lowers it
	// when the path changes); start over with the new one, a few times.
	for range 3 {
		err := f.sendFragments(pkt)
		var tl *quicgo.DatagramTooLargeError
		if !errors.As(err, &tl) {
			return err
		}
		f.max = int(tl.MaxDatagramPayloadSize)
	}
	return errTooLarge
}

func (f *fragmenter) sendFragments(pkt []byte) error {
	room := f.max - fragHeader
	if room < 1 {
		return errTooLarge
	}
	n := (len(pkt) + room - 1) / room
	if n < 2 {
		n = 2 // a receiver takes a lone fragment for a malformed one
	}
	if n > maxFragments {
		return errTooLarge
	}
	size := (len(pkt) + n - 1) / n
	if cap(f.packet) < fragHeader+size {
		f.packet = make([]byte, fragHeader+size)
	}
	f.id++
	for i := range n {
		part := pkt[i*size : min((i+1)*size, len(pkt))]
		d := f.packet[:fragHeader+len(part)]
		d[0] = typeFragment
		binary.BigEndian.PutUint32(d[1:5], f.id)
		d[5], d[6] = byte(i), byte(n)
		copy(d[fragHeader:], part)
		if err := f.conn.SendDatagram(d); err != nil {
			return err
		}
	}
	return nil
}

// reassembler rebuilds fragmented packets of one connection. It is used
// by one goroutine.
type reassembler struct {
	pending map[uint32]*partial
	bytes   int
}

type partial struct {
	parts [][]byte // by index; nil until received
	got   int
	size  int
	start time.Time
}

// add takes one fragment d (which it may keep) and returns the packet it
// completes, to be copied out with copyTo. It returns nil for an
// incomplete packet or a malformed or inconsistent fragment; the fragments
// of a packet that turns out inconsistent are all discarded.
func (r *reassembler) add(d []byte, now time.Time) *partial {
	if len(d) <= fragHeader || d[0] != typeFragment {
		return nil
	}
	id := binary.BigEndian.Uint32(d[1:5])
	idx, n := int(d[5]), int(d[6])
	data := d[fragHeader:]
	if n < 2 || idx >= n {
		return nil
	}
	if r.pending == nil {
		r.pending = make(map[uint32]*partial)
	}
	p := r.pending[id]
	if p != nil && (len(p.parts) != n || now.Sub(p.start) > reassemblyTimeout) {
		r.drop(id, p)
		p = nil
	}
	if p == nil {
		r.expire(now)
		for len(r.pending) >= maxPending || (len(r.pending) > 0 && r.bytes+len(data) > maxPendingBytes) {
			r.evictOldest()
		}
		p = &partial{parts: make([][]byte, n), start: now}
		r.pending[id] = p
	}
	if p.parts[idx] != nil {
		return nil // a duplicate: QUIC does not replay, so a sender bug
	}
	if p.size+len(data) > maxPacket {
		r.drop(id, p)
		return nil
	}
	p.parts[idx] = data
	p.got++
	p.size += len(data)
	r.bytes += len(data)
	if p.got < n {
		return nil
	}
	r.drop(id, p)
	return p
}

// copyTo writes the complete packet into dst, which has room for p.size
// bytes, and returns it.
func (p *partial) copyTo(dst []byte) []byte {
	n := 0
	for _, part := range p.parts {
		n += copy(dst[n:], part)
	}
	return dst[:n]
}

func (r *reassembler) drop(id uint32, p *partial) {
	delete(r.pending, id)
	r.bytes -= p.size
}

func (r *reassembler) expire(now time.Time) {
	for id, p := range r.pending {
		if now.Sub(p.start) > reassemblyTimeout {
			r.drop(id, p)
		}
	}
}

func (r *reassembler) evictOldest() {
	var oldest uint32
	var op *partial
	for id, p := range r.pending {
		if op == nil || p.start.Before(op.start) {
			oldest, op = id, p
		}
	}
	if op != nil {
		r.drop(oldest, op)
	}
}
