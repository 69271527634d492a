// Package wireguard is the default backend: golang.zx2c4.com/wireguard's
// device, configured through its UAPI, with an optional UAPI socket so that
// `wg show IFACE` (wireguard-tools) shows the interface and its peers.
//
// It is the only package that imports wireguard-go's device package.
package wireguard

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

// Name is the name the backend registers under.
const Name = "wireguard"

// Register adds the backend to r.
func Register(r *backend.Registry) {
	r.Register(backend.Spec{Name: Name, New: New, PresharedKeys: true, Preflight: Preflight})
}

// uapiDir is wireguard-go's socket directory (ipc's socketDirectory), where
// wireguard-tools looks for IFACE.sock. It is one directory for the whole
// host: network namespaces do not separate it (only a mount namespace
// would), so two devices of one name, in two namespaces, want one socket.
// The node keeps that path rather than one per namespace, because that is
// where `wg show IFACE` (in any namespace) looks.
const uapiDir = "/var/run/wireguard"

func uapiPath(iface string) string { return uapiDir + "/" + iface + ".sock" }

// Preflight reports whether a WireGuard device named iface can serve its
// UAPI socket: it cannot while another process serves that socket, for a
// device of that name in this network namespace or in any other.
func Preflight(iface string) error {
	if iface == "" {
		return nil
	}
	c, err := net.DialTimeout("unix", uapiPath(iface), time.Second)
	if err != nil {
		return nil // no socket, or a stale one that New replaces
	}
	c.Close()
	return uapiInUse(iface)
}

func uapiInUse(iface string) error {
	return fmt.Errorf("the WireGuard UAPI socket %s is in use by another WireGuard device named %s on this host "+
		"(another rustynetd or wireguard-go, perhaps in another network namespace: the socket's directory is shared by every namespace); "+
		"give this node another --interface name", uapiPath(iface), iface)
}

// Backend is a wireguard-go device behind the backend interface.
type Backend struct {
	log   *slog.Logger
	dev   *device.Device
	quiet *quietLog

	uapi     net.Listener
	uapiDone chan struct{}

	mu      sync.Mutex
	started bool
	key     key.NodePrivate
	port    uint16
	peers   map[api.NodePublic]backend.Peer
	closed  bool
}

var _ backend.Backend = (*Backend)(nil)

// New creates the device on o.Device. With o.Interface set it also serves
// the UAPI socket /var/run/wireguard/IFACE.sock.
func New(o backend.Options) (backend.Backend, error) {
	if o.Device == nil {
		return nil, errors.New("no packet device")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("backend", Name)
	b := &Backend{
		log:   log,
		quiet: &quietLog{log: log, noEndpoint: map[string]bool{}},
		peers: make(map[api.NodePublic]backend.Peer),
	}
	b.dev = device.NewDevice(o.Device, conn.NewDefaultBind(), &device.Logger{
		Verbosef: b.quiet.verbosef,
		Errorf:   b.quiet.errorf,
	})
	if o.Interface != "" {
		f, err := ipc.UAPIOpen(o.Interface)
		if err != nil {
			b.dev.Close()
			if Preflight(o.Interface) != nil {
				return nil, uapiInUse(o.Interface)
			}
			return nil, fmt.Errorf("UAPI socket for %s: %w", o.Interface, err)
		}
		l, err := ipc.UAPIListen(o.Interface, f)
		f.Close()
		if err != nil {
			b.dev.Close()
			return nil, fmt.Errorf("UAPI socket for %s: %w", o.Interface, err)
		}
		b.uapi, b.uapiDone = l, make(chan struct{})
		go b.serveUAPI()
	}
	return b, nil
}

func (b *Backend) serveUAPI() {
	defer close(b.uapiDone)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := b.uapi.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			// IpcHandle returns when the client hangs up; bound it in
			// case one never does.
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b.dev.IpcHandle(c)
		})
	}
}

// Reconfig implements backend.Backend. It sends wireguard-go only what
// changed: removed peers, new or changed peers (an endpoint only when the
// configured one changed, so a roamed peer stays where it is), the private
// key and the port.
func (b *Backend) Reconfig(cfg *backend.Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("backend closed")
	}
	if cfg.PrivateKey.IsZero() {
		return errors.New("no private key")
	}
	var sb strings.Builder
	if !b.started || !b.key.Equal(cfg.PrivateKey) {
		fmt.Fprintf(&sb, "private_key=%s\n", cfg.PrivateKey.UAPI())
	}
	if !b.started || (cfg.ListenPort != 0 && cfg.ListenPort != b.port) {
		fmt.Fprintf(&sb, "listen_port=%d\n", cfg.ListenPort)
	}
	want := make(map[api.NodePublic]backend.Peer, len(cfg.Peers))
	for _, p := range cfg.Peers {
		if _, dup := want[p.PublicKey]; dup {
			return fmt.Errorf("peer %s given twice", p.PublicKey)
		}
		want[p.PublicKey] = p
	}
	var located []api.NodePublic // peers given an endpoint, or removed: their state changed
	for k := range b.peers {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&sb, "public_key=%s\nremove=true\n", hexKey(k))
			located = append(located, k)
		}
	}
	for k, p := range want {
		old, had := b.peers[k]
		if had && old.Equal(&p) {
			continue
		}
		fmt.Fprintf(&sb, "public_key=%s\n", hexKey(k))
		if !had || !slices.Equal(old.AllowedIPs, p.AllowedIPs) {
			sb.WriteString("replace_allowed_ips=true\n")
			for _, a := range p.AllowedIPs {
				fmt.Fprintf(&sb, "allowed_ip=%s\n", a)
			}
		}
		if p.Endpoint.IsValid() && (!had || old.Endpoint != p.Endpoint) {
			fmt.Fprintf(&sb, "endpoint=%s\n", p.Endpoint)
			located = append(located, k)
		}
		if !had || old.Keepalive != p.Keepalive {
			fmt.Fprintf(&sb, "persistent_keepalive_interval=%d\n", int(p.Keepalive/time.Second))
		}
		if had && old.PresharedKey != p.PresharedKey || !had && p.PresharedKey != [32]byte{} {
			// All zero removes it. The UAPI text is never logged.
			fmt.Fprintf(&sb, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
	}
	if sb.Len() == 0 {
		return backend.ErrNoChanges
	}
	if err := b.dev.IpcSet(sb.String()); err != nil {
		return fmt.Errorf("configure device: %w", err)
	}
	for _, k := range located {
		b.quiet.located(peerName(k))
	}
	rekeyed := b.started && !b.key.Equal(cfg.PrivateKey)
	if !b.started {
		if err := b.dev.Up(); err != nil {
			return fmt.Errorf("bring device up: %w", err)
		}
		b.started = true
	}
	// When our key changed, every session is gone: start handshakes with
	// every peer at once instead of waiting for traffic. A peer that
	// learned the new key from the controller before we switched had its
	// handshake refused and would otherwise wait out WireGuard's 5 s
	// retry. Only here: starting handshakes with new peers as well makes
	// them cross with the traffic-driven initiations of the other side,
	// and crossed initiations stall both sides for that same 5 s retry
	// (over 36 runs of this package's tests: 2 stalls this way, 8 when the
	// lower-keyed side of a new pair also started at once).
	if rekeyed {
		for k := range want {
			if _, had := b.peers[k]; had {
				b.initiateLocked(k)
			}
		}
	}
	b.key = cfg.PrivateKey
	b.peers = want
	port, err := b.readPort()
	if err != nil {
		return err
	}
	b.port = port
	return nil
}

func (b *Backend) readPort() (uint16, error) {
	var port uint16
	err := b.scanUAPI(func(k, v string) {
		if k == "listen_port" {
			n, _ := strconv.ParseUint(v, 10, 16)
			port = uint16(n)
		}
	})
	return port, err
}

func (b *Backend) scanUAPI(fn func(k, v string)) error {
	s, err := b.dev.IpcGet()
	if err != nil {
		return fmt.Errorf("read device state: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			fn(k, v)
		}
	}
	return sc.Err()
}

// Rehandshake implements backend.Rehandshaker: a handshake with the peer
// starts now, with the preshared key configured for it.
func (b *Backend) Rehandshake(k api.NodePublic) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("backend closed")
	}
	if _, ok := b.peers[k]; !ok {
		return fmt.Errorf("peer %s is not configured", k)
	}
	b.initiateLocked(k)
	return nil
}

func (b *Backend) initiateLocked(k api.NodePublic) {
	if p := b.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
		p.SendHandshakeInitiation(false)
	}
}

// Stats implements backend.Backend.
func (b *Backend) Stats() ([]backend.PeerStats, error) {
	var out []backend.PeerStats
	var cur *backend.PeerStats
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			out = append(out, *cur)
		}
	}
	err := b.scanUAPI(func(k, v string) {
		switch k {
		case "public_key":
			flush()
			cur, sec, nsec = &backend.PeerStats{}, 0, 0
			raw, err := hex.DecodeString(v)
			if err == nil && len(raw) == api.KeyLen {
				cur.PublicKey = api.NodePublic(raw)
			}
		case "endpoint":
			if cur != nil {
				cur.Endpoint, _ = netip.ParseAddrPort(v)
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	})
	flush()
	return out, err
}

// Port implements backend.Backend.
func (b *Backend) Port() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	var err error
	if b.uapi != nil {
		err = b.uapi.Close()
		<-b.uapiDone
	}
	b.dev.Close() // closes the packet device and the UDP sockets
	<-b.dev.Wait()
	return err
}

func hexKey(k api.NodePublic) string { return hex.EncodeToString(k[:]) }

// peerName is how wireguard-go's log names the peer of key k (its
// Peer.String): the first 4 and the last 4 characters of the key's base64.
func peerName(k api.NodePublic) string {
	b64 := base64.StdEncoding.EncodeToString(k[:])
	return "peer(" + b64[:4] + "…" + b64[39:43] + ")"
}

// errNoEndpoint ends wireguard-go's log line for a packet to a peer it has
// no endpoint for (device.Peer.SendBuffers).
const errNoEndpoint = "no known endpoint for peer"

// quietLog adapts wireguard-go's logger to the node's. wireguard-go logs
// "no known endpoint for peer" at every handshake attempt, every 5 s, for
// each peer it cannot reach yet (a peer that is offline, or behind a NAT
// until it reaches this node first): quietLog logs it once per peer, at
// warning level, until the peer's state changes (it gets an endpoint from
// the node or from a handshake, or is removed); the repeats go to debug.
type quietLog struct {
	log *slog.Logger

	mu         sync.Mutex
	noEndpoint map[string]bool // by peerName: its lack of an endpoint was logged
}

func (q *quietLog) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, errNoEndpoint) {
		q.log.Warn(msg)
		return
	}
	peer, _, _ := strings.Cut(msg, " - ")
	q.mu.Lock()
	logged := q.noEndpoint[peer]
	q.noEndpoint[peer] = true
	q.mu.Unlock()
	if logged {
		q.log.Debug(msg)
		return
	}
	q.log.Warn("no known endpoint for the peer: no handshake with it until the controller sends one or the peer reaches this node (logged once until then)",
		"peer", peer, "detail", msg)
}

func (q *quietLog) verbosef(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	q.log.Debug(msg)
	// A handshake message from the peer gives wireguard-go its endpoint.
	if peer, what, ok := strings.Cut(msg, " - "); ok && strings.HasPrefix(what, "Received handshake") {
		q.located(peer)
	}
}

// located forgets that the peer had no endpoint: its state changed.
func (q *quietLog) located(peer string) {
	q.mu.Lock()
	delete(q.noEndpoint, peer)
	q.mu.Unlock()
}
