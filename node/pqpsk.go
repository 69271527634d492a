package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/node/pq"
)

// The post-quantum preshared keys (node/pq): every pair whose modes ask
// for one agrees a key over its tunnel, installs it as the pair's
// WireGuard preshared key, and agrees a new one every PQPeriod. The node
// with the lower key initiates; the other answers on its mesh address,
// port pq.Port.

// DefaultPQPeriod is how often a pair agrees a new preshared key.
const DefaultPQPeriod = 2 * time.Minute

const (
	pqTick = time.Second
	// A key not in the session pqRetryFirst after it was installed gets
	// another handshake at every tick until one completes. WireGuard
	// sends no initiation within 5 s (REKEY_TIMEOUT) of its last and
	// drops the request silently: right after a pair's first session
	// (both sides initiated it) neither side may send one for up to 5 s,
	// and the responder's right after the install is dropped. Asking at
	// every tick gets the handshake out as soon as either side may.
	pqRetryFirst   = time.Second
	pqRetryMin     = time.Second
	pqRetryMax     = 30 * time.Second
	pqMaxExchanges = 4 // initiated at once
)

// pqKey is the preshared key a pair holds, and the initiator's schedule.
type pqKey struct {
	psk   pq.PSK
	epoch uint64
	at    time.Time // when it was installed
	// inSession: a handshake completed after at, so the session runs on
	// it. covered: the key it replaced was in the session (or was
	// covered), so the session is post-quantum while this one waits for
	// its handshake: a rotation holds nothing back.
	inSession, covered bool
}

// pqSched is the initiator's schedule for one peer.
type pqSched struct {
	next    time.Time // the next exchange is due
	fails   int
	running bool
	lastErr string
}

// pqWant is what a pair should run.
type pqWant int

const (
	pqWantClassical pqWant = iota
	pqWantPSK
	pqWantRefuse
	pqWantNative // the backend's own exchange is post-quantum
)

// pairPQ decides what this node, of post-quantum mode self on a backend
// that carries preshared keys (psk) or is post-quantum by itself (native),
// runs with peer, and why when that is not a preshared key.
func pairPQ(self string, peer *api.Node, psk, native bool) (pqWant, string) {
	if self == "" {
		self = api.PQOff
	}
	peerMode := peer.PQMode
	if peerMode == "" {
		peerMode = api.PQOff
	}
	switch {
	case native:
		return pqWantNative, ""
	case self == api.PQOff:
		return pqWantClassical, "post-quantum mode off on this node"
	case !psk:
		if self == api.PQRequire {
			return pqWantRefuse, "pq: require, and this node's backend carries no post-quantum preshared key"
		}
		return pqWantClassical, "this node's backend carries no post-quantum preshared key"
	case !slices.Contains(peer.PQ, pq.Scheme):
		if self == api.PQRequire {
			return pqWantRefuse, "pq: require, and the peer runs no post-quantum scheme this node runs (" + pq.Scheme + ")"
		}
		return pqWantClassical, "the peer runs no post-quantum scheme this node runs"
	case peerMode == api.PQOff:
		if self == api.PQRequire {
			return pqWantRefuse, "pq: require, and the peer's post-quantum mode is off"
		}
		return pqWantClassical, "the peer's post-quantum mode is off"
	}
	return pqWantPSK, ""
}

// pqStateLocked is the pair's protection as the status shows it, with the
// reason when it is not post-quantum, and whether its traffic is held
// back (pq: require without a key in the session).
func (n *Node) pqStateLocked(p *api.Node) (state, reason string, gated bool) {
	kind := ""
	if n.dp != nil {
		kind = n.dp.kind
	}
	self := ""
	if n.self != nil {
		self = n.self.PQMode
	}
	want, why := pairPQ(self, p, n.pqCapableLocked(kind), n.cfg.Registry.PostQuantum(kind))
	require := self == api.PQRequire
	switch want {
	case pqWantNative:
		return localapi.PQHybridTLS, "", false
	case pqWantRefuse:
		return localapi.PQRefused, why, true
	case pqWantClassical:
		return localapi.PQClassical, why, false
	}
	k := n.pq[p.NodeKey]
	switch {
	case k == nil:
		why := "no exchange has completed yet"
		if s := n.pqSched[p.NodeKey]; s != nil && s.lastErr != "" {
			why = s.lastErr
		}
		return localapi.PQPending, why, require
	case !k.inSession && !k.covered:
		return localapi.PQPending, "the key is installed; the next handshake puts the session on it", require
	}
	return localapi.PQPSK, "", false
}

// pqCapableLocked reports whether this node runs the exchange on backend
// kind.
func (n *Node) pqCapableLocked(kind string) bool {
	return !n.cfg.NoPQ && n.cfg.Registry.PresharedKeys(kind)
}

// pqSchemes is what the node announces to a controller of capability 4
// or later: the exchange, when any backend it offers carries preshared
// keys.
func (n *Node) pqSchemes() []string {
	if n.cfg.NoPQ || n.client.ControllerVersion() < 4 {
		return nil
	}
	for _, b := range n.supportedBackends() {
		if n.cfg.Registry.PresharedKeys(b) {
			return []string{pq.Scheme}
		}
	}
	return nil
}

// pqPSKLocked is the preshared key the backend config gives peer p: the
// agreed one while the pair wants one, else none.
func (n *Node) pqPSKLocked(p *api.Node) [32]byte {
	k := n.pq[p.NodeKey]
	if k == nil {
		return [32]byte{}
	}
	if state, _, _ := n.pqStateLocked(p); state != localapi.PQPSK && state != localapi.PQPending {
		return [32]byte{}
	}
	return k.psk
}

// runPQ keeps the pairs' preshared keys until ctx ends: it answers
// exchanges on the node's mesh address, starts those this node initiates
// when they are due, notices when a session moves onto a new key, and
// drops the keys of pairs that no longer want one.
func (n *Node) runPQ(ctx context.Context) {
	if n.cfg.NoPQ {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var lis *pqListener
	defer func() {
		if lis != nil {
			lis.close()
		}
	}()
	t := time.NewTicker(pqTick)
	defer t.Stop()
	for {
		lis = n.pqListen(ctx, &wg, lis)
		for _, due := range n.pqTickOnce() {
			wg.Go(func() { n.pqInitiate(ctx, due) })
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pqDue is an exchange to initiate.
type pqDue struct {
	dp         *dataplane
	peer       api.NodePublic
	self, addr netip.Addr // mesh IPv4 addresses
}

// pqTickOnce does what is due under the lock: marks the keys that a
// handshake has put in the session, drops those no pair wants, and
// returns the exchanges to start.
func (n *Node) pqTickOnce() []pqDue {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dp == nil || n.self == nil || n.st == nil {
		return nil
	}
	hs := map[api.NodePublic]time.Time{}
	if stats, err := n.dp.backend.Stats(); err == nil {
		for _, s := range stats {
			hs[s.PublicKey] = s.LastHandshake
		}
	}
	self, ok := meshV4(n.self.Addresses)
	if !ok {
		return nil
	}
	selfKey := n.st.NodeKey.Public()
	changed := false
	wanted := map[api.NodePublic]bool{}
	var due []pqDue
	var rehandshake []api.NodePublic
	running := 0
	for _, s := range n.pqSched {
		if s.running {
			running++
		}
	}
	now := time.Now()
	for _, p := range n.peers {
		if p.NodeKey.IsZero() {
			continue
		}
		want, _ := pairPQ(n.self.PQMode, &p, n.pqCapableLocked(n.dp.kind), n.cfg.Registry.PostQuantum(n.dp.kind))
		if want != pqWantPSK {
			continue
		}
		wanted[p.NodeKey] = true
		if k := n.pq[p.NodeKey]; k != nil && !k.inSession {
			switch {
			case hs[p.NodeKey].After(k.at):
				k.inSession, changed = true, true
				n.log.Info("post-quantum preshared key in the session", "peer", p.ID, "key", k.psk.Fingerprint())
			case now.Sub(k.at) > pqRetryFirst:
				rehandshake = append(rehandshake, p.NodeKey)
			}
		}
		if !pq.Initiates(selfKey, p.NodeKey) {
			continue
		}
		s := n.pqSched[p.NodeKey]
		if s == nil {
			s = &pqSched{}
			n.pqSched[p.NodeKey] = s
		}
		k := n.pq[p.NodeKey]
		if s.running || now.Before(s.next) || (k != nil && now.Sub(k.at) < n.pqPeriod()) || running >= pqMaxExchanges {
			continue
		}
		addr, ok := meshV4(p.Addresses)
		if !ok {
			continue
		}
		s.running = true
		running++
		due = append(due, pqDue{dp: n.dp, peer: p.NodeKey, self: self, addr: addr})
	}
	if rh, ok := n.dp.backend.(backend.Rehandshaker); ok {
		for _, k := range rehandshake {
			rh.Rehandshake(k)
		}
	}
	var dropped []api.NodePublic
	for k := range n.pq {
		if !wanted[k] {
			delete(n.pq, k)
			dropped = append(dropped, k)
			changed = true
		}
	}
	for k, s := range n.pqSched {
		if !wanted[k] && !s.running {
			delete(n.pqSched, k)
		}
	}
	if changed {
		if _, err := n.reconfigLocked(); err != nil {
			n.log.Warn("applying post-quantum keys", "err", err)
		}
		// A dropped key leaves the session on it until the next
		// handshake: start one, so that the pair is classical again
		// now. Whichever side drops its key last completes it.
		if rh, ok := n.dp.backend.(backend.Rehandshaker); ok {
			for _, k := range dropped {
				rh.Rehandshake(k)
			}
		}
	}
	return due
}

func (n *Node) pqPeriod() time.Duration {
	if n.cfg.PQPeriod > 0 {
		return n.cfg.PQPeriod
	}
	return DefaultPQPeriod
}

// pqInitiate runs one exchange with a peer and installs its key.
func (n *Node) pqInitiate(ctx context.Context, d pqDue) {
	n.mu.Lock()
	self := n.st.NodeKey
	n.mu.Unlock()
	start := time.Now()
	res, err := func() (*pq.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, pq.Timeout)
		defer cancel()
		conn, err := d.dp.dialPQ(ctx, d.self, d.addr)
		if err != nil {
			return nil, fmt.Errorf("connect to the peer's exchange (%s): %w", netip.AddrPortFrom(d.addr, pq.Port), err)
		}
		defer conn.Close()
		return pq.Initiate(ctx, conn, self, d.peer, uint64(time.Now().UnixNano()))
	}()
	n.metrics.pqExchanges.WithLabelValues("initiator", pqResult(err)).Inc()
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.pqSched[d.peer]
	if s == nil {
		s = &pqSched{}
		n.pqSched[d.peer] = s
	}
	s.running = false
	if err != nil {
		s.fails++
		s.lastErr = err.Error()
		s.next = time.Now().Add(min(pqRetryMin<<min(s.fails-1, 5), pqRetryMax))
		if ctx.Err() == nil {
			n.log.Warn("post-quantum key exchange", "role", "initiator", "err", err, "retry_in", time.Until(s.next).Round(time.Millisecond))
		}
		return
	}
	n.metrics.pqExchangeTime.Observe(time.Since(start).Seconds())
	s.fails, s.lastErr, s.next = 0, "", time.Time{}
	n.pqInstallLocked(d.dp, d.peer, res, false)
}

// pqInstallLocked makes res the pair's key. The responder, which installs
// last, starts a handshake so that the session moves onto it at once.
func (n *Node) pqInstallLocked(dp *dataplane, peer api.NodePublic, res *pq.Result, responder bool) {
	if n.dp != dp {
		return // the dataplane was replaced meanwhile: the next round agrees a key on the new one
	}
	old := n.pq[peer]
	covered := false
	if old != nil {
		// The session runs on the old key if a handshake completed since
		// it was installed, whether or not a tick has seen it yet: a
		// rotation right after that handshake must not lose it.
		covered = old.inSession || old.covered || lastHandshake(dp.backend, peer).After(old.at)
	}
	n.pq[peer] = &pqKey{psk: res.PSK, epoch: res.Epoch, at: time.Now(), covered: covered}
	if _, err := n.reconfigLocked(); err != nil {
		n.log.Warn("installing a post-quantum preshared key", "err", err)
		return
	}
	role := "initiator"
	if responder {
		role = "responder"
		if rh, ok := dp.backend.(backend.Rehandshaker); ok {
			if err := rh.Rehandshake(peer); err != nil {
				n.log.Warn("starting a handshake on the new preshared key", "err", err)
			}
		}
	}
	n.log.Info("post-quantum preshared key agreed", "peer", peer, "role", role, "key", res.PSK.Fingerprint(), "took", res.Took.Round(time.Microsecond))
}

// lastHandshake is when b's last handshake with peer completed (zero when
// it cannot say).
func lastHandshake(b backend.Backend, peer api.NodePublic) time.Time {
	st, err := b.Stats()
	if err != nil {
		return time.Time{}
	}
	for _, s := range st {
		if s.PublicKey == peer {
			return s.LastHandshake
		}
	}
	return time.Time{}
}

// pqListener is the responder's listener on one dataplane.
type pqListener struct {
	dp   *dataplane
	addr netip.Addr
	l    net.Listener
}

func (l *pqListener) close() { l.l.Close() }

// pqListen keeps a listener on the current dataplane's mesh IPv4 address:
// it returns lis if that is still it, else closes lis and opens another
// (nil when there is no dataplane yet, or it cannot listen yet).
func (n *Node) pqListen(ctx context.Context, wg *sync.WaitGroup, lis *pqListener) *pqListener {
	n.mu.Lock()
	dp := n.dp
	var addr netip.Addr
	ok := false
	if n.self != nil {
		addr, ok = meshV4(n.self.Addresses)
	}
	n.mu.Unlock()
	if lis != nil && lis.dp == dp && lis.addr == addr {
		return lis
	}
	if lis != nil {
		lis.close()
	}
	if dp == nil || !ok {
		return nil
	}
	l, err := dp.listenPQ(addr)
	if err != nil {
		n.log.Debug("the post-quantum exchange cannot listen yet", "addr", addr, "err", err)
		return nil
	}
	lis = &pqListener{dp: dp, addr: addr, l: l}
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { n.pqServe(ctx, dp, conn) })
		}
	})
	return lis
}

// pqServe answers one exchange.
func (n *Node) pqServe(ctx context.Context, dp *dataplane, conn net.Conn) {
	defer conn.Close()
	from, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return
	}
	n.mu.Lock()
	self := n.st.NodeKey
	var peer *api.Node
	for _, p := range n.peers {
		if !p.NodeKey.IsZero() && slices.ContainsFunc(p.AllowedIPs, func(pf netip.Prefix) bool { return pf.Contains(from.Addr().Unmap()) }) {
			peer = &p
			break
		}
	}
	refusal := ""
	switch {
	case peer == nil:
		refusal = "no peer of this node sends from " + from.Addr().String()
	default:
		if want, why := pairPQ(n.self.PQMode, peer, n.pqCapableLocked(dp.kind), false); want != pqWantPSK {
			refusal = why
		}
	}
	n.mu.Unlock()
	if peer == nil {
		conn.Write(pq.Refusal(refusal))
		n.metrics.pqExchanges.WithLabelValues("responder", "refused").Inc()
		return
	}
	res, err := pq.Serve(ctx, conn, self, peer.NodeKey, func() string { return refusal })
	n.metrics.pqExchanges.WithLabelValues("responder", pqResult(err)).Inc()
	if err != nil {
		if ctx.Err() == nil {
			n.log.Debug("post-quantum key exchange", "role", "responder", "peer", peer.ID, "err", err)
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pqInstallLocked(dp, peer.NodeKey, res, true)
}

func pqResult(err error) string {
	var refused *pq.RefusedError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &refused):
		return "refused"
	}
	return "error"
}

// dialPQ opens a connection to a peer's exchange, from this node's mesh
// address through the tunnel.
func (dp *dataplane) dialPQ(ctx context.Context, self, peer netip.Addr) (net.Conn, error) {
	to := netip.AddrPortFrom(peer, pq.Port)
	if dp.net != nil {
		return dp.net.DialContextTCPAddrPort(ctx, to)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: self.AsSlice()}}
	return d.DialContext(ctx, "tcp", to.String())
}

// listenPQ listens for exchanges on this node's mesh address.
func (dp *dataplane) listenPQ(self netip.Addr) (net.Listener, error) {
	at := netip.AddrPortFrom(self, pq.Port)
	if dp.net != nil {
		return dp.net.ListenTCPAddrPort(at)
	}
	return net.Listen("tcp", at.String())
}

// meshV4 is the IPv4 address among a node's mesh addresses.
func meshV4(addrs []netip.Prefix) (netip.Addr, bool) {
	for _, a := range addrs {
		if a.Addr().Is4() {
			return a.Addr(), true
		}
	}
	return netip.Addr{}, false
}
