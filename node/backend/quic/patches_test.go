package quic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/node/backend"
)

// The tests of third_party/quic-go's patches (RUSTYNET.md there), run
// through quic-go's API as this backend uses it.

// TestReceiveDrainsQueued (patch 2): ReceiveDatagram with a context
// already done returns the datagrams already queued, then an error at
// once, without waiting.
func TestReceiveDrainsQueued(t *testing.T) {
	d, a := loopPair(t)
	const n = 5
	for i := range n {
		if err := d.SendDatagram([]byte{0x45, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first, err := a.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := [][]byte{first}
	for deadline := time.Now().Add(5 * time.Second); len(got) < n && time.Now().Before(deadline); {
		m, err := a.ReceiveDatagram(drained)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("draining: %v, want context.Canceled while the connection is open", err)
			}
			time.Sleep(time.Millisecond) // the rest are in flight
			continue
		}
		got = append(got, m)
	}
	if len(got) != n {
		t.Fatalf("drained %d datagrams with a done context, want %d", len(got), n)
	}
	for i, m := range got {
		if m[1] != byte(i) {
			t.Fatalf("datagram %d carries %d: out of order", i, m[1])
		}
	}
	start := time.Now()
	if _, err := a.ReceiveDatagram(drained); !errors.Is(err, context.Canceled) {
		t.Fatalf("empty queue: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("an empty queue kept a done context waiting %v", d)
	}
}

// countingConn counts the sendmsg calls quic-go makes on a UDP socket.
type countingConn struct {
	*net.UDPConn
	writes *atomic.Int64
}

func (c countingConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	c.writes.Add(1)
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

// TestFullSizeDatagramsBatched (patch 1): a flow of datagrams as large as
// the path allows leaves in GSO batches, fewer sendmsg calls than
// datagrams, as full-size STREAM data does. Unpatched, a packet of one
// such datagram falls a few bytes short of the maximum size and quic-go
// sends each alone.
func TestFullSizeDatagramsBatched(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	gso := gsoSupported(probe)
	if !gso {
		probe.Close()
	}
	require.Need(t, "kernel:udp-gso", gso, "the kernel has no UDP GSO (UDP_SEGMENT), so quic-go sends every packet alone")
	var writes atomic.Int64
	d, a := loopPairOn(t, countingConn{probe, &writes})
	waitDatagramRoom(t, d, MaxMTU)
	received := make(chan int)
	go func() {
		n := 0
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := a.ReceiveDatagram(ctx)
			cancel()
			if err != nil {
				received <- n
				return
			}
			n++
		}
	}()
	const n = 2000
	msg := make([]byte, MaxMTU)
	msg[0] = 0x45
	before := writes.Load()
	for range n {
		if err := d.SendDatagram(msg); err != nil {
			t.Fatal(err)
		}
	}
	got := <-received
	calls := writes.Load() - before
	t.Logf("%d datagrams of %d bytes sent in %d sendmsg calls; %d received", n, MaxMTU, calls, got)
	if calls*3 > n*2 {
		t.Fatalf("%d full-size datagrams took %d sendmsg calls: not batched", n, calls)
	}
}

// gsoSupported reports whether the kernel takes UDP_SEGMENT on c, as
// quic-go checks before it uses GSO.
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return serr == nil
}

var _ quicgo.OOBCapablePacketConn = countingConn{}

// gatedDevice holds its first write until open is closed, and records how
// many packets each write carries.
type gatedDevice struct {
	tun.Device
	open    chan struct{}
	mu      sync.Mutex
	batches []int
}

func (d *gatedDevice) Write(bufs [][]byte, offset int) (int, error) {
	<-d.open
	d.mu.Lock()
	d.batches = append(d.batches, len(bufs))
	d.mu.Unlock()
	return d.Device.Write(bufs, offset)
}

// TestReceiveBatches: the packets that arrive while the device is busy
// reach it together, in one write, in the order sent.
func TestReceiveBatches(t *testing.T) {
	ka, kb := keys()
	a := newEnd(t, 1, ka)
	ct := tuntest.NewChannelTUN()
	dev := &gatedDevice{Device: ct.TUN(), open: make(chan struct{})}
	bb, err := New(backend.Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	b := &end{b: bb, tun: ct, key: kb, ip: netip.AddrFrom4([4]byte{100, 64, 0, 2}), ip6: netip.AddrFrom16([16]byte{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 15: 2})}
	configure(t, a, b.peer(b.addr()))
	configure(t, b, a.peer(a.addr()))
	const n = 40
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = packet4(a.ip, b.ip, 1000, uint16(i))
		a.tun.Outbound <- pkts[i]
	}
	// The first packet holds b's receiver in the device's write; the
	// rest queue in quic-go behind it (a few milliseconds on loopback).
	time.Sleep(settle)
	close(dev.open)
	for i, p := range pkts {
		expect(t, b, p, fmt.Sprintf("packet %d", i))
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if len(dev.batches) == 0 || slices.Max(dev.batches) < 2 {
		t.Fatalf("%d packets that arrived together took writes of %v packets: not batched", n, dev.batches)
	}
	t.Logf("writes of %v packets", dev.batches)
}

// TestReceiveQueueHoldsABurst (patch 4): a burst of datagrams larger than
// quic-go's former receive queue (128) waits, whole, for a reader that is
// late.
func TestReceiveQueueHoldsABurst(t *testing.T) {
	d, a := loopPair(t)
	waitDatagramRoom(t, d, MaxMTU)
	// Empty the receive queue of the datagrams waitDatagramRoom sent.
	time.Sleep(settle)
	for {
		if _, err := a.ReceiveDatagram(drained); err != nil {
			break
		}
	}
	const n = 600
	msg := make([]byte, MaxMTU)
	msg[0] = 0x45
	before := a.ConnectionStats().PacketsReceived
	for range n {
		if err := d.SendDatagram(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Each datagram fills a packet of its own: wait until the acceptor
	// has received them all, reading none.
	for deadline := time.Now().Add(wait); a.ConnectionStats().PacketsReceived-before < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d packets received of the %d datagrams sent", a.ConnectionStats().PacketsReceived-before, n)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(settle) // any packet counted that was not one of them
	got := 0
	for {
		if _, err := a.ReceiveDatagram(drained); err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Fatalf("a reader late for a burst of %d datagrams found %d queued", n, got)
	}
}
