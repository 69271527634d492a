package router

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol marks the routes Rustynet installs (rtnetlink's rtm_protocol),
// so they can be told apart from everyone else's, listed and cleaned up.
const Protocol = netlink.RouteProtocol(0x52)

// Linux sets addresses and routes on a kernel interface over netlink.
type Linux struct {
	h      *netlink.Handle // one netlink socket for every request
	link   netlink.Link
	addrs  map[netip.Prefix]bool
	routes map[netip.Prefix]bool
}

// NewLinux returns a router for the interface named iface and brings it up.
// Routes of Protocol left on it by an earlier run are taken over (and
// removed by the first Set that does not want them).
func NewLinux(iface string) (*Linux, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		h.Close()
		return nil, fmt.Errorf("bring %s up: %w", iface, err)
	}
	r := &Linux{h: h, link: link, addrs: map[netip.Prefix]bool{}, routes: map[netip.Prefix]bool{}}
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: Protocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("list routes of %s: %w", iface, err)
	}
	for _, rt := range rs {
		if p, ok := prefixOf(rt.Dst); ok {
			r.routes[p] = true
		}
	}
	return r, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Set implements Router.
func (r *Linux) Set(cfg *Config) error {
	var errs []error
	want := map[netip.Prefix]bool{}
	for _, a := range cfg.Addresses {
		want[a] = true
		if r.addrs[a] {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(a)}
		if a.Addr().Is6() {
			addr.Flags = syscall.IFA_F_NODAD // the address is ours alone; don't wait for DAD
		}
		if err := r.h.AddrReplace(r.link, addr); err != nil {
			errs = append(errs, fmt.Errorf("add address %s: %w", a, err))
			continue
		}
		r.addrs[a] = true
	}
	for a := range r.addrs {
		if !want[a] {
			if err := r.h.AddrDel(r.link, &netlink.Addr{IPNet: ipNet(a)}); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove address %s: %w", a, err))
				continue
			}
			delete(r.addrs, a)
		}
	}
	want = map[netip.Prefix]bool{}
	for _, p := range cfg.Routes {
		p = p.Masked()
		want[p] = true
		if r.routes[p] {
			continue
		}
		if err := r.h.RouteReplace(r.route(p)); err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", p, err))
			continue
		}
		r.routes[p] = true
	}
	for p := range r.routes {
		if !want[p] {
			if err := r.h.RouteDel(r.route(p)); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("remove route %s: %w", p, err))
				continue
			}
			delete(r.routes, p)
		}
	}
	return errors.Join(errs...)
}

func (r *Linux) route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: r.link.Attrs().Index, Dst: ipNet(p), Protocol: Protocol, Scope: netlink.SCOPE_LINK}
}

// Close implements Router: it removes what it added and closes its netlink
// socket.
func (r *Linux) Close() error {
	err := r.Set(&Config{})
	r.h.Close()
	return err
}
