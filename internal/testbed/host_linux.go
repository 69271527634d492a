package testbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Do runs fn on an OS thread locked inside the host's network namespace
// (pkg/ns WithNetNSPath). Sockets fn creates stay in the namespace and may be
// used from any goroutine afterwards; goroutines fn starts do not run in the
// namespace. It returns fn's error, or why the namespace could not be
// entered.
func (h *Host) Do(fn func() error) error {
	return ns.WithNetNSPath(h.NSPath, func(ns.NetNS) error { return fn() })
}

// Listen is net.Listen inside the host's namespace. The host part of addr
// must be empty or an IP literal: names would be resolved outside it.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	if err := literal(network, addr); err != nil {
		return nil, err
	}
	var l net.Listener
	err := h.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket inside the host's namespace, with the
// same rule for addr as Listen.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	if err := literal(network, addr); err != nil {
		return nil, err
	}
	var c net.PacketConn
	err := h.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// DialContext dials from inside the host's namespace, with the same rule
// for addr as Listen (so the dial is one socket, made on the locked thread).
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := literal(network, addr); err != nil {
		return nil, err
	}
	var c net.Conn
	err := h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// literal checks that an address of an IP network needs no name lookup.
func literal(network, addr string) error {
	host := addr
	switch {
	case strings.HasPrefix(network, "tcp"), strings.HasPrefix(network, "udp"):
		var err error
		if host, _, err = net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s address %q: %w", network, addr, err)
		}
	case strings.HasPrefix(network, "ip"):
	default:
		return nil
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%s address %q: host is not an IP address (a name would be resolved outside the namespace)", network, addr)
	}
	return nil
}

// Command returns a command that runs name inside the host's namespace, via
// `ip netns exec` (which execs name in place, so cmd.Process is name's own
// process, and shows it the namespace's /sys). The caller starts it; ctx
// kills it as for exec.CommandContext.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// SetLinkUp brings eth0 up or down, for link-flap tests. Up returns once
// the link is operationally up (the bridge has no STP, so the port forwards
// straight away); its address and subnet route come back with it.
func (h *Host) SetLinkUp(up bool) error {
	return h.Do(func() error {
		link, err := netlink.LinkByName(h.Link)
		if err != nil {
			return fmt.Errorf("set %s up=%t: %w", h.Link, up, err)
		}
		if !up {
			if err := netlink.LinkSetDown(link); err != nil {
				return fmt.Errorf("set %s down: %w", h.Link, err)
			}
			return nil
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", h.Link, err)
		}
		const tries, every = 250, 20 * time.Millisecond
		for range tries {
			l, err := netlink.LinkByName(h.Link)
			if err != nil {
				return fmt.Errorf("set %s up: %w", h.Link, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				return nil
			}
			time.Sleep(every)
		}
		return fmt.Errorf("set %s up: still not operationally up after %v", h.Link, tries*every)
	})
}

// LinkBytes is what the host's link (eth0) has received and sent so far,
// in bytes, as the kernel counts them (frames, headers included).
func (h *Host) LinkBytes() (uint64, error) {
	var n uint64
	err := h.Do(func() error {
		link, err := netlink.LinkByName(h.Link)
		if err != nil {
			return fmt.Errorf("%s's %s: %w", h.Name, h.Link, err)
		}
		st := link.Attrs().Statistics
		if st == nil {
			return fmt.Errorf("%s's %s: the kernel gave no statistics", h.Name, h.Link)
		}
		n = st.RxBytes + st.TxBytes
		return nil
	})
	return n, err
}
