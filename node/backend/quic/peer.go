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
const sendQueueLen = 256

// peer is one configured peer: its connection, the goroutine that sends
// to it and, when this node dials it, the dial loop.
type peer struct {
	b *Backend

	// Written by Reconfig under both b.mu and mu; read under either.
	cfg        backend.Peer
	bkey       edKey
	hasKey     bool
	dial       bool
	linkCancel context.CancelFunc // stops the dial loop

	ctx    context.Context // the peer's lifetime
	cancel context.CancelFunc
	sendq  chan *[]byte

	rx, tx atomic.Uint64
	conn   atomic.Pointer[quicgo.Conn] // the connection in use; set under mu

	mu        sync.Mutex
	gen       uint64        // bumped whenever connections are torn down
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

// update applies a peer's new config and reports whether its connection
// must be re-established: its key changed, or this node dials it and its
// endpoint changed.
func (p *peer) update(pc backend.Peer, self api.NodePublic) bool {
	old := p.cfg
	bkey, err := parseKey(pc.BackendKey)
	if err != nil && (pc.BackendKey != old.BackendKey || old.PublicKey.IsZero()) {
		p.b.log.Warn("peer has no usable quic key and cannot connect", "peer", pc.PublicKey, "err", err)
	}
	dial := dials(self, pc.PublicKey)
	relink := pc.BackendKey != old.BackendKey || (dial && pc.Endpoint != old.Endpoint)
	p.mu.Lock()
	p.cfg, p.bkey, p.hasKey, p.dial = pc, bkey, err == nil, dial
	if dial && pc.Endpoint != old.Endpoint {
		p.remote = netip.AddrPort{}
	}
	p.mu.Unlock()
	return relink
}

// relink closes the peer's connection and, when this node dials it,
// starts dialing on t.
func (p *peer) relink(t *transport) {
	p.unlink()
	if t == nil || !p.dial || !p.hasKey || !p.cfg.Endpoint.IsValid() {
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
	ep, want := p.cfg.Endpoint, p.bkey
	p.b.wg.Go(func() { p.dialLoop(ctx, t, gen, ep, want, period) })
}

// unlink stops the dial loop and closes the connection.
func (p *peer) unlink() {
	if p.linkCancel != nil {
		p.linkCancel()
		p.linkCancel = nil
	}
	p.mu.Lock()
	p.gen++
	c := p.takeConnLocked()
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
	}
	return c
}

// dialLoop keeps a connection to the peer at ep, whose certificate must
// carry want, for as long as ctx lives.
func (p *peer) dialLoop(ctx context.Context, t *transport, gen uint64, ep netip.AddrPort, want edKey, period time.Duration) {
	addr := net.UDPAddrFromAddrPort(ep)
	tlsConf := clientTLS(t.cert, want)
	qconf := quicConfig(period, true)
	backoff := minBackoff
	for {
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
			if !p.install(c, gen) {
				c.CloseWithError(codeClosed, "")
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-c.Context().Done():
			}
			if time.Since(start) > maxBackoff {
				backoff = minBackoff
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
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// cfgKey is the peer's node key, for logs from its goroutines.
func (p *peer) cfgKey() api.NodePublic {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.PublicKey
}

// install makes c, which this node dialed, the peer's connection, unless
// the dial loop that made it (generation gen) has been superseded.
func (p *peer) install(c *quicgo.Conn, gen uint64) bool {
	p.mu.Lock()
	if p.stopped || p.gen != gen {
		p.mu.Unlock()
		return false
	}
	p.failing = false
	old := p.setConnLocked(c)
	p.mu.Unlock()
	p.started(c, old)
	return true
}

// adopt makes c, which the peer dialed and which authenticated with key k,
// the peer's connection, if the peer is still configured to dial us with
// that key.
func (p *peer) adopt(c *quicgo.Conn, k edKey) bool {
	p.mu.Lock()
	if p.stopped || p.dial || !p.hasKey || p.bkey != k {
		p.mu.Unlock()
		return false
	}
	old := p.setConnLocked(c)
	p.mu.Unlock()
	p.started(c, old)
	return true
}

func (p *peer) setConnLocked(c *quicgo.Conn) (old *quicgo.Conn) {
	old = p.conn.Load()
	p.conn.Store(c)
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

// lost clears c as the peer's connection, if it still is.
func (p *peer) lost(c *quicgo.Conn) {
	p.mu.Lock()
	if p.conn.Load() == c {
		p.conn.Store(nil)
		p.up = make(chan struct{})
	}
	pk := p.cfg.PublicKey
	p.mu.Unlock()
	var ae *quicgo.ApplicationError
	if err := context.Cause(c.Context()); errors.As(err, &ae) && !ae.Remote {
		return // we closed it, and said why where we did
	}
	p.b.log.Info("peer connection closed", "peer", pk, "reason", context.Cause(c.Context()))
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

// receive delivers the packets arriving on c to the device until c
// closes: whole or reassembled, well-formed, from a source address that
// routes back to this peer, and only while c is the peer's connection.
func (p *peer) receive(c *quicgo.Conn) {
	defer p.lost(c)
	var ra reassembler
	buf := make([]byte, offset+1500)
	bufs := make([][]byte, 1)
	for {
		d, err := c.ReceiveDatagram(p.b.ctx)
		if err != nil {
			return
		}
		if len(d) == 0 {
			continue
		}
		var pkt []byte
		switch d[0] >> 4 {
		case 4, 6:
			buf = grow(buf, offset+len(d))
			pkt = buf[offset : offset+copy(buf[offset:], d)]
		default:
			whole := ra.add(d, time.Now())
			if whole == nil {
				continue
			}
			buf = grow(buf, offset+whole.size)
			pkt = whole.copyTo(buf[offset:])
		}
		src, _, ok := ipAddrs(pkt)
		if !ok || p.b.routes.Load().lookup(src) != p || p.conn.Load() != c {
			continue
		}
		bufs[0] = buf[:offset+len(pkt)]
		if _, err := p.b.dev.Write(bufs, offset); err != nil {
			if errors.Is(err, os.ErrClosed) || p.b.ctx.Err() != nil {
				return
			}
			continue
		}
		p.rx.Add(uint64(len(pkt)))
	}
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

func grow(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return make([]byte, n)
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
