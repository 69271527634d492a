package quic

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/backend"
)

// sendQueueLen bounds the packets waiting for a peer, including while its
// connection is (re)established; beyond it new packets are dropped.
const sendQueueLen = 1024

const (
	// fallbackDelay is how long the follower of a pair (the node with the
	// higher key) goes without a connection before dialing one itself.
	fallbackDelay = 500 * time.Millisecond
	// leaderRetry is how often the leader retries its own connection
	// while the follower's carries the traffic.
	leaderRetry = 30 * time.Second
)

// Which connection a pair of peers uses. The leader (the lower node key)
// dials the canonical connection and keeps redialing it. The follower
// dials only when it has had no connection for fallbackDelay, for a peer
// it can reach that cannot reach it (a NAT or firewall in front of the
// follower, an endpoint the leader lacks). A canonical connection always
// takes over; the leader accepts a fallback one only while it has no
// canonical connection, and the follower installs its own only while it
// has none at all. Traffic goes on the connection in use; any connection
// still open delivers what arrives on it.

// peer is one configured peer: its connection, the goroutine that sends
// to it and the dial loop.
type peer struct {
	b *Backend

	// Written by Reconfig under both b.mu and mu; read under either.
	cfg        backend.Peer
	bkey       edKey
	hasKey     bool
	leader     bool               // this node's key is the lower
	linkCancel context.CancelFunc // stops the dial loop

	ctx    context.Context // the peer's lifetime
	cancel context.CancelFunc
	sendq  chan *[]byte

	rx, tx atomic.Uint64
	conn   atomic.Pointer[quicgo.Conn] // the connection in use; set under mu

	mu        sync.Mutex
	canonical bool          // conn was dialed by the leader
	gen       uint64        // bumped whenever the dial loop is replaced
	up        chan struct{} // closed while conn is set
	stopped   bool
	handshake time.Time
	remote    netip.AddrPort // the remote address of the last connection
	failing   bool           // dialing has failed since the last success
}

func (b *Backend) newPeer(pc backend.Peer) *peer {
	p := &peer{b: b, sendq: make(chan *[]byte, sendQueueLen), up: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(b.ctx)
	p.update(pc, b.self)
	b.wg.Go(p.sendLoop)
	return p
}

// change is what a new peer config requires of its connection.
type change int

const (
	unchanged change = iota
	redial           // restart the dial loop, keep the connection
	reconnect        // close the connection and redial
)

// update applies a peer's new config and reports what it requires: a new
// key needs a new connection; so does a new endpoint for the leader, whose
// connection goes there, while the follower only redials there when it
// must; a new keep-alive restarts the dial loop, which keeps the
// connection.
func (p *peer) update(pc backend.Peer, self api.NodePublic) change {
	old := p.cfg
	bkey, err := parseKey(pc.BackendKey)
	if err != nil && (pc.BackendKey != old.BackendKey || old.PublicKey.IsZero()) {
		p.b.log.Warn("peer has no usable quic key and cannot connect", "peer", pc.PublicKey, "err", err)
	}
	leader := dials(self, pc.PublicKey)
	ch := unchanged
	switch {
	case pc.BackendKey != old.BackendKey || (leader && pc.Endpoint != old.Endpoint):
		ch = reconnect
	case pc.Endpoint != old.Endpoint || pc.Keepalive != old.Keepalive:
		ch = redial
	}
	p.mu.Lock()
	p.cfg, p.bkey, p.hasKey, p.leader = pc, bkey, err == nil, leader
	if leader && pc.Endpoint != old.Endpoint {
		p.remote = netip.AddrPort{}
	}
	p.mu.Unlock()
	return ch
}

// relink restarts the peer's dial loop on t, closing its connection first
// when reconnect is set.
func (p *peer) relink(t *transport, reconnect bool) {
	p.unlink(reconnect)
	if t == nil || !p.hasKey || !p.cfg.Endpoint.IsValid() {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.linkCancel = cancel
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	period := keepalive
	if ka := p.cfg.Keepalive; ka > 0 && ka < period {
		period = ka
	}
	ep, want, leader := p.cfg.Endpoint, p.bkey, p.leader
	p.b.wg.Go(func() { p.dialLoop(ctx, t, gen, ep, want, period, leader) })
}

// unlink stops the dial loop and, with closeConn, closes the connection.
func (p *peer) unlink(closeConn bool) {
	if p.linkCancel != nil {
		p.linkCancel()
		p.linkCancel = nil
	}
	p.mu.Lock()
	p.gen++
	var c *quicgo.Conn
	if closeConn {
		c = p.takeConnLocked()
	}
	p.mu.Unlock()
	if c != nil {
		c.CloseWithError(codeClosed, "")
	}
}

// stop ends everything the peer runs; its goroutines exit on their own
// (Close waits for them).
func (p *peer) stop() {
	if p.linkCancel != nil {
		p.linkCancel()
		p.linkCancel = nil
	}
	p.mu.Lock()
	p.stopped = true
	p.gen++
	c := p.takeConnLocked()
	p.mu.Unlock()
	p.cancel()
	if c != nil {
		c.CloseWithError(codeClosed, "")
	}
}

func (p *peer) takeConnLocked() *quicgo.Conn {
	c := p.conn.Load()
	if c != nil {
		p.conn.Store(nil)
		p.up = make(chan struct{})
		p.canonical = false
	}
	return c
}

// clear forgets c as the peer's connection, if it still is.
func (p *peer) clear(c *quicgo.Conn) {
	p.mu.Lock()
	if p.conn.Load() == c {
		p.takeConnLocked()
	}
	p.mu.Unlock()
}

// dialLoop keeps dialing the peer at ep, whose certificate must carry
// want, for as long as ctx lives: as the leader, always; as the follower,
// whenever the peer has been without a connection for fallbackDelay.
func (p *peer) dialLoop(ctx context.Context, t *transport, gen uint64, ep netip.AddrPort, want edKey, period time.Duration, leader bool) {
	addr := net.UDPAddrFromAddrPort(ep)
	tlsConf := clientTLS(t.cert, want)
	qconf := quicConfig(period, true)
	backoff := minBackoff
	// A connection this node dialed from a former loop (before a new
	// keep-alive, say) lives on under this one.
	if c := p.own(leader); c != nil {
		if !heartbeat(ctx, c, period) || !p.pause(ctx, minBackoff, leader) {
			return
		}
	}
	for {
		if !leader && !p.awaitOrphaned(ctx) {
			return
		}
		start := time.Now()
		c, err := t.tr.Dial(ctx, addr, tlsConf, qconf)
		if err == nil {
			if err = checkConn(c); err != nil {
				c.CloseWithError(codeBadParams, "")
			} else if err = awaitAccepted(ctx, c); err != nil {
				c.CloseWithError(codeRefused, "")
			}
		}
		switch {
		case err == nil:
			switch p.install(c, gen, leader) {
			case superseded:
				c.CloseWithError(codeClosed, "")
				return
			case taken:
				c.CloseWithError(codeReplaced, "")
			case installed:
				if !heartbeat(ctx, c, period) {
					return
				}
				if time.Since(start) > maxBackoff {
					backoff = minBackoff
				}
			}
		case ctx.Err() != nil:
			return
		default:
			p.mu.Lock()
			first := !p.failing
			p.failing = true
			p.mu.Unlock()
			lvl := slog.LevelDebug
			if first {
				lvl = slog.LevelInfo
			}
			p.b.log.Log(ctx, lvl, "dialing peer failed; retrying", "peer", p.cfgKey(), "endpoint", ep, "err", err)
		}
		if !p.pause(ctx, backoff, leader) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// own returns the connection in use if it is live and this node dialed
// it.
func (p *peer) own(leader bool) *quicgo.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn.Load()
	if c == nil || c.Context().Err() != nil || p.canonical != leader {
		return nil
	}
	return c
}

// pause waits before the next dial: d, or for a leader whose traffic goes
// over the follower's connection, until that closes or leaderRetry
// passes. It returns false when ctx ends.
func (p *peer) pause(ctx context.Context, d time.Duration, leader bool) bool {
	var closed <-chan struct{}
	if leader {
		p.mu.Lock()
		c, canonical := p.conn.Load(), p.canonical
		p.mu.Unlock()
		if c != nil && !canonical && c.Context().Err() == nil {
			d, closed = leaderRetry, c.Context().Done()
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-closed:
	case <-timer.C:
	}
	return true
}

// awaitOrphaned waits until the peer has been without a connection for
// fallbackDelay. It returns false when ctx ends.
func (p *peer) awaitOrphaned(ctx context.Context) bool {
	for {
		p.mu.Lock()
		c, up := p.conn.Load(), p.up
		p.mu.Unlock()
		if c != nil {
			select {
			case <-ctx.Done():
				return false
			case <-c.Context().Done():
			}
			p.clear(c)
			continue
		}
		timer := time.NewTimer(fallbackDelay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-up:
			timer.Stop()
		case <-timer.C:
			return true
		}
	}
}

// heartbeat sends heartbeats on c every period until c closes (it returns
// true) or ctx ends (false).
func heartbeat(ctx context.Context, c *quicgo.Conn, period time.Duration) bool {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c.Context().Done():
			return true
		case <-tick.C:
			c.SendDatagram(heartbeatDatagram)
		}
	}
}

var heartbeatDatagram = func() []byte {
	hb := make([]byte, heartbeatSize)
	hb[0] = typeHeartbeat
	return hb
}()

// cfgKey is the peer's node key, for logs from its goroutines.
func (p *peer) cfgKey() api.NodePublic {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.PublicKey
}

type installResult int

const (
	installed  installResult = iota
	superseded               // the dial loop was replaced or the peer stopped
	taken                    // a follower's dial found a connection in use
)

// install makes c, which this node dialed from the dial loop of generation
// gen, the peer's connection: always for the leader, only while there is
// none in use for the follower.
func (p *peer) install(c *quicgo.Conn, gen uint64, leader bool) installResult {
	p.mu.Lock()
	if p.stopped || p.gen != gen {
		p.mu.Unlock()
		return superseded
	}
	if cur := p.conn.Load(); !leader && cur != nil && cur.Context().Err() == nil {
		p.mu.Unlock()
		return taken
	}
	p.failing = false
	old := p.setConnLocked(c, leader)
	p.mu.Unlock()
	p.started(c, old)
	return installed
}

// adopt makes c, which the peer dialed and which authenticated with key k,
// the peer's connection, if that is still the peer's key: always when the
// peer leads, and while there is no canonical connection in use when this
// node does. Refusing, it probes the connection in use with a heartbeat,
// in case the peer lost it (a peer that restarted resets it).
func (p *peer) adopt(c *quicgo.Conn, k edKey) bool {
	p.mu.Lock()
	if p.stopped || !p.hasKey || p.bkey != k {
		p.mu.Unlock()
		return false
	}
	canonical := !p.leader
	if cur := p.conn.Load(); !canonical && p.canonical && cur != nil && cur.Context().Err() == nil {
		p.mu.Unlock()
		cur.SendDatagram(heartbeatDatagram)
		return false
	}
	old := p.setConnLocked(c, canonical)
	p.mu.Unlock()
	p.started(c, old)
	return true
}

func (p *peer) setConnLocked(c *quicgo.Conn, canonical bool) (old *quicgo.Conn) {
	old = p.conn.Load()
	p.conn.Store(c)
	p.canonical = canonical
	p.handshake = time.Now()
	p.remote = addrPort(c.RemoteAddr())
	if old == nil {
		close(p.up)
	}
	return old
}

// started runs after a connection was installed: it retires the one it
// replaced and starts receiving. It runs on a goroutine counted in b.wg
// (the dial loop or the accept loop), so it may start more.
func (p *peer) started(c, old *quicgo.Conn) {
	if old != nil {
		old.CloseWithError(codeReplaced, "")
	}
	p.b.log.Info("peer connected", "peer", p.cfgKey(), "remote", addrPort(c.RemoteAddr()))
	p.b.wg.Go(func() { p.receive(c) })
}

// lost clears c, which closed with err, as the peer's connection, if it
// still is.
func (p *peer) lost(c *quicgo.Conn, err error) {
	p.clear(c)
	var ae *quicgo.ApplicationError
	if p.b.ctx.Err() != nil || (errors.As(err, &ae) && !ae.Remote) {
		return // we closed it
	}
	p.b.log.Info("peer connection closed", "peer", p.cfgKey(), "reason", err)
}

// waitConn returns the connection in use, waiting for one; nil when the
// peer stops.
func (p *peer) waitConn() *quicgo.Conn {
	for {
		if c := p.conn.Load(); c != nil {
			return c
		}
		p.mu.Lock()
		c, up := p.conn.Load(), p.up
		p.mu.Unlock()
		if c != nil {
			return c
		}
		select {
		case <-up:
		case <-p.ctx.Done():
			return nil
		}
	}
}

// enqueue queues a copy of pkt for the peer, or drops it when the queue is
// full.
func (p *peer) enqueue(pkt []byte) {
	pb := getBuf(len(pkt))
	copy(*pb, pkt)
	select {
	case p.sendq <- pb:
	default:
		putBuf(pb)
	}
}

// sendLoop sends the queued packets on the connection in use, waiting for
// one when there is none (as WireGuard stages packets during a handshake).
func (p *peer) sendLoop() {
	var f fragmenter
	var cur *quicgo.Conn
	for {
		var pb *[]byte
		select {
		case <-p.ctx.Done():
			return
		case pb = <-p.sendq:
		}
		c := p.waitConn()
		if c == nil {
			putBuf(pb)
			return
		}
		if c != cur {
			cur = c
			f = fragmenter{conn: c, packet: f.packet}
		}
		if err := f.send(*pb); err == nil {
			p.tx.Add(uint64(len(*pb)))
		}
		putBuf(pb)
	}
}

// rxBatch is the most packets receive writes to the device at once: the
// first datagram it waits for and those already queued behind it. A batch
// lets the device (wireguard-go's TUN with its offloads) coalesce a TCP
// flow's segments into one large packet (GRO) and one write, where one
// write a packet costs the kernel a pass of its stack each.
const rxBatch = 32

// rxBufSize is the room of each receive buffer past the headroom: 16
// whole packets coalesced into the first. A larger packet, reassembled
// from fragments, gets a buffer of its own.
const rxBufSize = 16 * 1500

// drained is a context already done: ReceiveDatagram with it returns a
// datagram already queued (third_party/quic-go, patch 2) and never waits.
var drained = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// receive delivers the packets arriving on c to the device until c
// closes: whole or reassembled, well-formed, from a source address that
// routes back to this peer, and only while c is the peer's connection.
// It writes them in batches of those that arrived together.
func (p *peer) receive(c *quicgo.Conn) {
	var err error
	defer func() { p.lost(c, err) }()
	var ra reassembler
	bufs := make([][]byte, rxBatch)
	out := make([][]byte, 0, rxBatch)
	for {
		out = out[:0]
		var size int
		for len(out) < rxBatch {
			ctx := p.b.ctx
			if len(out) > 0 {
				ctx = drained
			}
			d, rerr := c.ReceiveDatagram(ctx)
			if rerr != nil {
				if len(out) == 0 {
					err = rerr
					return
				}
				break // none queued, or c closed: the next wait says which
			}
			if pkt := p.unpack(c, &ra, d, &bufs[len(out)]); pkt != nil {
				out = append(out, bufs[len(out)][:offset+len(pkt)])
				size += len(pkt)
			}
		}
		if len(out) == 0 {
			continue
		}
		if _, werr := p.b.dev.Write(out, offset); werr != nil {
			if errors.Is(werr, os.ErrClosed) || p.b.ctx.Err() != nil {
				return
			}
			continue
		}
		p.rx.Add(uint64(size))
	}
}

// unpack returns the packet datagram d carries, copied into *buf past its
// headroom (a buffer of rxBufSize made or replaced as needed): whole, or
// completing a fragmented one. It returns nil for a heartbeat, a fragment
// that completes nothing, a malformed packet, one whose source does not
// route back to this peer, and any once c is no longer the peer's
// connection.
func (p *peer) unpack(c *quicgo.Conn, ra *reassembler, d []byte, buf *[]byte) []byte {
	if len(d) == 0 {
		return nil
	}
	room := func(n int) []byte {
		if len(*buf) < offset+n {
			*buf = make([]byte, offset+max(n, rxBufSize))
		}
		return (*buf)[offset:]
	}
	var pkt []byte
	switch d[0] >> 4 {
	case 4, 6:
		r := room(len(d))
		pkt = r[:copy(r, d)]
	default:
		whole := ra.add(d, time.Now())
		if whole == nil {
			return nil
		}
		pkt = whole.copyTo(room(whole.size))
	}
	src, _, ok := ipAddrs(pkt)
	if !ok || p.b.routes.Load().lookup(src) != p || p.conn.Load() != c {
		return nil
	}
	return pkt
}

// stats reports the peer; the caller holds b.mu.
func (p *peer) stats() backend.PeerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := backend.PeerStats{
		PublicKey:     p.cfg.PublicKey,
		LastHandshake: p.handshake,
		RxBytes:       p.rx.Load(),
		TxBytes:       p.tx.Load(),
		Endpoint:      p.cfg.Endpoint,
	}
	if c := p.conn.Load(); c != nil {
		s.Endpoint = addrPort(c.RemoteAddr())
	} else if p.remote.IsValid() {
		s.Endpoint = p.remote
	}
	return s
}

// Packet buffers queued for sending. Most packets fit poolBufSize; larger
// ones are allocated and left to the collector.
const poolBufSize = 2048

var bufPool = sync.Pool{New: func() any { b := make([]byte, poolBufSize); return &b }}

func getBuf(n int) *[]byte {
	if n > poolBufSize {
		b := make([]byte, n)
		return &b
	}
	pb := bufPool.Get().(*[]byte)
	*pb = (*pb)[:n]
	return pb
}

func putBuf(pb *[]byte) {
	if cap(*pb) == poolBufSize {
		bufPool.Put(pb)
	}
}
