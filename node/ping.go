package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/rustynet/rustynet/node/localapi"
)

// pingConn is what both a raw ICMP socket and a netstack ping endpoint
// offer.
type pingConn interface {
	WriteTo(b []byte, addr net.Addr) (int, error)
	ReadFrom(b []byte) (int, net.Addr, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// Ping implements localapi.Agent: one ICMP echo to a peer's mesh address,
// through the tunnel. peer is a name, a node ID or a mesh address.
func (n *Node) Ping(ctx context.Context, peer string, timeout time.Duration) (*localapi.PingResult, error) {
	n.mu.Lock()
	target, name, err := n.resolveLocked(peer)
	var self netip.Addr
	if n.self != nil {
		for _, a := range n.self.Addresses {
			if a.Addr().Is4() == target.Is4() {
				self = a.Addr()
			}
		}
	}
	dp := n.dp
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if dp == nil || !self.IsValid() {
		return nil, errors.New("the dataplane is not up yet")
	}
	var pc pingConn
	switch {
	case dp.net != nil:
		pc, err = dp.net.DialPingAddr(self, target)
	case target.Is4():
		pc, err = icmp.ListenPacket("ip4:icmp", "")
	default:
		pc, err = icmp.ListenPacket("ip6:ipv6-icmp", "")
	}
	if err != nil {
		return nil, fmt.Errorf("open ICMP socket: %w", err)
	}
	defer pc.Close()

	id, seq := rand.N(1<<16), rand.N(1<<16)
	var typ, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if target.Is6() {
		typ, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	payload := []byte(fmt.Sprintf("rustynet ping %d", time.Now().UnixNano()))
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}).Marshal(nil)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pc.SetReadDeadline(deadline)
	start := time.Now()
	if _, err := pc.WriteTo(msg, &net.IPAddr{IP: target.AsSlice()}); err != nil {
		return nil, fmt.Errorf("send echo to %s: %w", target, err)
	}
	if h := n.echoSent.Load(); h != nil {
		(*h)() // a test holding Ping up between its send and its read
	}
	buf := make([]byte, 1500)
	for {
		nr, from, err := pc.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w from %s (%s) within %v", errNoReply, name, target, timeout)
		}
		if err != nil {
			return nil, err
		}
		rm, err := icmp.ParseMessage(proto, buf[:nr])
		if err != nil || rm.Type != replyType {
			continue
		}
		echo, ok := rm.Body.(*icmp.Echo)
		// A netstack ping endpoint rewrites the ID; match on sequence
		// and payload there.
		if !ok || echo.Seq != seq || string(echo.Data) != string(payload) || (dp.net == nil && echo.ID != id) {
			continue
		}
		if a, ok := addrOf(from); ok && a != target {
			continue
		}
		return &localapi.PingResult{Peer: name, Addr: target, RTT: time.Since(start)}, nil
	}
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch v := a.(type) {
	case *net.IPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ip.Unmap(), ok
	case interface{ Addr() netip.Addr }:
		return v.Addr(), true
	}
	return netip.Addr{}, false
}

// resolveLocked finds a peer by name, ID or mesh address and returns its
// first IPv4 mesh address (else its first address).
func (n *Node) resolveLocked(peer string) (netip.Addr, string, error) {
	if peer == "" {
		return netip.Addr{}, "", errors.New("which peer? give a name, node ID or mesh address")
	}
	ip, ipErr := netip.ParseAddr(peer)
	for _, p := range n.peers {
		match := p.Name == peer || string(p.ID) == peer
		for _, a := range p.Addresses {
			if ipErr == nil && a.Addr() == ip {
				match = true
			}
		}
		if !match {
			continue
		}
		if ipErr == nil {
			return ip, p.Name, nil
		}
		for _, a := range p.Addresses {
			if a.Addr().Is4() {
				return a.Addr(), p.Name, nil
			}
		}
		if len(p.Addresses) > 0 {
			return p.Addresses[0].Addr(), p.Name, nil
		}
	}
	for _, m := range n.missing {
		if m.Name == peer {
			return netip.Addr{}, "", fmt.Errorf("peer %s is not usable: %s", peer, m.Reason)
		}
	}
	return netip.Addr{}, "", fmt.Errorf("no peer %q in the netmap (a peer the ACL policy hides is not sent to this node)", peer)
}
