// Package localapi is the node daemon's local API: HTTP over a unix socket
// in the state directory (mode 0600), used by the `rustynet` CLI.
package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// SocketName is the socket's file name in the state directory.
const SocketName = "rustynetd.sock"

// The states of a node (Status.State).
const (
	StateStarting = "starting"
	// StateRunning: the controller answers.
	StateRunning = "running"
	// StateRotating: the controller answers, but it and the node do not
	// agree on the node's key yet (see Status.KeyMismatch).
	StateRotating = "rotating"
	// StateOffline: the controller does not answer; the last netmap is in
	// force.
	StateOffline = "offline"
	// StateLoggedOut: the controller removed the node.
	StateLoggedOut = "logged-out"
	// StateDegraded: the node's netmap is not in force: applying it to
	// the dataplane failed (Status.ApplyError says why), and the node
	// tries again at each poll. Its traffic does not follow the netmap.
	StateDegraded = "degraded"
)

// Status is what `rustynet status` shows.
type Status struct {
	// State is one of the State constants.
	State      string `json:"state"`
	Backend    string `json:"backend"`
	Interface  string `json:"interface"`  // "netstack" in userspace mode
	Controller string `json:"controller"` // the controller replica the node uses now
	LastError  string `json:"last_error,omitempty"`
	// ApplyError says why the netmap is not in force on the dataplane,
	// while it is not (State is StateDegraded unless offline or logged
	// out).
	ApplyError string `json:"apply_error,omitempty"`
	// BackendNote says why the backend asked for (rustynetd --backend) is
	// not the one the node runs, while it is not.
	BackendNote string    `json:"backend_note,omitempty"`
	Self        *api.Node `json:"self,omitempty"`
	// NodeKey is the key the node uses; PendingNodeKey a new one it sent
	// to the controller, which has not confirmed it yet.
	NodeKey        api.NodePublic `json:"node_key,omitzero"`
	PendingNodeKey api.NodePublic `json:"pending_node_key,omitzero"`
	// KeyMismatch says how the node and the controller (by its last
	// netmap) disagree on the node's key, while they do; the node is
	// settling it.
	KeyMismatch string    `json:"key_mismatch,omitempty"`
	ListenPort  uint16    `json:"listen_port"`
	Revision    uint64    `json:"revision"`
	Peers       []Peer    `json:"peers"`
	Missing     []Missing `json:"missing,omitempty"`
	// DataplanePeers are the keys the backend is configured with; they
	// match Peers once a netmap is applied.
	DataplanePeers []api.NodePublic `json:"dataplane_peers"`
	UpdatedAt      *time.Time       `json:"netmap_updated_at,omitempty"`
	// Deprecation is set while the controller announces that the node's
	// capability version is to be removed: upgrade rustynetd before its
	// sunset.
	Deprecation *Deprecation `json:"deprecation,omitempty"`
}

// Deprecation is the controller's announcement of the removal of the
// node's capability version (the Deprecation and Sunset headers of its
// answers). A time is absent when the controller did not give it in a
// form the node reads.
type Deprecation struct {
	CapabilityVersion int        `json:"capability_version"`
	Since             *time.Time `json:"since,omitempty"`
	Sunset            *time.Time `json:"sunset,omitempty"`
}

// Peer is one peer in the status.
type Peer struct {
	ID            api.NodeID       `json:"id"`
	Name          string           `json:"name"`
	Addresses     []netip.Prefix   `json:"addresses"`
	NodeKey       api.NodePublic   `json:"node_key"`
	Endpoint      netip.AddrPort   `json:"endpoint,omitzero"`
	Endpoints     []netip.AddrPort `json:"endpoints,omitempty"`
	LastHandshake *time.Time       `json:"last_handshake,omitempty"`
	RxBytes       uint64           `json:"rx_bytes"`
	TxBytes       uint64           `json:"tx_bytes"`
	AllowOut      bool             `json:"allow_out"`
	AllowIn       bool             `json:"allow_in"`
	// PQ is the pair's post-quantum protection (PQClassical, PQPending,
	// PQPSK, PQRefused or PQHybridTLS) and PQReason why, when it is not
	// PQPSK or PQHybridTLS. PQKey is the fingerprint of the preshared key
	// in force (node/pq.PSK.Fingerprint, never the key), and PQRotated
	// when it was agreed.
	PQ        string     `json:"pq"`
	PQReason  string     `json:"pq_reason,omitempty"`
	PQKey     string     `json:"pq_key,omitempty"`
	PQRotated *time.Time `json:"pq_rotated,omitempty"`
}

// A pair's post-quantum protection, as Peer.PQ says it.
const (
	// PQClassical: classical WireGuard (X25519), by the modes of the
	// pair.
	PQClassical = "classical"
	// PQPending: the pair wants the post-quantum preshared key and does
	// not run on it yet (no exchange has completed, or no handshake since
	// the key was installed). Under pq: require nothing but the exchange
	// passes meanwhile.
	PQPending = "pending"
	// PQPSK: the pair's session runs on a post-quantum preshared key.
	PQPSK = "psk"
	// PQRefused: this node requires post-quantum protection and the peer
	// cannot give it; no traffic passes.
	PQRefused = "refused"
	// PQHybridTLS: the backend's own key exchange is hybrid post-quantum
	// (QUIC's X25519MLKEM768).
	PQHybridTLS = "hybrid-tls"
)

// PQStates lists the pair states, as the metric labels them.
var PQStates = []string{PQClassical, PQPending, PQPSK, PQRefused, PQHybridTLS}

// Missing is a peer the controller sent that this node cannot use, and why.
type Missing struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// PingResult is the answer of one ping.
type PingResult struct {
	Peer string        `json:"peer"`
	Addr netip.Addr    `json:"addr"`
	RTT  time.Duration `json:"rtt_ns"`
}

// Agent is what the server serves.
type Agent interface {
	Status() *Status
	Ping(ctx context.Context, peer string, timeout time.Duration) (*PingResult, error)
	// RotateKey returns the new key, or the pending key with an error
	// that wraps ErrRotationPending, or a refusal.
	RotateKey(ctx context.Context) (api.NodePublic, error)
}

// ErrRotationPending says that a new node key was sent to the controller
// but its answer did not arrive: the node keeps the key as pending and
// completes the rotation when the controller answers.
var ErrRotationPending = errors.New("the key rotation is pending")

// ErrNotRunning says that no rustynetd listens on the state dir's socket.
var ErrNotRunning = errors.New("rustynetd is not running")

// Error is a refusal of the local API.
type Error struct {
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// RotationPendingError is the client's form of a rotation answered
// ErrRotationPending (202 Accepted): the daemon's message, which says why.
type RotationPendingError struct{ Message string }

func (e *RotationPendingError) Error() string        { return e.Message }
func (e *RotationPendingError) Is(target error) bool { return target == ErrRotationPending }

// rotateKeyAnswer is the body of POST /rotate-key: 200 with the new key,
// or 202 with the pending key and why it is pending.
type rotateKeyAnswer struct {
	NodeKey api.NodePublic `json:"node_key"`
	Pending bool           `json:"pending,omitempty"`
	Message string         `json:"message,omitempty"`
}

// Serve serves the local API on DIR/rustynetd.sock until ctx is done, then
// closes the socket and waits for requests in flight.
func Serve(ctx context.Context, dir string, a Agent, log *slog.Logger) (wait func(), err error) {
	path := dir + "/" + SocketName
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is in use: is another rustynetd running on this state dir?", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("local API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.Status()) })
	mux.HandleFunc("GET /ip", func(w http.ResponseWriter, r *http.Request) {
		st := a.Status()
		if st.Self == nil {
			writeJSON(w, http.StatusServiceUnavailable, Error{"the node has no address yet: it has not registered"})
			return
		}
		writeJSON(w, 200, st.Self.Addresses)
	})
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		timeout := 5 * time.Second
		if v := r.URL.Query().Get("timeout_ms"); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 || ms > 60000 {
				writeJSON(w, 400, Error{"timeout_ms: want 1 to 60000"})
				return
			}
			timeout = time.Duration(ms) * time.Millisecond
		}
		res, err := a.Ping(r.Context(), r.URL.Query().Get("peer"), timeout)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, Error{err.Error()})
			return
		}
		writeJSON(w, 200, res)
	})
	mux.HandleFunc("POST /rotate-key", func(w http.ResponseWriter, r *http.Request) {
		k, err := a.RotateKey(r.Context())
		switch {
		case errors.Is(err, ErrRotationPending):
			writeJSON(w, http.StatusAccepted, rotateKeyAnswer{NodeKey: k, Pending: true, Message: err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadGateway, Error{err.Error()})
		default:
			writeJSON(w, 200, rotateKeyAnswer{NodeKey: k})
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("local API stopped", "err", err)
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}()
	return func() { <-stopped }, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Client talks to a running rustynetd.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the daemon whose state dir is dir.
func NewClient(dir string) *Client {
	path := dir + "/" + SocketName
	return &Client{path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// do sends a request and decodes a 200 or 202 answer into out.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://rustynetd"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no socket at %s)", ErrNotRunning, c.path)
		}
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		var e Error
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			return &e
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(raw, out)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/status", &st)
}

// IPs returns the node's mesh addresses.
func (c *Client) IPs(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	return out, c.do(ctx, http.MethodGet, "/ip", &out)
}

// Ping pings a peer (by name, ID or mesh address) through the tunnel.
func (c *Client) Ping(ctx context.Context, peer string, timeout time.Duration) (*PingResult, error) {
	var out PingResult
	q := url.Values{"peer": {peer}, "timeout_ms": {strconv.Itoa(int(timeout / time.Millisecond))}}
	return &out, c.do(ctx, http.MethodPost, "/ping?"+q.Encode(), &out)
}

// RotateKey rotates the node's WireGuard key through the controller. It
// returns the new key, or the pending key and an error that wraps
// ErrRotationPending when the controller's answer did not arrive (the
// daemon completes the rotation when the controller answers).
func (c *Client) RotateKey(ctx context.Context) (api.NodePublic, error) {
	var out rotateKeyAnswer
	if err := c.do(ctx, http.MethodPost, "/rotate-key", &out); err != nil {
		return api.NodePublic{}, err
	}
	if out.Pending {
		return out.NodeKey, &RotationPendingError{Message: out.Message}
	}
	return out.NodeKey, nil
}
