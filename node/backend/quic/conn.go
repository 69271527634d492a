package quic

import (
	"errors"
	"net"
	"syscall"
)

// udpConn is the UDP socket as quic-go sees it: a *net.UDPConn (so quic-go
// keeps its batched reads, GSO and ECN) whose sends to an unreachable
// network (the link is down, the route is gone) report success. The packet
// is lost, which QUIC recovers from once the network is back; quic-go
// would otherwise destroy the connection at the first such error without
// telling the peer, and an acceptor's peer would only notice at the idle
// timeout.
type udpConn struct{ *net.UDPConn }

func (c udpConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := c.UDPConn.WriteMsgUDP(b, oob, addr)
	if unreachable(err) {
		return len(b), len(oob), nil
	}
	return n, oobn, err
}

func (c udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	if unreachable(err) {
		return len(b), nil
	}
	return n, err
}

func unreachable(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETDOWN))
}
