package controller

import (
	"net"
	"net/netip"
	"sync"
)

// limitListener bounds the open connections of a listener in all and per
// client IP address. A connection over either bound is closed as soon as
// it is accepted, before any TLS or HTTP work is spent on it, so that one
// client cannot hold the connections (and goroutines) that nodes need. A
// negative bound is no bound.
type limitListener struct {
	net.Listener
	max, perIP int
	metrics    *metrics

	mu   sync.Mutex
	open int
	byIP map[netip.Addr]int
}

func newLimitListener(ln net.Listener, max, perIP int, m *metrics) *limitListener {
	return &limitListener{Listener: ln, max: max, perIP: perIP, metrics: m, byIP: make(map[netip.Addr]int)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if reason := l.admit(ip); reason != "" {
			l.metrics.connsRefused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		l.metrics.connsOpen.Inc()
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

// admit counts a new connection from ip, or says which bound it is over.
func (l *limitListener) admit(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max >= 0 && l.open >= l.max:
		return "total"
	case l.perIP >= 0 && l.byIP[ip] >= l.perIP:
		return "per_ip"
	}
	l.open++
	l.byIP[ip]++
	return ""
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
	l.mu.Unlock()
	l.metrics.connsOpen.Dec()
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// limitConn releases its place once, on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
