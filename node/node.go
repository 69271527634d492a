// Package node is the Rustynet node agent: it registers with the
// controller, follows the netmap long-poll, and applies each netmap as one
// desired state to a backend (transport and crypto), the packet device's
// addresses and its routes. The last netmap is cached, so the mesh stays up
// while the controller is down, even across a restart of the node.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/readyfile"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/control"
	"github.com/rustynet/rustynet/node/filter"
	"github.com/rustynet/rustynet/node/key"
	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/node/pq"
	"github.com/rustynet/rustynet/node/router"
)

// Defaults.
const (
	DefaultInterface = "rn0"
	DefaultMTU       = 1420
	keepalive        = 25 * time.Second
	endpointRecheck  = 30 * time.Second
)

// Config configures a node.
type Config struct {
	StateDir string
	// ControllerURLs are the controller's replicas, each https://HOST:PORT
	// (control.ParseURLs reads rustynetd's --controller list), no two
	// alike; the node fails over between them and the replicas the
	// controller announces (node/control). ControllerURL is the same for
	// one controller; set one or the other.
	ControllerURLs []string
	ControllerURL  string
	ControllerCA   string // PEM file of the controller's CA, one for every replica
	// AuthKey registers the node when the state dir holds no credential.
	AuthKey  string
	Hostname string
	// Backend forces one backend; empty lets the controller's policy choose
	// among the backends in Registry (WireGuard unless a rule says
	// otherwise).
	Backend  string
	Registry *backend.Registry
	// Interface names the kernel TUN device (default "rn0"); with Netstack
	// the node uses a userspace network stack instead and needs no
	// privileges.
	Interface string
	Netstack  bool
	// ListenPort is the data-plane UDP port; 0 keeps the one from the last
	// run, or picks a free one.
	ListenPort uint16
	MTU        int
	// PollWait is how long each netmap long-poll may wait (default
	// api.DefaultWait).
	PollWait time.Duration
	// ReadyFile, if set, is written (internal/readyfile) once the
	// dataplane is first up, with the local API socket, the device and
	// the data-plane port.
	ReadyFile  string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Version is the build's version, for rustynet_node_build_info.
	Version string
	// ProbeInterval is how often the prober sends its probes to a sample
	// of the peers (node/prober.go); 0 takes ProbeInterval, a negative
	// value turns the prober off.
	ProbeInterval time.Duration
	// ProbePeers is how many peers each round probes, chosen at random;
	// 0 takes ProbePeers, a negative value probes every peer.
	ProbePeers int
	// ProbeLog, when set, gets one JSON line per probe (ProbeRecord), for
	// drills that measure the longest gap between two nodes.
	ProbeLog io.Writer
	// NetmapLog, when set, gets one JSON line per netmap applied
	// (NetmapRecord), for drills that measure how long a change takes to
	// reach every node.
	NetmapLog io.Writer
	// NoPQ makes the node neither announce nor run the post-quantum
	// preshared-key exchange (node/pq), as a node of an earlier release:
	// for migrations in waves, and an operator's way out.
	NoPQ bool
	// PQPeriod is how often a pair agrees a new post-quantum preshared
	// key (default DefaultPQPeriod).
	PQPeriod time.Duration
}

// NetmapRecord is one line of the netmap log (Config.NetmapLog): at At,
// the dataplane took the netmap of Revision, of Kind "full", "delta" or
// "cache" (as rustynet_node_netmaps_total counts them); Peers are the
// peers it added or changed, Removed those it removed.
type NetmapRecord struct {
	At       time.Time    `json:"at"`
	Revision uint64       `json:"revision"`
	Kind     string       `json:"kind"`
	Peers    []api.NodeID `json:"peers,omitempty"`
	Removed  []api.NodeID `json:"removed,omitempty"`
}

// Node is a running node agent.
type Node struct {
	cfg                 Config
	log                 *slog.Logger
	probeLog, netmapLog *jsonLog // nil without Config.ProbeLog, NetmapLog
	metrics             *metrics
	client              *control.Client
	bo                  backoff

	// rotation holds a token while a key rotation is under way (the
	// user's, or the node's own completion or repair of one): one at a
	// time.
	rotation chan struct{}
	hook     atomic.Pointer[func(step string) error] // test hook, see step
	crashed  atomic.Bool                             // a test hook crashed the node
	echoSent atomic.Pointer[func()]                  // test hook: Ping calls it once its echo is sent

	mu       sync.Mutex
	st       *persistent
	rotating bool   // a rotation is under way: it settles the pending key itself
	synced   bool   // the view holds a netmap from the controller, not only the cache
	keyErr   string // why the last attempt to settle the node key failed
	rev      uint64
	self     *api.Node
	peers    map[api.NodeID]api.Node
	missing  []localapi.Missing
	state    string
	lastErr  string
	// applyErr says why the view is not in force on the dataplane: the
	// last attempt to apply it failed ("" once one succeeds). Each poll
	// tries again.
	applyErr string
	// backendNote says why the configured backend (--backend) is not the
	// one the node runs, while it is not.
	backendNote string
	updatedAt   time.Time
	syncedAt    time.Time // the controller's last answered poll
	dp          *dataplane
	reported    *api.EndpointsRequest
	lastCheck   time.Time
	netReady    chan struct{} // closed when the first dataplane is up
	// pq holds the post-quantum preshared key of each pair that agreed
	// one, and pqSched the exchanges this node initiates (node/pqpsk.go),
	// by the peer's node key.
	pq      map[api.NodePublic]*pqKey
	pqSched map[api.NodePublic]*pqSched
}

// dataplane is the packet device with its backend and router.
type dataplane struct {
	addrs   []netip.Prefix
	kind    string // the backend's name
	filter  *filter.Device
	name    string
	backend backend.Backend
	router  router.Router
	net     *netstack.Net // netstack mode only
}

// New checks cfg and returns a node; Run starts it.
func New(cfg Config) (*Node, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("no state dir")
	}
	if cfg.ControllerURL != "" {
		if len(cfg.ControllerURLs) > 0 {
			return nil, errors.New("set ControllerURL or ControllerURLs, not both")
		}
		cfg.ControllerURLs = []string{cfg.ControllerURL}
	}
	if len(cfg.ControllerURLs) == 0 || cfg.ControllerCA == "" {
		return nil, errors.New("a controller URL and its CA file are required")
	}
	if cfg.Registry == nil {
		return nil, errors.New("no backend registry")
	}
	if cfg.Backend != "" && !cfg.Registry.Has(cfg.Backend) {
		return nil, fmt.Errorf("unknown backend %q (this build has %v)", cfg.Backend, cfg.Registry.Names())
	}
	if len(cfg.Registry.Names()) == 0 {
		return nil, errors.New("no backend registered")
	}
	if cfg.Interface == "" && !cfg.Netstack {
		cfg.Interface = DefaultInterface
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = api.DefaultWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		bo:        backoff{min: retryMin, max: retryMax},
		peers:     map[api.NodeID]api.Node{},
		pq:        map[api.NodePublic]*pqKey{},
		pqSched:   map[api.NodePublic]*pqSched{},
		state:     localapi.StateStarting,
		netReady:  make(chan struct{}),
		rotation:  make(chan struct{}, 1),
		probeLog:  newJSONLog("probe log", cfg.ProbeLog),
		netmapLog: newJSONLog("netmap log", cfg.NetmapLog),
	}
	client, err := control.NewReplicated(control.Config{
		URLs:   cfg.ControllerURLs,
		CAFile: cfg.ControllerCA,
		Logger: cfg.Logger,
		// Called only once Run has started, after the metrics exist.
		OnSwitch: func(from, to, reason string) { n.metrics.replicaSwitches.WithLabelValues(reason).Inc() },
	})
	if err != nil {
		return nil, err
	}
	n.client = client
	n.cfg.ControllerURLs = client.Replicas()
	n.metrics = newMetrics(cfg.Registerer, n)
	return n, nil
}

// errFatal marks errors that retrying cannot fix.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

var errLoggedOut = errors.New("the controller no longer knows this node (removed or logged out)")

// Run runs the node until ctx is done or a fatal error (such as an invalid
// auth key) occurs. On return the device is closed and its routes are gone.
func (n *Node) Run(ctx context.Context) error {
	st, err := loadState(n.cfg.StateDir)
	if err != nil {
		return err
	}
	switch {
	case st.Credential == "":
	case !sameController(st, n.cfg.ControllerURLs):
		n.log.Warn("state was registered with another controller; registering again", "was", st.knownControllers(), "now", n.cfg.ControllerURLs)
		st.Credential, st.NodeID = "", ""
	default:
		// The replicas the controller announced last time come first,
		// as they did then; the configured ones stay the fallback.
		n.client.Announce(st.Controllers)
	}
	if err := n.preflight(st); err != nil {
		return err
	}
	if err := n.choosePort(st); err != nil {
		return err
	}
	n.mu.Lock()
	n.st = st
	n.mu.Unlock()
	n.client.SetCredential(st.Credential)
	defer n.client.Close()

	apiCtx, stopAPI := context.WithCancel(context.Background())
	waitAPI, err := localapi.Serve(apiCtx, n.cfg.StateDir, n, n.log)
	if err != nil {
		stopAPI()
		return err
	}
	defer func() { stopAPI(); waitAPI() }()
	defer n.teardown()
	// The prober stops before the dataplane is torn down.
	proberCtx, stopProber := context.WithCancel(ctx)
	proberDone := make(chan struct{})
	go func() {
		defer close(proberDone)
		n.runProber(proberCtx, n.cfg.ProbeInterval)
	}()
	defer func() { stopProber(); <-proberDone }()
	// So does the post-quantum key exchange.
	pqCtx, stopPQ := context.WithCancel(ctx)
	pqDone := make(chan struct{})
	go func() {
		defer close(pqDone)
		n.runPQ(pqCtx)
	}()
	defer func() { stopPQ(); <-pqDone }()
	// systemd's watchdog (WatchdogSec) is fed while the node's state can
	// be taken: a node wedged on its own lock is restarted, not left up.
	go readyfile.Watchdog(ctx, n.log, n.responsive)
	defer readyfile.Stopping(n.log)

	if st.Credential != "" {
		cached, err := loadNetmap(n.cfg.StateDir)
		switch {
		case err != nil:
			n.log.Warn("ignoring the cached netmap", "err", err)
		case cached != nil:
			// applyMap logs a failure.
			if err := n.applyMap(cached, true); err == nil {
				n.log.Info("mesh up from the cached netmap", "peers", len(cached.Peers), "revision", cached.Revision)
			}
		}
	}

	for {
		from, began := n.client.Current(), time.Now()
		err := n.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fe fatalError
		switch {
		case errors.As(err, &fe):
			return err
		case n.neverRegistered() && isCertificateError(err):
			// A node that never registered has nothing to keep in force,
			// and a certificate the CA does not verify will not start to:
			// the operator gave the wrong CA file, or the wrong URL.
			return fmt.Errorf("the controller's certificate does not verify against --controller-ca %s (check that it is the controller's CA, DATA_DIR/tls/ca.pem on the controller, and that --controller names the controller): %w", n.cfg.ControllerCA, err)
		case errors.Is(err, errLoggedOut):
			n.loggedOut()
			<-ctx.Done()
			return nil
		}
		n.metrics.reconnects.Inc()
		d := n.bo.next()
		wait, limited := control.RetryAfter(err)
		switch {
		case limited:
			// The controller answers, but asks the node to wait.
			d = max(d, wait)
			n.setLastError(err)
			n.log.Warn("the controller asks this node to wait; the last netmap stays in force", "err", err, "retry_in", d.Round(time.Millisecond))
		case n.polledSince(began) && n.client.Current() != from:
			// One replica failed and the client moved to the next: not
			// an outage unless that one fails too. The next session
			// polls it with the revision the node has.
			n.setLastError(err)
			n.log.Debug("the controller replica failed; following the netmap on the next one", "err", err,
				"from", from, "to", n.client.Current(), "retry_in", d.Round(time.Millisecond))
		default:
			n.setOffline(err)
			n.log.Warn("controller unreachable; the last netmap stays in force", "err", err, "retry_in", d.Round(time.Millisecond))
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil
		}
	}
}

// preflight refuses to start a node whose dataplane could not come up for
// a reason that will not pass by itself, such as a control socket held by
// another device of the same name, checked by the backend the node expects
// to run: the cached netmap's, else --backend's, else the default.
func (n *Node) preflight(st *persistent) error {
	if n.cfg.Netstack {
		return nil
	}
	kind := n.cfg.Backend
	if kind == "" && n.cfg.Registry.Has(api.DefaultBackend) {
		kind = api.DefaultBackend
	}
	if st.Credential != "" {
		if cached, err := loadNetmap(n.cfg.StateDir); err == nil && cached != nil && cached.Self != nil && len(cached.Self.Backends) > 0 {
			kind = cached.Self.Backends[0]
		}
	}
	if kind == "" {
		return nil
	}
	return n.cfg.Registry.Preflight(kind, n.cfg.Interface)
}

// choosePort settles the data-plane port: the configured one, else the
// last run's, else a free one, and keeps it in the state.
func (n *Node) choosePort(st *persistent) error {
	port := n.cfg.ListenPort
	if port == 0 {
		port = st.ListenPort
	}
	if port == 0 {
		pc, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return fmt.Errorf("pick a UDP port: %w", err)
		}
		port = uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		pc.Close()
	}
	if st.ListenPort != port {
		st.ListenPort = port
		return saveJSON(n.cfg.StateDir, stateFile, st)
	}
	return nil
}

// session registers if needed, then follows the netmap until an error.
func (n *Node) session(ctx context.Context) error {
	n.mu.Lock()
	registered := n.st.Credential != ""
	n.mu.Unlock()
	if !registered {
		if err := n.register(ctx); err != nil {
			return err
		}
	}
	// The first poll of a session does not wait: it confirms the
	// controller is back and brings what changed while it was away.
	wait := time.Duration(0)
	for {
		if err := n.reportEndpoints(ctx); err != nil {
			return classify(err)
		}
		if err := n.reconcileKey(ctx); err != nil {
			// The netmap is followed still; the next round tries again.
			if err := classify(err); errors.Is(err, errLoggedOut) {
				return err
			}
			n.log.Warn("the node key is not settled with the controller; trying again after the next netmap", "err", err)
		}
		n.mu.Lock()
		since := n.rev
		n.mu.Unlock()
		m, err := n.client.Netmap(ctx, since, wait)
		wait = n.cfg.PollWait
		if err != nil {
			return classify(err)
		}
		n.bo.reset()
		n.setRunning()
		n.saveReplicas()
		n.applyMap(m, false) // logs and records a failure, for status and metrics
	}
}

// neverRegistered reports whether the node has neither a credential nor a
// netmap: nothing of a controller to keep in force.
func (n *Node) neverRegistered() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Credential == "" && n.self == nil
}

// isCertificateError reports whether err is the controller's certificate
// failing verification against the node's CA (not a TLS alert or a
// network failure, which a controller may cause while it is down).
func isCertificateError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

func classify(err error) error {
	if control.IsStatus(err, http.StatusUnauthorized) {
		return errLoggedOut
	}
	if control.IsStatus(err, http.StatusUpgradeRequired) {
		return fatalError{err}
	}
	return err
}

// challengeSince is the capability version from which a controller issues
// registration challenges (GET /v1/register/challenge).
const challengeSince api.CapabilityVersion = 3

func (n *Node) register(ctx context.Context) error {
	if n.cfg.AuthKey == "" {
		return fatalError{errors.New("not registered: start with --auth-key (create one with `rustynet-controller authkey create`)")}
	}
	n.mu.Lock()
	st := *n.st
	req := &api.RegisterRequest{
		AuthKey:     n.cfg.AuthKey,
		NodeKey:     st.NodeKey.Public(),
		MachineKey:  st.MachineKey.Public(),
		Hostname:    n.cfg.Hostname,
		Backends:    n.supportedBackends(),
		BackendKeys: n.backendKeys(st.NodeKey),
		Endpoints:   n.localEndpoints(st.ListenPort),
		ListenPort:  st.ListenPort,
	}
	mk := st.MachineKey
	n.mu.Unlock()
	// Prove the machine key, so that a retry after a lost answer gets
	// this node back rather than a refusal.
	ch, err := n.client.Challenge(ctx)
	// The challenge's answer says the controller's capability version:
	// only one of 4 or later is told the post-quantum schemes.
	req.PQ = n.pqSchemes()
	switch {
	case err == nil:
		if req.MachineProof, err = mk.Prove(ch, req.NodeKey); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		req.Challenge = ch.Challenge
	case control.IsStatus(err, http.StatusNotFound) && n.client.ControllerVersion() > 0 && n.client.ControllerVersion() < challengeSince:
		// A controller of an earlier release (capability 1 or 2, as its
		// own answer over the verified TLS connection says) has no
		// challenge: it registers a node without the proof, as it
		// always did.
		n.log.Warn("the controller predates registration proofs; registering without one (upgrade the controller)",
			"controller_capability_version", n.client.ControllerVersion())
	default:
		return fmt.Errorf("register: challenge: %w", err)
	}
	resp, err := n.client.Register(ctx, req)
	if err != nil {
		// A refusal is final, but for 429 (wait, then retry). A network
		// error may have lost the answer to a registration that
		// succeeded: the retry proves the machine key again and gets
		// the same node back.
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests {
			return fatalError{fmt.Errorf("register: %w", err)}
		}
		return fmt.Errorf("register: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.updateStateLocked(func(p *persistent) {
		p.Credential, p.NodeID = resp.Credential, resp.Node.ID
		p.Controller, p.Controllers = n.client.Current(), n.client.Announced()
		// The node registered with NodeKey: a rotation from before has
		// nothing left to rotate.
		p.PendingNodeKey = key.NodePrivate{}
	}); err != nil {
		return fatalError{fmt.Errorf("save credential: %w", err)}
	}
	n.client.SetCredential(resp.Credential)
	n.rev = 0
	n.reported = &api.EndpointsRequest{Endpoints: req.Endpoints, ListenPort: req.ListenPort, PQ: req.PQ}
	n.log.Info("registered", "node", resp.Node.ID, "name", resp.Node.Name, "addresses", resp.Node.Addresses)
	return nil
}

// supportedBackends lists the backends the node offers the controller,
// most preferred first: the forced one alone, or every one this build has
// with WireGuard first.
func (n *Node) supportedBackends() []string {
	if n.cfg.Backend != "" {
		return []string{n.cfg.Backend}
	}
	out := []string{}
	if n.cfg.Registry.Has(api.DefaultBackend) {
		out = append(out, api.DefaultBackend)
	}
	for _, b := range n.cfg.Registry.Names() {
		if b != api.DefaultBackend {
			out = append(out, b)
		}
	}
	return out
}

// backendKeys derives the node's public key for every offered backend
// that does not use the node key itself.
func (n *Node) backendKeys(k key.NodePrivate) map[string]string {
	keys := map[string]string{}
	for _, b := range n.supportedBackends() {
		if pk := n.cfg.Registry.PublicKey(b, k); pk != "" {
			keys[b] = pk
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return keys
}

// noteBackendLocked says, in the log once and in the status while it
// lasts, that --backend is not the backend the node runs. The controller
// chooses the backend from those the node offered when it registered, and
// learns them only then: a node restarted on its state dir with another
// --backend keeps the controller's earlier choice.
func (n *Node) noteBackendLocked(kind string) {
	note := ""
	if n.cfg.Backend != "" && n.cfg.Backend != kind {
		note = fmt.Sprintf("--backend %s is not in effect: the controller chose %s for this node from the backends it offered when it registered, "+
			"and the controller learns them only at registration; to run %s, remove the node (rustynet-controller node remove) and start rustynetd "+
			"with --backend %s and an auth key, or change the controller's backend policy", n.cfg.Backend, kind, n.cfg.Backend, n.cfg.Backend)
	}
	if note != "" && note != n.backendNote {
		n.log.Warn("the configured backend is not the one the node runs", "configured", n.cfg.Backend, "running", kind, "why", note)
	}
	n.backendNote = note
}

// runBackendLocked is the backend the controller chose for this node.
func (n *Node) runBackendLocked() (string, error) {
	if len(n.self.Backends) == 0 {
		return "", errors.New("the netmap names no backend for this node")
	}
	b := n.self.Backends[0]
	if !n.cfg.Registry.Has(b) {
		return "", fmt.Errorf("the controller chose backend %q, which this build lacks (it has %v)", b, n.cfg.Registry.Names())
	}
	return b, nil
}

// reportEndpoints tells the controller where the node listens, when that
// changed since the last report (checked at most every 30s), and its
// post-quantum schemes as soon as they change. They change when the
// controller's capability version becomes known: a node that starts on
// its state learns it from its first poll, after its first report, and
// its peers would run classical WireGuard with it until the next check.
func (n *Node) reportEndpoints(ctx context.Context) error {
	n.mu.Lock()
	schemes := n.pqSchemes()
	if time.Since(n.lastCheck) < endpointRecheck && n.reported != nil && slices.Equal(n.reported.PQ, schemes) {
		n.mu.Unlock()
		return nil
	}
	n.lastCheck = time.Now()
	port := n.st.ListenPort
	req := &api.EndpointsRequest{Endpoints: n.localEndpoints(port), ListenPort: port, PQ: schemes}
	same := n.reported != nil && slices.Equal(n.reported.Endpoints, req.Endpoints) && n.reported.ListenPort == req.ListenPort &&
		slices.Equal(n.reported.PQ, req.PQ) &&
		// The controller's record lost the schemes (a replica of an
		// earlier release rewrote it): report them again.
		(req.PQ == nil || n.self == nil || slices.Equal(n.self.PQ, req.PQ))
	n.mu.Unlock()
	if same {
		return nil
	}
	if _, err := n.client.ReportEndpoints(ctx, req); err != nil {
		return err
	}
	n.mu.Lock()
	n.reported = req
	n.mu.Unlock()
	return nil
}

// applyMap merges a netmap into the node's view and applies the whole view
// to the dataplane. A failure is logged when it differs from the last one
// and kept (applyErr) for the status and the metrics: the node is not
// working while it lasts, whatever the controller says.
func (n *Node) applyMap(m *api.MapResponse, fromCache bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.applyMapLocked(m, fromCache)
	switch {
	case err == nil && n.applyErr != "":
		n.log.Info("the netmap is in force again", "revision", n.rev)
		n.applyErr = ""
	case err != nil && err.Error() != n.applyErr:
		n.log.Error("the netmap is not in force: applying it failed; trying again at each poll", "revision", m.Revision, "err", err)
		n.applyErr = err.Error()
	case err != nil:
		n.log.Debug("applying the netmap failed again", "revision", m.Revision, "err", err)
	}
	return err
}

func (n *Node) applyMapLocked(m *api.MapResponse, fromCache bool) error {
	start := time.Now()
	// After a failure the same view is applied again, changed or not: what
	// failed (a device, a socket) may be free now.
	fresh := m.Full || m.Self != nil || len(m.PeersChanged)+len(m.PeersRemoved) > 0
	changed := fresh || n.applyErr != ""
	if m.Full {
		if m.Self == nil {
			return errors.New("full netmap without self")
		}
		n.self = m.Self
		n.peers = make(map[api.NodeID]api.Node, len(m.Peers))
		for _, p := range m.Peers {
			n.peers[p.ID] = p
		}
	} else {
		if n.self == nil {
			return errors.New("delta netmap before any full one")
		}
		if m.Self != nil {
			n.self = m.Self
		}
		for _, p := range m.PeersChanged {
			n.peers[p.ID] = p
		}
		for _, id := range m.PeersRemoved {
			delete(n.peers, id)
		}
	}
	n.rev = m.Revision
	if !fromCache {
		n.synced = true
	}
	if promoted, err := n.promoteHeldLocked(); err != nil {
		n.log.Error("promoting the pending node key", "err", err)
	} else if promoted {
		fresh, changed = true, true
	}
	if !changed {
		return nil
	}
	n.updatedAt = time.Now()
	kind := "delta"
	switch {
	case fromCache:
		kind = "cache"
	case m.Full:
		kind = "full"
	}
	if fresh {
		n.metrics.netmaps.WithLabelValues(kind).Inc()
	}
	if err := n.applyLocked(); err != nil {
		return err
	}
	n.metrics.netmapApply.Observe(time.Since(start).Seconds())
	if n.netmapLog != nil {
		rec := NetmapRecord{At: time.Now().UTC(), Revision: n.rev, Kind: kind, Removed: m.PeersRemoved}
		for _, p := range append(m.Peers, m.PeersChanged...) {
			rec.Peers = append(rec.Peers, p.ID)
		}
		n.netmapLog.write(n.log, rec)
	}
	if !fromCache {
		if err := n.save(netmapFile, n.viewLocked()); err != nil {
			n.log.Warn("caching the netmap", "err", err)
		}
	}
	return nil
}

// viewLocked returns the node's view as a full netmap.
func (n *Node) viewLocked() *api.MapResponse {
	m := &api.MapResponse{Revision: n.rev, Full: true, Self: n.self, Peers: make([]api.Node, 0, len(n.peers))}
	for _, p := range n.peers {
		m.Peers = append(m.Peers, p)
	}
	sort.Slice(m.Peers, func(i, j int) bool { return m.Peers[i].ID < m.Peers[j].ID })
	return m
}

// applyLocked makes the dataplane match the view.
func (n *Node) applyLocked() error {
	kind, err := n.runBackendLocked()
	if err != nil {
		return err
	}
	n.noteBackendLocked(kind)
	if err := n.ensureDataplaneLocked(n.self.Addresses, kind); err != nil {
		return err
	}
	routes, err := n.reconfigLocked()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := n.dp.router.Set(&router.Config{Addresses: n.self.Addresses, Routes: routes}); err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	n.metrics.routeApply.Observe(time.Since(start).Seconds())
	return nil
}

// reconfigLocked applies the view's peers, their preshared keys and the
// filter to the dataplane, and returns the routes the view needs (the
// caller sets them). The filter changes first: a peer whose traffic must
// wait for its post-quantum key is held back before it is configured.
func (n *Node) reconfigLocked() ([]netip.Prefix, error) {
	cfg, routes, restricted, gated := n.backendConfigLocked()
	n.dp.filter.SetRestricted(restricted)
	n.dp.filter.SetGated(pq.Port, gated)
	if err := n.dp.backend.Reconfig(cfg); err != nil && !errors.Is(err, backend.ErrNoChanges) {
		return nil, fmt.Errorf("configure backend: %w", err)
	}
	return routes, nil
}

// backendConfigLocked builds the backend config and routes from the view,
// lists the addresses of peers that may not open connections to this node
// (the filter lets them only answer) and of those whose traffic waits for
// a post-quantum key (only the exchange passes), and records the peers
// that cannot be used and why.
func (n *Node) backendConfigLocked() (*backend.Config, []netip.Prefix, []netip.Addr, []netip.Addr) {
	local := localPrefixes()
	cfg := &backend.Config{PrivateKey: n.st.NodeKey, ListenPort: n.st.ListenPort}
	var routes []netip.Prefix
	var restricted, gated []netip.Addr
	n.missing = nil
	ids := make([]api.NodeID, 0, len(n.peers))
	for id := range n.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := n.peers[id]
		switch {
		case p.Unreachable != "":
			n.missing = append(n.missing, localapi.Missing{Name: p.Name, Reason: p.Unreachable})
			continue
		case !slices.Contains(p.Backends, n.dp.kind):
			n.missing = append(n.missing, localapi.Missing{Name: p.Name,
				Reason: fmt.Sprintf("runs %v; this node runs %s", p.Backends, n.dp.kind)})
			continue
		}
		cfg.Peers = append(cfg.Peers, backend.Peer{
			PublicKey:    p.NodeKey,
			AllowedIPs:   p.AllowedIPs,
			Endpoint:     chooseEndpoint(p.Endpoints, local),
			Keepalive:    keepalive,
			BackendKey:   p.BackendKeys[n.dp.kind],
			PresharedKey: n.pqPSKLocked(&p),
		})
		routes = append(routes, p.AllowedIPs...)
		if _, _, held := n.pqStateLocked(&p); held {
			for _, a := range p.AllowedIPs {
				gated = append(gated, a.Addr())
			}
		}
		if !p.AllowIn {
			for _, a := range p.AllowedIPs {
				restricted = append(restricted, a.Addr())
			}
		}
	}
	return cfg, routes, restricted, gated
}

// ensureDataplaneLocked creates the packet device, backend and router for
// addrs and the backend kind, replacing them if either changed.
func (n *Node) ensureDataplaneLocked(addrs []netip.Prefix, kind string) error {
	if n.dp != nil && slices.Equal(n.dp.addrs, addrs) && n.dp.kind == kind {
		return nil
	}
	if n.dp != nil {
		n.log.Info("replacing the dataplane", "backend", n.dp.kind, "new_backend", kind)
		n.closeDataplaneLocked()
	}
	dp := &dataplane{addrs: slices.Clone(addrs), kind: kind}
	mtu := n.cfg.MTU
	if m := n.cfg.Registry.MaxMTU(kind); m > 0 && m < mtu {
		mtu = m
	}
	var dev tun.Device
	var err error
	ifaceForUAPI := ""
	if n.cfg.Netstack {
		local := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			local[i] = a.Addr()
		}
		dev, dp.net, err = netstack.CreateNetTUN(local, nil, mtu)
		if err != nil {
			return fmt.Errorf("netstack: %w", err)
		}
		dp.name, dp.router = "netstack", router.Nop{}
	} else {
		dev, err = tun.CreateTUN(n.cfg.Interface, mtu)
		if err != nil {
			return fmt.Errorf("create TUN %s: %w", n.cfg.Interface, err)
		}
		if dp.name, err = dev.Name(); err != nil {
			dev.Close()
			return err
		}
		r, err := router.NewLinux(dp.name)
		if err != nil {
			dev.Close()
			return err
		}
		dp.router, ifaceForUAPI = r, dp.name
	}
	dp.filter = filter.Wrap(dev)
	dp.backend, err = n.cfg.Registry.New(kind, backend.Options{Device: dp.filter, Interface: ifaceForUAPI, Logger: n.log})
	if err != nil {
		dev.Close()
		return err
	}
	n.dp = dp
	select {
	case <-n.netReady:
	default:
		close(n.netReady)
		info := readyfile.Info{PID: os.Getpid(), LocalAPI: filepath.Join(n.cfg.StateDir, localapi.SocketName), Interface: dp.name, ListenPort: n.st.ListenPort}
		readyfile.Ready(n.log, n.cfg.ReadyFile, info, fmt.Sprintf("dataplane up on %s (%s)", dp.name, kind))
	}
	n.log.Info("dataplane up", "device", dp.name, "backend", kind, "mtu", mtu, "addresses", addrs, "listen_port", n.st.ListenPort)
	return nil
}

func (n *Node) closeDataplaneLocked() {
	if n.dp == nil {
		return
	}
	if err := n.dp.router.Close(); err != nil {
		n.log.Debug("removing routes", "err", err)
	}
	if err := n.dp.backend.Close(); err != nil {
		n.log.Warn("closing backend", "err", err)
	}
	n.dp = nil
}

func (n *Node) teardown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closeDataplaneLocked()
}

func (n *Node) setRunning() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != localapi.StateRunning {
		n.log.Info("controller connected")
	}
	n.state, n.lastErr = localapi.StateRunning, ""
	n.syncedAt = time.Now()
}

// setLastError records err with the state unchanged: the controller
// answered, but asked the node to wait.
func (n *Node) setLastError(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastErr = err.Error()
}

// saveReplicas keeps the replicas the controller announced in the state
// when they changed, so that the node tries them first after a restart.
func (n *Node) saveReplicas() {
	announced := n.client.Announced()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(announced) == 0 || slices.Equal(announced, n.st.Controllers) {
		return
	}
	if err := n.updateStateLocked(func(p *persistent) { p.Controllers = announced }); err != nil {
		n.log.Warn("saving the controller's replicas", "err", err)
	}
}

// polledSince reports whether the controller answered a poll after t.
func (n *Node) polledSince(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.syncedAt.After(t)
}

func (n *Node) setOffline(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state, n.lastErr = localapi.StateOffline, err.Error()
}

// loggedOut forgets the credential and the peers: the controller removed
// the node. A restart with an auth key registers it again.
func (n *Node) loggedOut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log.Warn("the controller removed this node; restart with --auth-key to register again")
	n.state, n.lastErr = localapi.StateLoggedOut, errLoggedOut.Error()
	if err := n.updateStateLocked(func(p *persistent) { p.Credential, p.NodeID = "", "" }); err != nil {
		n.log.Error("saving state", "err", err)
	}
	n.peers = map[api.NodeID]api.Node{}
	if n.dp != nil && n.self != nil {
		if err := n.applyLocked(); err != nil {
			n.log.Error("removing peers", "err", err)
		}
	}
	removeFile(n.cfg.StateDir, netmapFile)
}

// Net returns the userspace network stack once the dataplane is up
// (netstack mode only), for dialing and listening on the mesh from the
// same process.
func (n *Node) Net(ctx context.Context) (*netstack.Net, error) {
	select {
	case <-n.netReady:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dp == nil || n.dp.net == nil {
		return nil, errors.New("no netstack: the node runs a kernel TUN or is shut down")
	}
	return n.dp.net, nil
}

// responsive reports whether the node's state lock can be taken before
// ctx ends: the watchdog's health check.
func (n *Node) responsive(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		n.mu.Lock()
		n.mu.Unlock() // taking the lock is the check
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("the node's state lock was held past the check's deadline: its main loop is stuck")
	}
}

// Status implements localapi.Agent.
func (n *Node) Status() *localapi.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := &localapi.Status{
		State:       n.state,
		Backend:     n.cfg.Backend,
		Controller:  n.client.Current(),
		LastError:   n.lastErr,
		ApplyError:  n.applyErr,
		BackendNote: n.backendNote,
		Self:        n.self,
		Revision:    n.rev,
		Peers:       []localapi.Peer{},
		Missing:     n.missing,
	}
	if n.st != nil {
		st.ListenPort = n.st.ListenPort
		st.NodeKey = n.st.NodeKey.Public()
		if !n.st.PendingNodeKey.IsZero() {
			st.PendingNodeKey = n.st.PendingNodeKey.Public()
		}
		st.KeyMismatch = n.keyMismatchLocked()
		if st.State == localapi.StateRunning && st.KeyMismatch != "" {
			st.State = localapi.StateRotating
		}
	}
	// A node whose netmap is not in force is not working, whatever the
	// controller answers; offline and logged out say more already.
	if n.applyErr != "" && (st.State == localapi.StateStarting || st.State == localapi.StateRunning || st.State == localapi.StateRotating) {
		st.State = localapi.StateDegraded
	}
	if !n.updatedAt.IsZero() {
		t := n.updatedAt
		st.UpdatedAt = &t
	}
	if d, ok := n.client.Deprecation(); ok {
		st.Deprecation = &localapi.Deprecation{CapabilityVersion: int(api.CurrentCapabilityVersion)}
		if !d.Since.IsZero() {
			st.Deprecation.Since = &d.Since
		}
		if !d.Sunset.IsZero() {
			st.Deprecation.Sunset = &d.Sunset
		}
	}
	stats := map[api.NodePublic]backend.PeerStats{}
	if n.dp != nil {
		st.Interface, st.Backend = n.dp.name, n.dp.kind
		if ps, err := n.dp.backend.Stats(); err == nil {
			for _, s := range ps {
				stats[s.PublicKey] = s
				st.DataplanePeers = append(st.DataplanePeers, s.PublicKey)
			}
		}
	}
	for _, p := range n.viewLocked().Peers {
		lp := localapi.Peer{ID: p.ID, Name: p.Name, Addresses: p.Addresses, NodeKey: p.NodeKey, Endpoints: p.Endpoints,
			AllowOut: p.AllowOut, AllowIn: p.AllowIn}
		lp.PQ, lp.PQReason, _ = n.pqStateLocked(&p)
		if k := n.pq[p.NodeKey]; k != nil && (lp.PQ == localapi.PQPSK || lp.PQ == localapi.PQPending) {
			at := k.at
			lp.PQKey, lp.PQRotated = k.psk.Fingerprint(), &at
		}
		if s, ok := stats[p.NodeKey]; ok {
			lp.Endpoint, lp.RxBytes, lp.TxBytes = s.Endpoint, s.RxBytes, s.TxBytes
			if !s.LastHandshake.IsZero() {
				t := s.LastHandshake
				lp.LastHandshake = &t
			}
		}
		st.Peers = append(st.Peers, lp)
	}
	return st
}

// The schedule of attempts to reach the controller (backoff): the first
// delay is drawn from [50 ms, 100 ms], and the cap from [0.5 s, 1 s].
//
// The cap is what a node takes to come back once a controller replica
// answers again, after an outage of any length: at most one delay (1 s)
// and one attempt, which tries every replica it knows once (a replica that
// is down refuses at once), so under the 2 s reconnect target. The draw
// spreads a fleet's attempts over half a second, so that nodes cut off
// together do not return in step. A lower rate is not needed to protect a
// returning controller from the herd: it bounds what a node may cost it by
// itself, with connection limits and per-node rate limits that answer 429
// with Retry-After, and the node holds back for as long as that asks
// (Client's hold-back, and Run's wait).
const (
	retryMin = 100 * time.Millisecond
	retryMax = time.Second
)

// backoff is exponential with jitter: each delay is drawn from [d/2, d]
// where d doubles from min to max.
type backoff struct {
	min, max time.Duration
	mu       sync.Mutex
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() {
	b.mu.Lock()
	b.cur = 0
	b.mu.Unlock()
}
