// Package quic is a second data-plane backend: IP packets carried in QUIC
// datagrams (RFC 9221) over github.com/quic-go/quic-go.
//
// Identity. Each node derives an Ed25519 key from its node (X25519)
// private key (see PublicKey) and presents a self-signed certificate for
// it; both sides authenticate (mutual TLS). A peer is accepted only when
// its certificate carries the key the controller distributed for it
// (backend.Peer.BackendKey): there is no trust on first use and no Web
// PKI. TLS 1.3 with the hybrid post-quantum group X25519MLKEM768 is the
// only thing offered or accepted, and every connection is checked for it
// again once established, so a classical key exchange fails closed.
//
// Transport. One UDP socket and one quic-go Transport serve as both
// server and client. Each pair of peers keeps one connection: the node
// whose node public key is lower (bytewise) leads and dials it, redialing
// with backoff when it drops; the other accepts it, and dials a fallback
// connection itself only after half a second without one (when it can
// reach the leader but not the other way round); the leader's connection
// takes over whenever it comes up (see peer.go). In TLS 1.3 a client
// completes its handshake before the server has checked the client's
// certificate, so the acceptor, once it has adopted a connection, opens a
// unidirectional stream and sends the single byte acceptedByte on it; the
// dialer uses the connection only after reading it. The dialer sends
// heartbeats that keep the connection open and that an acceptor which
// lost it (restarted) answers with a stateless reset, its reset key being
// derived from the node key. Sends to an unreachable network count as
// losses rather than ending the connection, so it survives a link flap.
// When the dialing peer's address changes (NAT rebinding, roaming),
// quic-go validates the new path and the accepting side follows it; when
// the configured Endpoint of a peer changes, the leader redials there.
//
// Packets. IP packets read from the device are routed by destination to
// the peer whose AllowedIPs hold the longest matching prefix; packets
// received from a peer are delivered only when their source routes back to
// that same peer. A packet larger than the connection's current maximum
// datagram is sent in fragments (see frag.go). QUIC's packet protection
// drops replayed, forged and altered datagrams.
package quic

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

// Name is the name the backend registers under.
const Name = "quic"

// MaxMTU is the largest IP packet one QUIC datagram carries once path MTU
// discovery has run on a path that takes quic-go's largest packets (1452
// bytes of UDP payload, a 1500-byte link): the discovery stops within 21
// bytes of that cap, at 1441-byte packets, and quic-go then takes
// datagrams of up to 1404 bytes (1441 less a type byte, room for a 20-byte
// connection ID and the 16-byte tag). Larger packets are fragmented, at
// about half the throughput.
const MaxMTU = 1404

// Register adds the backend to r.
func Register(r *backend.Registry) {
	r.Register(backend.Spec{Name: Name, New: New, PublicKey: PublicKey, MaxMTU: MaxMTU, PostQuantum: true})
}

const (
	// offset is the headroom left before each packet in device buffers,
	// as wireguard-go does (a Linux TUN with offloads writes its virtio
	// header there).
	offset = 16

	handshakeTimeout = 5 * time.Second
	idleTimeout      = 30 * time.Second
	keepalive        = 10 * time.Second

	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second

	// acceptedByte is what the acceptor sends on the stream it opens to
	// tell the dialer that it took the connection.
	acceptedByte = 0x01
)

// Application error codes sent when closing a connection.
const (
	codeClosed    quicgo.ApplicationErrorCode = 0 // removed, rekeyed, shut down
	codeReplaced  quicgo.ApplicationErrorCode = 1 // a newer connection took over
	codeRefused   quicgo.ApplicationErrorCode = 2 // not a peer that may connect
	codeBadParams quicgo.ApplicationErrorCode = 3 // not post-quantum, no datagrams or wrong ALPN
)

// Backend is the QUIC data plane.
type Backend struct {
	log *slog.Logger
	dev tun.Device

	// wg counts every goroutine the backend starts; Close waits for it.
	wg     sync.WaitGroup
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	// Read without locks on the packet paths; replaced whole by Reconfig.
	routes  atomic.Pointer[table]
	accepts atomic.Pointer[map[edKey]*peer] // peers, by certificate key

	mu      sync.Mutex
	closed  bool
	done    chan struct{} // closed when Close has finished
	started bool
	key     key.NodePrivate
	self    api.NodePublic
	port    uint16
	tr      *transport
	peers   map[api.NodePublic]*peer
}

var _ backend.Backend = (*Backend)(nil)

// New starts a backend on o.Device. It listens nowhere until the first
// Reconfig gives it a key.
func New(o backend.Options) (backend.Backend, error) {
	if o.Device == nil {
		return nil, errors.New("no packet device")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{
		log:   o.Logger.With("backend", Name),
		dev:   o.Device,
		done:  make(chan struct{}),
		peers: make(map[api.NodePublic]*peer),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.routes.Store(newTable(nil))
	b.accepts.Store(&map[edKey]*peer{})
	b.wg.Go(b.readDevice)
	b.wg.Go(b.readEvents)
	return b, nil
}

// transport is one UDP socket and the quic-go Transport on it, with the
// listener and the certificate of one node key.
type transport struct {
	sock *net.UDPConn
	tr   *quicgo.Transport
	ln   *quicgo.Listener
	cert tls.Certificate
	done chan struct{} // the accept loop returned
}

// Reconfig implements backend.Backend. Unchanged peers keep their
// connections; a peer whose BackendKey changed, or (when this node leads
// the pair) whose Endpoint changed, is reconnected; changes of AllowedIPs
// and Keepalive take effect without reconnecting. A new private key or
// listen port restarts every connection. A peer without a usable
// BackendKey stays configured (Stats lists it) but can never connect:
// nothing could authenticate it.
func (b *Backend) Reconfig(cfg *backend.Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("backend closed")
	}
	if cfg.PrivateKey.IsZero() {
		return errors.New("no private key")
	}
	self := cfg.PrivateKey.Public()
	want := make(map[api.NodePublic]backend.Peer, len(cfg.Peers))
	for _, p := range cfg.Peers {
		if _, dup := want[p.PublicKey]; dup {
			return fmt.Errorf("peer %s given twice", p.PublicKey)
		}
		if p.PublicKey == self {
			return fmt.Errorf("peer %s is this node", p.PublicKey)
		}
		want[p.PublicKey] = p
	}

	rekey := !b.started || !b.key.Equal(cfg.PrivateKey)
	rebind := !b.started || (cfg.ListenPort != 0 && cfg.ListenPort != b.port)
	changed := rekey || rebind || len(want) != len(b.peers)
	for k, p := range want {
		if old, ok := b.peers[k]; !ok || !old.cfg.Equal(&p) {
			changed = true
		}
	}
	if !changed {
		return backend.ErrNoChanges
	}

	if rekey || rebind {
		if err := b.rebuild(cfg, rebind); err != nil {
			return err
		}
		b.key, b.self, b.started = cfg.PrivateKey, self, true
	}

	// Peers: remove, update, add.
	for k, p := range b.peers {
		if _, ok := want[k]; !ok {
			p.stop()
			delete(b.peers, k)
			b.log.Info("peer removed", "peer", k)
		}
	}
	relink := make(map[*peer]change)
	order := make([]*peer, 0, len(cfg.Peers))
	for _, pc := range cfg.Peers {
		p, ok := b.peers[pc.PublicKey]
		if !ok {
			p = b.newPeer(pc)
			b.peers[pc.PublicKey] = p
			relink[p] = redial
			b.log.Info("peer added", "peer", pc.PublicKey, "leads", p.leader, "endpoint", pc.Endpoint)
		} else if ch := p.update(pc, self); ch != unchanged {
			relink[p] = ch
		}
		order = append(order, p)
	}

	// Publish the new routes and accepted keys before connecting, so that a
	// new connection is checked against the new config.
	b.routes.Store(newTable(order))
	acc := make(map[edKey]*peer)
	for _, p := range order {
		if _, dup := acc[p.bkey]; p.hasKey && !dup {
			acc[p.bkey] = p
		}
	}
	b.accepts.Store(&acc)

	if rekey || rebind {
		for _, p := range b.peers {
			p.relink(b.tr, true)
		}
	} else {
		for p, ch := range relink {
			p.relink(b.tr, ch == reconnect)
		}
	}
	return nil
}

// rebuild replaces the transport: a new socket when the port changes (or
// on the first call), a new certificate when the key changes. Every
// connection is closed first, with a CONNECTION_CLOSE so peers redial at
// once. When the port cannot be bound nothing has changed.
func (b *Backend) rebuild(cfg *backend.Config, rebind bool) error {
	var sock *net.UDPConn
	if rebind {
		var err error
		sock, err = net.ListenUDP("udp", &net.UDPAddr{Port: int(cfg.ListenPort)})
		if err != nil {
			return fmt.Errorf("listen on UDP port %d: %w", cfg.ListenPort, err)
		}
	}
	cert, err := certificate(signingKey(cfg.PrivateKey))
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return fmt.Errorf("certificate: %w", err)
	}
	if old := b.tr; old != nil {
		old.ln.Close()
		<-old.done // the accept loop adopts nothing more
		for _, p := range b.peers {
			p.unlink(true)
		}
		old.tr.Close()
		if rebind {
			old.sock.Close()
		} else {
			sock = old.sock
		}
	}
	t := &transport{
		sock: sock,
		tr: &quicgo.Transport{
			Conn:              udpConn{sock},
			StatelessResetKey: resetKey(cfg.PrivateKey),
		},
		cert: cert,
		done: make(chan struct{}),
	}
	known := func(k edKey) bool { _, ok := (*b.accepts.Load())[k]; return ok }
	ln, err := t.tr.Listen(serverTLS(cert, known), quicConfig(keepalive, false))
	if err != nil {
		// The old transport is gone; the backend has no socket now and
		// the next Reconfig starts afresh.
		t.tr.Close()
		sock.Close()
		b.tr, b.started, b.port = nil, false, 0
		return fmt.Errorf("listen: %w", err)
	}
	t.ln = ln
	b.tr = t
	b.port = uint16(sock.LocalAddr().(*net.UDPAddr).Port)
	b.wg.Go(func() { b.accept(t) })
	if rebind {
		b.log.Info("listening", "port", b.port)
	}
	return nil
}

// accept adopts the connections peers open to us.
func (b *Backend) accept(t *transport) {
	defer close(t.done)
	for {
		c, err := t.ln.Accept(b.ctx)
		if err != nil {
			return
		}
		if err := checkConn(c); err != nil {
			b.log.Warn("connection refused", "remote", c.RemoteAddr(), "err", err)
			c.CloseWithError(codeBadParams, "")
			continue
		}
		k, err := connKey(c)
		p := (*b.accepts.Load())[k]
		if err != nil || p == nil || !p.adopt(c, k) {
			b.log.Debug("connection refused", "remote", c.RemoteAddr())
			c.CloseWithError(codeRefused, "")
			continue
		}
		if err := sendAccepted(c); err != nil {
			c.CloseWithError(codeBadParams, "")
		}
	}
}

// sendAccepted tells the dialer of c that we took the connection.
func sendAccepted(c *quicgo.Conn) error {
	s, err := c.OpenUniStream()
	if err != nil {
		return err
	}
	if _, err := s.Write([]byte{acceptedByte}); err != nil {
		return err
	}
	return s.Close()
}

// awaitAccepted waits until the acceptor of c says it took the connection,
// or c closes (the acceptor refused our certificate), or ctx ends.
func awaitAccepted(ctx context.Context, c *quicgo.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	s, err := c.AcceptUniStream(ctx)
	if err != nil {
		if cause := context.Cause(c.Context()); cause != nil {
			return cause // the acceptor's reason
		}
		return err
	}
	s.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var buf [1]byte
	if _, err := io.ReadFull(s, buf[:]); err != nil {
		return err
	}
	if buf[0] != acceptedByte {
		return fmt.Errorf("acceptor sent %#x, want %#x", buf[0], acceptedByte)
	}
	return nil
}

// quicConfig is the connection config; period is the keep-alive period.
// Packets travel only in datagrams; the one stream is the acceptor's, to
// the dialer, saying it took the connection.
func quicConfig(period time.Duration, dialer bool) *quicgo.Config {
	uni := int64(-1)
	if dialer {
		uni = 1
	}
	return &quicgo.Config{
		HandshakeIdleTimeout:  handshakeTimeout,
		MaxIdleTimeout:        idleTimeout,
		KeepAlivePeriod:       period,
		EnableDatagrams:       true,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: uni,
	}
}

// readDevice routes the packets read from the device to their peers.
func (b *Backend) readDevice() {
	n := max(b.dev.BatchSize(), 1)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+maxPacket)
	}
	sizes := make([]int, n)
	for {
		n, err := b.dev.Read(bufs, sizes, offset)
		for i := range n {
			b.route(bufs[i][offset : offset+sizes[i]])
		}
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				continue // some packets of a batch were lost, the device is fine
			}
			if b.ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				b.log.Error("reading the packet device; no more packets will be sent", "err", err)
			}
			return
		}
	}
}

func (b *Backend) route(pkt []byte) {
	_, dst, ok := ipAddrs(pkt)
	if !ok {
		return
	}
	if p := b.routes.Load().lookup(dst); p != nil {
		p.enqueue(pkt)
	}
}

// readEvents consumes the device's events so that the device never blocks
// on them.
func (b *Backend) readEvents() {
	ev := b.dev.Events()
	for {
		select {
		case <-b.ctx.Done():
			return
		case e, ok := <-ev:
			if !ok {
				return
			}
			if e&tun.EventMTUUpdate != 0 {
				mtu, _ := b.dev.MTU()
				b.log.Debug("device MTU changed", "mtu", mtu)
			}
		}
	}
}

// Stats implements backend.Backend.
func (b *Backend) Stats() ([]backend.PeerStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]backend.PeerStats, 0, len(b.peers))
	for _, p := range b.peers {
		out = append(out, p.stats())
	}
	return out, nil
}

// Port implements backend.Backend.
func (b *Backend) Port() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}

// Close implements backend.Backend. Peers get a CONNECTION_CLOSE, so they
// learn at once that this node is gone.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	t, peers := b.tr, b.peers
	b.tr, b.peers = nil, nil
	b.routes.Store(newTable(nil))
	b.accepts.Store(&map[edKey]*peer{})
	b.mu.Unlock()

	if t != nil {
		t.ln.Close()
		<-t.done
	}
	for _, p := range peers {
		p.stop()
	}
	if t != nil {
		t.tr.Close()
		t.sock.Close()
	}
	err := b.dev.Close() // unblocks readDevice and any delivery in progress
	b.cancel()
	b.wg.Wait()
	close(b.done)
	return err
}

// addrPort converts a net.Addr from quic-go to a netip.AddrPort, with an
// IPv4 address unmapped from the dual-stack socket's IPv6 form.
func addrPort(a net.Addr) netip.AddrPort {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dials reports whether self leads the pair with peer, dialing the
// canonical connection: the lower key leads.
func dials(self, peer api.NodePublic) bool { return bytes.Compare(self[:], peer[:]) < 0 }
