// Package backend is the seam between the node and the protocols that carry
// its packets. A backend owns transport and crypto: it is handed the packet
// device (a kernel TUN or a userspace netstack TUN, as a wireguard-go
// tun.Device) and the desired peer set, and moves packets between them.
// The node owns the device's addresses and routes.
//
// Backends register by name in a Registry; the node picks one by name from
// its configuration or from controller policy. WireGuard is the default.
// Nothing outside a backend's own package imports its implementation: only
// the composition root (cmd/rustynetd) registers them.
package backend

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/key"
)

// ErrNoChanges is returned by Reconfig when the config equals the one in
// force.
var ErrNoChanges = errors.New("no changes")

// Config is the whole desired state of a backend.
type Config struct {
	PrivateKey key.NodePrivate
	// ListenPort is the UDP port to listen on; 0 lets the backend choose
	// (Port reports the choice). Changing it rebinds.
	ListenPort uint16
	Peers      []Peer
}

// Peer is one peer as the backend must know it.
type Peer struct {
	PublicKey api.NodePublic
	// AllowedIPs are the source addresses accepted from the peer and the
	// destinations sent to it.
	AllowedIPs []netip.Prefix
	// Endpoint is where to reach the peer first. A backend may follow the
	// peer when it roams; a Reconfig with an unchanged Endpoint does not
	// undo that.
	Endpoint netip.AddrPort
	// Keepalive, if set, sends a packet at this interval when idle.
	Keepalive time.Duration
	// BackendKey is the peer's public key for this backend, in the text
	// form of the backend's Spec.PublicKey, for backends that do not use
	// the node key itself; empty otherwise.
	BackendKey string
	// PresharedKey, when not zero, is mixed into the pair's handshakes
	// (WireGuard's preshared-key slot), on backends whose Spec says
	// PresharedKeys; the node puts the post-quantum exchange's key here
	// (node/pq). Changing it keeps the peer's session: the next handshake
	// uses the new key (Rehandshaker starts one at once).
	PresharedKey [32]byte
}

// Equal reports whether p and o configure the same peer identically.
func (p *Peer) Equal(o *Peer) bool {
	return p.PublicKey == o.PublicKey && slices.Equal(p.AllowedIPs, o.AllowedIPs) &&
		p.Endpoint == o.Endpoint && p.Keepalive == o.Keepalive && p.BackendKey == o.BackendKey &&
		p.PresharedKey == o.PresharedKey
}

// PeerStats is the live state of one configured peer.
type PeerStats struct {
	PublicKey api.NodePublic
	// Endpoint is where the peer is being reached now (it may have roamed
	// from the configured one).
	Endpoint netip.AddrPort
	// LastHandshake is the time of the last completed handshake; zero if
	// none.
	LastHandshake    time.Time
	RxBytes, TxBytes uint64
}

// Backend moves packets between the packet device it was created with and
// its peers. Its methods may be called from any goroutine.
type Backend interface {
	// Reconfig makes cfg the backend's whole state. It may be called any
	// number of times with identical configs, and then returns
	// ErrNoChanges. A peer whose entry is unchanged between two configs is
	// not disturbed: its session and traffic in flight survive. A peer
	// absent from cfg is removed, and its traffic stops.
	Reconfig(cfg *Config) error
	// Stats reports every configured peer, in no particular order.
	Stats() ([]PeerStats, error)
	// Port returns the UDP port the backend listens on (0 before the first
	// Reconfig).
	Port() uint16
	// Close stops the backend and closes the packet device it was given.
	// It returns once every goroutine, socket and file it opened is
	// released. Close may be called more than once.
	Close() error
}

// Rehandshaker is a backend that can start a handshake with a configured
// peer at once, rather than at its next rekey: the node calls it once both
// sides hold a new preshared key, so that the session moves to it. The
// current session carries traffic until the new one is confirmed, so
// nothing in flight is lost.
type Rehandshaker interface {
	Rehandshake(peer api.NodePublic) error
}

// Options is what a backend is created with.
type Options struct {
	// Device is the packet device; the backend takes ownership and closes
	// it on Close.
	Device tun.Device
	// Interface names the device for control sockets (WireGuard's UAPI
	// socket, read by `wg show`); empty means none.
	Interface string
	Logger    *slog.Logger
}

// Factory creates a backend.
type Factory func(Options) (Backend, error)

// Spec describes a backend to the registry.
type Spec struct {
	Name string
	New  Factory
	// PublicKey derives, from the node's private key, the public key
	// peers need to authenticate this node on this backend, in the text
	// form the controller distributes (the netmap's backend_keys). Nil for
	// backends that use the node key itself, as WireGuard does.
	PublicKey func(key.NodePrivate) string
	// MaxMTU is the largest device MTU the backend carries without
	// fragmenting; 0 means no limit of its own. The node runs the device
	// at the smaller of its configured MTU and this.
	MaxMTU int
	// PresharedKeys says the backend mixes Peer.PresharedKey into its
	// handshakes: a node on it offers the post-quantum PSK exchange.
	PresharedKeys bool
	// PostQuantum says the backend's own key exchange is hybrid
	// post-quantum (QUIC's X25519MLKEM768), fail closed: its pairs need
	// no preshared key to meet pq: require.
	PostQuantum bool
	// Preflight, when set, checks before the node starts that the backend
	// can come up on the kernel device named iface, and says what to
	// change when it cannot for a reason that will not pass by itself
	// (WireGuard: its UAPI socket held by another device of that name).
	Preflight func(iface string) error
}

// Registry maps backend names to their specs. The zero value is empty and
// ready to use.
type Registry struct {
	specs map[string]Spec
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Register adds a backend. It panics on a malformed or duplicate name or a
// missing factory: that is a programming error in the composition root.
func (r *Registry) Register(s Spec) {
	if !nameRE.MatchString(s.Name) {
		panic(fmt.Sprintf("backend: malformed name %q", s.Name))
	}
	if s.New == nil {
		panic(fmt.Sprintf("backend: %q has no factory", s.Name))
	}
	if _, dup := r.specs[s.Name]; dup {
		panic(fmt.Sprintf("backend: %q registered twice", s.Name))
	}
	if r.specs == nil {
		r.specs = make(map[string]Spec)
	}
	r.specs[s.Name] = s
}

// Names lists the registered backends, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.specs))
	for n := range r.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Spec returns the spec registered as name.
func (r *Registry) Spec(name string) (Spec, bool) {
	s, ok := r.specs[name]
	return s, ok
}

// Has reports whether name is registered.
func (r *Registry) Has(name string) bool {
	_, ok := r.specs[name]
	return ok
}

// PublicKey returns this node's public key for the named backend, or ""
// when the backend uses the node key itself (or is unknown).
func (r *Registry) PublicKey(name string, k key.NodePrivate) string {
	s, ok := r.specs[name]
	if !ok || s.PublicKey == nil {
		return ""
	}
	return s.PublicKey(k)
}

// MaxMTU returns the named backend's MaxMTU (0 for none or unknown).
func (r *Registry) MaxMTU(name string) int { return r.specs[name].MaxMTU }

// PresharedKeys reports whether the named backend mixes preshared keys
// into its handshakes (false for an unknown one).
func (r *Registry) PresharedKeys(name string) bool { return r.specs[name].PresharedKeys }

// PostQuantum reports whether the named backend's own key exchange is
// hybrid post-quantum (false for an unknown one).
func (r *Registry) PostQuantum(name string) bool { return r.specs[name].PostQuantum }

// Preflight runs the named backend's Preflight for the kernel device
// iface, if it has one.
func (r *Registry) Preflight(name, iface string) error {
	s, ok := r.specs[name]
	if !ok || s.Preflight == nil {
		return nil
	}
	return s.Preflight(iface)
}

// New creates the backend registered as name.
func (r *Registry) New(name string, o Options) (Backend, error) {
	s, ok := r.specs[name]
	if !ok {
		return nil, fmt.Errorf("unknown backend %q (have %v)", name, r.Names())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := s.New(o)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	return b, nil
}
