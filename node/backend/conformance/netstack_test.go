package conformance

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// wireTCPNets carries the packets of a to b and back, as a backend pair
// would, except that drop decides, for each packet from a, whether it is
// lost, until stop closes both devices.
func wireTCPNets(a, b *tcpNet, drop func(pkt []byte) bool) (stop func()) {
	done := make(chan struct{}, 2)
	pipe := func(from, to *tcpNet, drop func([]byte) bool) {
		defer func() { done <- struct{}{} }()
		bufs, sizes := [][]byte{make([]byte, 16+65535)}, []int{0}
		for {
			if _, err := from.Read(bufs, sizes, 16); err != nil {
				return
			}
			if drop != nil && drop(bufs[0][16:16+sizes[0]]) {
				continue
			}
			if _, err := to.Write([][]byte{bufs[0][:16+sizes[0]]}, 16); err != nil {
				return
			}
		}
	}
	go pipe(a, b, drop)
	go pipe(b, a, nil)
	return func() {
		a.Close()
		b.Close()
		<-done
		<-done
	}
}

// tailLoss returns a drop function that passes the first after TCP data
// segments and then loses the first transmission of every one until the
// sender retransmits: the tail of one flight, as a path loses it when the
// queue at its bottleneck overflows. lost reports how many it dropped.
func tailLoss(after int) (drop func(pkt []byte) bool, lost func() int) {
	seen := make(map[uint32]bool)
	n, retransmitted := 0, false
	var dropped atomic.Int64
	return func(pkt []byte) bool {
			ihl := int(pkt[0]&0x0f) * 4
			if len(pkt) < ihl+20 || pkt[9] != 6 {
				return false
			}
			seg := pkt[ihl:]
			if len(seg) <= int(seg[12]>>4)*4 {
				return false // no payload
			}
			seq := binary.BigEndian.Uint32(seg[4:8])
			if seen[seq] {
				retransmitted = true
				return false
			}
			seen[seq] = true
			if n++; n <= after || retransmitted {
				return false
			}
			dropped.Add(1)
			return true
		}, func() int {
			return int(dropped.Load())
		}
}

// TestTCPNetBurstLoss: the suite's TCP MUST recover from the loss of the
// tail of a flight within a few round trips, so that the throughput case
// measures a backend that loses a burst of packets, as any path may, as
// somewhat slower, not as stalled. gVisor's TCP with SACK on (as
// wireguard-go's netstack has it) takes about 100 ms per two lost
// segments here: the 4 MB below took over 10 s.
func TestTCPNetBurstLoss(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ipa, ipb := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2")
	a, err := newTCPNet(ipa, MTU)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newTCPNet(ipb, MTU)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	drop, lost := tailLoss(100)
	stop := wireTCPNets(a, b, drop)
	defer stop()

	ln, err := b.listen(netip.AddrPortFrom(ipb, 5201))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 4 << 20
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != size {
			err = errors.New("short transfer")
		}
		got <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.dial(ctx, netip.AddrPortFrom(ipb, 5201))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	c.SetDeadline(deadline)
	_, err = c.Write(make([]byte, size))
	c.Close()
	if err == nil {
		select {
		case err = <-got:
		case <-time.After(time.Until(deadline)):
			err = os.ErrDeadlineExceeded
		}
	}
	took := time.Since(start)
	if lost() == 0 {
		t.Fatal("no segment was lost; the test lost its point")
	}
	if err != nil {
		t.Fatalf("sending %d bytes after losing %d segments: %v after %v", size, lost(), err, took.Round(time.Millisecond))
	}
	t.Logf("%d bytes in %v, %d segments lost", size, took.Round(time.Millisecond), lost())
}
