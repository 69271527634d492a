package api

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Routes of API v1. Every route but Healthz requires HeaderCapabilityVersion;
// every route but Register and Healthz requires a node credential as
// "Authorization: Bearer <credential>".
const (
	PathHealthz   = "/healthz"
	PathRegister  = "/v1/register"   // POST RegisterRequest -> RegisterResponse
	PathNetmap    = "/v1/netmap"     // GET ?since=REV&wait=SECONDS -> MapResponse
	PathEndpoints = "/v1/endpoints"  // POST EndpointsRequest -> Node (self)
	PathRotateKey = "/v1/rotate-key" // POST RotateKeyRequest -> Node (self)
	PathLogout    = "/v1/logout"     // POST (empty body or {}) -> 204
)

// Limits of the API. Requests beyond them are refused with 400 or 413.
const (
	MaxBodyBytes     = 64 << 10 // request body size limit (the admin policy body has MaxPolicyBodyBytes)
	MaxEndpoints     = 16
	MaxBackends      = 8
	MaxTags          = 16
	MaxHostnameLen   = 63
	DefaultWait      = 30 * time.Second // long-poll wait when ?wait is absent
	MaxWait          = 120 * time.Second
	DefaultBackend   = "wireguard"
	CredentialPrefix = "rnc_"
	AuthKeyPrefix    = "rnk_"
)

// NodeID names a node for as long as it exists. It is assigned by the
// controller at registration and kept across re-registration: "n" and 16
// lowercase hex digits. No node name ever has this form (see Hostname), so
// an ID cannot be mistaken for a name.
type NodeID string

var nodeIDRE = regexp.MustCompile(`^n[0-9a-f]{16}$`)

// ValidNodeID reports whether s has the form of a node ID.
func ValidNodeID(s string) bool { return nodeIDRE.MatchString(s) }

// RegisterRequest is the body of POST /v1/register.
type RegisterRequest struct {
	// AuthKey is a pre-auth key created with `rustynet-controller authkey create`.
	AuthKey string `json:"auth_key"`
	// NodeKey is the node's WireGuard public key.
	NodeKey NodePublic `json:"node_key"`
	// MachineKey identifies the machine. Registering again with the same
	// machine key keeps the node's ID and addresses, but only when the
	// request also carries that node's current credential or (capability
	// 3) a proof that the sender holds the machine private key.
	MachineKey MachinePublic `json:"machine_key"`
	// Hostname is the node's preferred name; the controller makes it a
	// unique DNS label.
	Hostname string `json:"hostname,omitempty"`
	// Backends the node can speak, most preferred first. Absent means
	// ["wireguard"].
	Backends []string `json:"backends,omitempty"`
	// Endpoints are the node's local UDP endpoints.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// ListenPort is the node's data-plane UDP port; the controller pairs it
	// with the source address it observes.
	ListenPort uint16 `json:"listen_port,omitempty"`
	// BackendKeys holds the node's public key for each backend that does
	// not use the node key itself. Since capability version 2.
	BackendKeys map[string]string `json:"backend_keys,omitempty"`
	// Challenge and MachineProof prove that the node holds the machine
	// private key (see MachineProof). Required from capability version 3;
	// a retry of a registration whose answer was lost is recognised only
	// with them.
	Challenge    string `json:"challenge,omitempty"`
	MachineProof string `json:"machine_proof,omitempty"`
	// PQ lists the post-quantum schemes the node runs (node/pq.Scheme).
	// Since capability version 4: send it only to a controller of 4 or
	// later, which refuses nothing it does not know.
	PQ []string `json:"pq,omitempty"`
}

// RegisterResponse is the answer to a successful registration.
type RegisterResponse struct {
	Node Node `json:"node"`
	// Credential authenticates every later request of this node, as
	// "Authorization: Bearer <credential>". It is shown only here; the
	// controller keeps only its hash.
	Credential string `json:"credential"`
}

// EndpointsRequest is the body of POST /v1/endpoints.
type EndpointsRequest struct {
	Endpoints  []netip.AddrPort `json:"endpoints"`
	ListenPort uint16           `json:"listen_port,omitempty"`
	// PQ lists the post-quantum schemes the node runs now, replacing what
	// it announced before (a node restarted on another build reports
	// again). Since capability version 4; a report of an older client
	// clears them.
	PQ []string `json:"pq,omitempty"`
}

// RotateKeyRequest is the body of POST /v1/rotate-key.
type RotateKeyRequest struct {
	NodeKey NodePublic `json:"node_key"`
	// BackendKeys replaces the node's backend keys, which derive from the
	// node key. Since capability version 2.
	BackendKeys map[string]string `json:"backend_keys,omitempty"`
}

// Node is a node as the data plane sees it: the receiver's own entry in
// MapResponse.Self, and each peer in Peers and PeersChanged.
type Node struct {
	ID   NodeID `json:"id"`
	Name string `json:"name"`
	// NodeKey is the WireGuard public key. Absent in a stub.
	NodeKey NodePublic `json:"node_key,omitzero"`
	// Addresses are the node's mesh addresses (a /32 and a /128).
	Addresses []netip.Prefix `json:"addresses"`
	// AllowedIPs are the source addresses a peer may send from; route these
	// to it.
	AllowedIPs []netip.Prefix `json:"allowed_ips"`
	// Endpoints are where the node may be reached: the ones it reported and
	// the one the controller observed.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Backends holds the backend the node runs, as the controller chose
	// it (capability 1: the backends it speaks).
	Backends []string `json:"backends"`
	// BackendKeys holds the node's public keys for backends that do not
	// use the node key. Since capability version 2.
	BackendKeys map[string]string `json:"backend_keys,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	// Unreachable, set only in a stub, says why the receiver cannot use
	// this peer (it runs another backend). A stub has no keys, addresses
	// or endpoints. Since capability version 2.
	Unreachable string `json:"unreachable,omitempty"`
	// AllowOut says the receiver may open connections to this peer; AllowIn
	// says this peer may open connections to the receiver. A peer is sent
	// only when at least one is true. Unset in Self.
	AllowOut bool `json:"allow_out,omitempty"`
	AllowIn  bool `json:"allow_in,omitempty"`
	// PQ lists the post-quantum schemes the node runs, and PQMode is the
	// mode the policy sets for it (PQOff when absent). Since capability
	// version 4; sent only to clients of 4 or later.
	PQ     []string `json:"pq,omitempty"`
	PQMode string   `json:"pq_mode,omitempty"`
}

// MapResponse is the answer to GET /v1/netmap.
//
// A Full response replaces the receiver's whole view: Self and the complete
// Peers list. A delta (Full false) applies PeersChanged (insert or replace
// by ID) and PeersRemoved to the previous view, and replaces Self if set. A
// delta with nothing in it only advances Revision. Send the last Revision
// back as ?since= to get the next change.
type MapResponse struct {
	Revision     uint64   `json:"revision"`
	Full         bool     `json:"full"`
	Self         *Node    `json:"self,omitempty"`
	Peers        []Node   `json:"peers,omitempty"`
	PeersChanged []Node   `json:"peers_changed,omitempty"`
	PeersRemoved []NodeID `json:"peers_removed,omitempty"`
	// Controllers are the URLs of the controller replicas serving this
	// mesh now (https://HOST:PORT), so a node learns replicas added after
	// it started. Empty from a single controller that announces none; a
	// node then keeps the URLs it was started with.
	Controllers []string `json:"controllers,omitempty"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Error is a refusal: a stable machine-readable code and a message that
// says why.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status; it is not sent on the wire.
	Status int `json:"-"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Error codes. They are stable within API v1.
const (
	CodeBadRequest       = "bad_request"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnauthorized     = "unauthorized"
	CodeInvalidAuthKey   = "invalid_auth_key"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodePoolExhausted    = "address_pool_exhausted"
	CodeUpgradeRequired  = "upgrade_required"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

var (
	tagRE     = regexp.MustCompile(`^tag:[a-z0-9][a-z0-9-]{0,62}$`)
	backendRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
)

// ValidTag reports whether s is a well-formed tag ("tag:" and a lowercase
// DNS label).
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// ValidateTags checks a list of tags.
func ValidateTags(tags []string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("at most %d tags, got %d", MaxTags, len(tags))
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		if !ValidTag(t) {
			return fmt.Errorf("tag %q: want \"tag:\" followed by lowercase letters, digits and dashes", truncate(t, 70))
		}
		if seen[t] {
			return fmt.Errorf("tag %q given twice", t)
		}
		seen[t] = true
	}
	return nil
}

// Validate checks a registration request and fills in defaults.
func (r *RegisterRequest) Validate() error {
	if r.AuthKey == "" {
		return fmt.Errorf("auth_key is required")
	}
	if r.NodeKey.IsZero() {
		return fmt.Errorf("node_key is required")
	}
	if r.MachineKey.IsZero() {
		return fmt.Errorf("machine_key is required")
	}
	if [KeyLen]byte(r.NodeKey) == [KeyLen]byte(r.MachineKey) {
		return fmt.Errorf("node_key and machine_key must differ")
	}
	if len(r.Hostname) > 255 {
		return fmt.Errorf("hostname is longer than 255 bytes")
	}
	if len(r.Backends) == 0 {
		r.Backends = []string{DefaultBackend}
	}
	if err := validateBackends(r.Backends); err != nil {
		return err
	}
	if err := validateBackendKeys(r.BackendKeys, r.Backends); err != nil {
		return err
	}
	if (r.Challenge == "") != (r.MachineProof == "") {
		return fmt.Errorf("challenge and machine_proof go together: send both or neither")
	}
	if len(r.Challenge) > MaxChallengeLen {
		return fmt.Errorf("challenge is longer than %d bytes; send back the one %s returned", MaxChallengeLen, PathRegisterChallenge)
	}
	if r.MachineProof != "" {
		if _, err := DecodeProof(r.MachineProof); err != nil {
			return err
		}
	}
	if err := validatePQ(r.PQ); err != nil {
		return err
	}
	return validateEndpoints(r.Endpoints)
}

// Validate checks an endpoints report.
func (r *EndpointsRequest) Validate() error {
	if err := validatePQ(r.PQ); err != nil {
		return err
	}
	return validateEndpoints(r.Endpoints)
}

// Validate checks a key rotation request.
func (r *RotateKeyRequest) Validate() error {
	if r.NodeKey.IsZero() {
		return fmt.Errorf("node_key is required")
	}
	return validateBackendKeys(r.BackendKeys, nil)
}

// MaxBackendKeyLen bounds the text of one backend key.
const MaxBackendKeyLen = 256

// validateBackendKeys checks backend keys: well-formed names (among
// backends, when given) and short printable values.
func validateBackendKeys(keys map[string]string, backends []string) error {
	if len(keys) > MaxBackends {
		return fmt.Errorf("at most %d backend keys, got %d", MaxBackends, len(keys))
	}
	for name, k := range keys {
		if !backendRE.MatchString(name) {
			return fmt.Errorf("backend key for %q: not a backend name", truncate(name, 40))
		}
		if backends != nil && !slices.Contains(backends, name) {
			return fmt.Errorf("backend key for %q, which is not among the node's backends", name)
		}
		if k == "" || len(k) > MaxBackendKeyLen || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return fmt.Errorf("backend key for %q: want 1 to %d printable characters", name, MaxBackendKeyLen)
		}
	}
	return nil
}

func validateBackends(bs []string) error { return validateNames("backend", bs, MaxBackends, backendRE) }

// validateNames checks a list of names of noun: at most max, each
// matching re, none twice.
func validateNames(noun string, names []string, max int, re *regexp.Regexp) error {
	if len(names) > max {
		return fmt.Errorf("at most %d %ss, got %d", max, noun, len(names))
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if !re.MatchString(n) {
			return fmt.Errorf("%s %q: want a lowercase name of letters, digits and dashes", noun, truncate(n, 40))
		}
		if seen[n] {
			return fmt.Errorf("%s %q given twice", noun, n)
		}
		seen[n] = true
	}
	return nil
}

func validateEndpoints(eps []netip.AddrPort) error {
	if len(eps) > MaxEndpoints {
		return fmt.Errorf("at most %d endpoints, got %d", MaxEndpoints, len(eps))
	}
	for _, ep := range eps {
		if !ep.IsValid() || ep.Port() == 0 {
			return fmt.Errorf("endpoint %s: want an address and a non-zero port", ep)
		}
		if a := ep.Addr(); a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("endpoint %s: unspecified and multicast addresses cannot be endpoints", ep)
		}
	}
	return nil
}

// Hostname turns a requested hostname into a DNS label: lowercase letters,
// digits and dashes, at most MaxHostnameLen bytes, "node" if nothing is
// left. A label of the form of a node ID gets the prefix "host-", so that no
// name can pass for an ID.
func Hostname(s string) string {
	h := hostname(s)
	if ValidNodeID(h) {
		return "host-" + h
	}
	return h
}

// ValidName reports whether s is a node name the admin may bind: a DNS
// label (lowercase letters, digits and dashes, at most MaxHostnameLen
// bytes, no dash at either end) that does not have the form of a node ID.
func ValidName(s string) bool {
	return len(s) <= MaxHostnameLen && nameRE.MatchString(s) && !strings.HasSuffix(s, "-") && !ValidNodeID(s)
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func hostname(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if b.Len() >= MaxHostnameLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case r == '.':
			// Keep the first label of a fully qualified name.
			return trimDash(b.String())
		default:
			if b.Len() > 0 && !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return trimDash(b.String())
}

func trimDash(s string) string {
	s = strings.Trim(s, "-")
	if s == "" {
		return "node"
	}
	return s
}
