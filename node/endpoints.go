package node

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// localPrefixes lists the addresses (with their prefix lengths) of the
// machine's interfaces that are up.
func localPrefixes() []netip.Prefix {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()))
			}
		}
	}
	return out
}

// localEndpoints lists the UDP endpoints peers may reach this node at:
// every unicast address of an interface that is up, but loopback,
// link-local and the node's own mesh addresses. The controller adds the
// address it sees requests come from. Call with n.mu held.
func (n *Node) localEndpoints(port uint16) []netip.AddrPort {
	var mesh []netip.Prefix
	if n.self != nil {
		mesh = n.self.Addresses
	}
	var eps []netip.AddrPort
	for _, p := range localPrefixes() {
		a := p.Addr()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			continue
		}
		if slices.ContainsFunc(mesh, func(m netip.Prefix) bool { return m.Addr() == a }) {
			continue
		}
		ep := netip.AddrPortFrom(a, port)
		if !slices.Contains(eps, ep) {
			eps = append(eps, ep)
		}
		if len(eps) == 16 {
			break
		}
	}
	return eps
}

// chooseEndpoint picks where to reach a peer first: an endpoint on a
// network this machine is directly on, else the first IPv4 one, else the
// first.
func chooseEndpoint(eps []netip.AddrPort, local []netip.Prefix) netip.AddrPort {
	for _, ep := range eps {
		for _, p := range local {
			if p.Bits() < p.Addr().BitLen() && p.Contains(ep.Addr()) && !p.Addr().IsLoopback() {
				return ep
			}
		}
	}
	for _, ep := range eps {
		if ep.Addr().Is4() {
			return ep
		}
	}
	if len(eps) > 0 {
		return eps[0]
	}
	return netip.AddrPort{}
}

func removeFile(dir, name string) { os.Remove(filepath.Join(dir, name)) }
