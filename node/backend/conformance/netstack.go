package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// tcpNet is one end of the TCP that the throughput case runs through a
// backend: gVisor's userspace TCP/IP stack behind a tun.Device that the
// backend reads and writes. It is wireguard-go's tun/netstack
// (CreateNetTUN) cut down to IPv4 and TCP, with one difference: TCP SACK
// stays off, as gVisor has it by default, where CreateNetTUN turns it on.
//
// gVisor's SACK loss recovery degenerates after a burst of segments lost
// at the tail of a flight. With a single SACK block above the hole, no
// segment counts as lost (RFC 6675 wants three SACKed segments above
// one), so the whole flight counts as in flight: after each
// retransmission timeout the sender retransmits one segment, re-enters
// SACK recovery on the ACK, sends one more and waits for the next
// timeout, which never backs off because every ACK advances. 170 lost
// segments then take 17 s, about 0.001 Gbit/s, where the same TCP without
// SACK recovers within a few round trips. A backend that loses a burst
// of packets once, as any path may, must cost some throughput, not look
// 300 times slower than it is: that is the suite's TCP failing, not the
// backend. TestTCPNetBurstLoss shows the difference.
type tcpNet struct {
	ep       *channel.Endpoint
	stack    *stack.Stack
	notify   *channel.NotificationHandle
	incoming chan *buffer.View // packets the stack sends, to Read
	events   chan tun.Event
	mtu      int
	done     chan struct{} // closed by Close
	once     sync.Once
}

var _ tun.Device = (*tcpNet)(nil)

// newTCPNet creates a stack with address addr (IPv4) on a device of the
// given MTU.
func newTCPNet(addr netip.Addr, mtu int) (*tcpNet, error) {
	if !addr.Is4() {
		return nil, fmt.Errorf("%v is not an IPv4 address", addr)
	}
	n := &tcpNet{
		ep: channel.New(1024, uint32(mtu), ""),
		stack: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
			HandleLocal:        true,
		}),
		incoming: make(chan *buffer.View),
		events:   make(chan tun.Event, 1),
		mtu:      mtu,
		done:     make(chan struct{}),
	}
	// SACK is off by default in gVisor; say so, in case that changes.
	sack := tcpip.TCPSACKEnabled(false)
	if err := n.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("turn TCP SACK off: %v", err)
	}
	n.notify = n.ep.AddNotify(n)
	if err := n.stack.CreateNIC(1, n.ep); err != nil {
		return nil, fmt.Errorf("create NIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFromSlice(addr.AsSlice()).WithPrefix(),
	}
	if err := n.stack.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("add address %v: %v", addr, err)
	}
	n.stack.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: 1})
	n.events <- tun.EventUp
	return n, nil
}

// WriteNotify implements channel.Notification: the stack sent a packet.
// It hands the packet to Read, as wireguard-go's netstack does, so a busy
// backend holds the stack back rather than the endpoint's queue dropping.
func (n *tcpNet) WriteNotify() {
	pkt := n.ep.Read()
	if pkt == nil {
		return
	}
	v := pkt.ToView()
	pkt.DecRef()
	select {
	case n.incoming <- v:
	case <-n.done:
		v.Release()
	}
}

func (n *tcpNet) File() *os.File           { return nil }
func (n *tcpNet) Name() (string, error)    { return "tcpnet", nil }
func (n *tcpNet) MTU() (int, error)        { return n.mtu, nil }
func (n *tcpNet) Events() <-chan tun.Event { return n.events }
func (n *tcpNet) BatchSize() int           { return 1 }

// Read returns the next packet the stack sends.
func (n *tcpNet) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case v := <-n.incoming:
		defer v.Release()
		if v.Size() > len(bufs[0])-offset {
			return 0, fmt.Errorf("a %d-byte packet does not fit a %d-byte buffer", v.Size(), len(bufs[0])-offset)
		}
		sizes[0] = copy(bufs[0][offset:], v.AsSlice())
		return 1, nil
	case <-n.done:
		return 0, os.ErrClosed
	}
}

// Write hands packets to the stack.
func (n *tcpNet) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-n.done:
		return 0, os.ErrClosed
	default:
	}
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		if pkt[0]>>4 != 4 {
			return 0, errors.New("not an IPv4 packet")
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		n.ep.InjectInbound(header.IPv4ProtocolNumber, pb)
		pb.DecRef()
	}
	return len(bufs), nil
}

// Close stops the stack. Packets it was handing to Read are dropped.
func (n *tcpNet) Close() error {
	n.once.Do(func() {
		close(n.done) // releases a WriteNotify waiting for Read
		n.ep.RemoveNotify(n.notify)
		n.stack.RemoveNIC(1)
		n.stack.Close()
		n.ep.Close()
		n.stack.Wait()
		close(n.events)
	})
	return nil
}

func (n *tcpNet) fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}
}

// listen listens for TCP connections on ap.
func (n *tcpNet) listen(ap netip.AddrPort) (*gonet.TCPListener, error) {
	return gonet.ListenTCP(n.stack, n.fullAddr(ap), ipv4.ProtocolNumber)
}

// dial opens a TCP connection to ap.
func (n *tcpNet) dial(ctx context.Context, ap netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, n.stack, n.fullAddr(ap), ipv4.ProtocolNumber)
}
