package quic

import (
	"errors"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// TestMaxMTUFitsOneDatagram: once path MTU discovery has run on a path
// that carries quic-go's largest packets (loopback carries more), one
// datagram MUST carry a MaxMTU-byte packet. The node runs the device at
// MaxMTU, so a TCP flow's full-size packets are that size; were they one
// byte too large, every one of them would travel in two fragments, at
// about half the throughput and twice the datagrams.
func TestMaxMTUFitsOneDatagram(t *testing.T) {
	a, b := pair(t)
	send(t, a, b)
	pkt := packet4(a.ip, b.ip, MaxMTU, 0)
	largest := int64(0)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		// Traffic, and the acknowledgements it draws, drive the discovery.
		transfer(t, a, b, pkt, "a MaxMTU-byte packet")
		if m := maxDatagram(t, a, b); m > largest {
			largest = m
			t.Logf("the largest datagram is %d bytes", m)
		}
		if largest >= MaxMTU {
			return
		}
	}
	t.Fatalf("after %v of traffic the largest datagram a can send to b is %d bytes, less than MaxMTU (%d)", wait, largest, MaxMTU)
}

// maxDatagram returns the largest datagram from's connection to to takes
// now, as quic-go reports it when given one too large.
func maxDatagram(t *testing.T, from, to *end) int64 {
	t.Helper()
	b := from.b.(*Backend)
	b.mu.Lock()
	p := b.peers[to.key.Public()]
	b.mu.Unlock()
	c := p.conn.Load()
	if c == nil {
		t.Fatal("no connection")
	}
	err := c.SendDatagram(make([]byte, 1<<16))
	var tl *quicgo.DatagramTooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("SendDatagram(64 KiB) = %v, want a DatagramTooLargeError", err)
	}
	return tl.MaxDatagramPayloadSize
}
