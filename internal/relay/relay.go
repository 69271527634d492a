// Package relay is a TCP relay that delays what it carries: the
// inter-region link of the DR drills on kernels without netem
// (sch_netem), where a qdisc cannot add the latency. Each connection it
// accepts is relayed to one target, every byte in either direction held
// back by the route's delay, as a link of that one-way latency would; the
// bytes keep their order and the link its throughput (the delay is a
// queue, not a pause).
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Route is one listener and where its connections go.
type Route struct {
	Listen string        // host:port to accept on
	Target string        // host:port to dial
	Delay  time.Duration // one way, each direction
}

// MaxDelay bounds a route's delay.
const MaxDelay = time.Second

// ParseRoute reads LISTEN=TARGET[@DELAY], e.g. ":2379=gw-us-eu:12379@40ms".
func ParseRoute(s string) (Route, error) {
	listen, rest, ok := strings.Cut(s, "=")
	if !ok || listen == "" || rest == "" {
		return Route{}, fmt.Errorf("route %q: want LISTEN=TARGET[@DELAY]", s)
	}
	target, delay, hasDelay := strings.Cut(rest, "@")
	r := Route{Listen: listen, Target: target}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return Route{}, fmt.Errorf("route %q: listen address: %w", s, err)
	}
	if h, p, err := net.SplitHostPort(target); err != nil || h == "" || p == "" {
		return Route{}, fmt.Errorf("route %q: target %q: want HOST:PORT", s, target)
	}
	if hasDelay {
		d, err := time.ParseDuration(delay)
		if err != nil || d < 0 || d > MaxDelay {
			return Route{}, fmt.Errorf("route %q: delay %q: want 0 to %v", s, delay, MaxDelay)
		}
		r.Delay = d
	}
	return r, nil
}

// Limits of a relay.
const (
	MaxConns   = 512              // open connections per route
	chunkSize  = 32 << 10         // bytes a read takes
	queueLen   = 256              // chunks in flight per direction (8 MiB)
	dialTimout = 5 * time.Second  // to the target
	idleClose  = 10 * time.Second // after one side closed, the other has this long
)

// Serve relays on every route until ctx ends; it returns the first error
// of a listener that could not start.
func Serve(ctx context.Context, log *slog.Logger, routes []Route) error {
	var lns []net.Listener
	for _, r := range routes {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", r.Listen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", r.Listen, err)
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for i, ln := range lns {
		r := routes[i]
		wg.Go(func() { serveRoute(ctx, log, ln, r) })
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return nil
}

func serveRoute(ctx context.Context, log *slog.Logger, ln net.Listener, r Route) {
	sem := make(chan struct{}, MaxConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				log.Error("accept", "listen", r.Listen, "err", err)
			}
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			log.Warn("too many connections; refused", "listen", r.Listen, "max", MaxConns)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			relayConn(ctx, log, c, r)
		})
	}
}

// relayConn dials the target and carries both directions until both have
// ended, or ctx does.
func relayConn(ctx context.Context, log *slog.Logger, c net.Conn, r Route) {
	defer c.Close()
	d := net.Dialer{Timeout: dialTimout}
	t, err := d.DialContext(ctx, "tcp", r.Target)
	if err != nil {
		log.Debug("dial", "target", r.Target, "err", err)
		return
	}
	defer t.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		c.Close()
		t.Close()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { pipe(t, c, r.Delay) })
	wg.Go(func() { pipe(c, t, r.Delay) })
	wg.Wait()
}

type chunk struct {
	due  time.Time
	data []byte
	err  error // the read's end (io.EOF, or why)
}

// pipe copies src to dst, each chunk written delay after it was read.
// When src ends, dst's write side is closed (a half-close, as TCP carries
// it); on an error both are closed.
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, queueLen)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{due: time.Now().Add(delay), data: buf[:n]}
			}
			if err != nil {
				q <- chunk{due: time.Now().Add(delay), err: err}
				return
			}
		}
	}()
	for ch := range q {
		if wait := time.Until(ch.due); wait > 0 {
			time.Sleep(wait)
		}
		if ch.err != nil {
			if errors.Is(ch.err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					dst.SetReadDeadline(time.Now().Add(idleClose))
					continue
				}
			}
			dst.Close()
			src.Close()
			continue
		}
		if _, err := dst.Write(ch.data); err != nil {
			dst.Close()
			src.Close()
		}
	}
}
