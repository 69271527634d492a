// Package store defines what the controller keeps durably: nodes, pre-auth
// keys and the ACL policy, behind a transactional Store interface.
//
// The interface is shaped so that both an embedded engine (bbolt, the
// default, in store/bolt) and a replicated one (etcd, whose STM retries a
// transaction function on conflict) can implement it: all access goes
// through View and Update with a function over a Tx, the function may run
// more than once, and the store keeps its unique indexes itself.
package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// SchemaVersion is the version of the stored data layout this build writes.
// A store holding an older version is migrated forward, explicitly and in
// order, when opened; a store holding a newer one is refused.
//
//   - 1: nodes, pre-auth keys, the policy and counters, with unique indexes
//     on machine key, node key, name and address.
//   - 2: no node's name has the form of a node ID (see RenameIDShapedNames).
const SchemaVersion = 2

var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNewerSchema is returned when opening a store written by a newer
	// build.
	ErrNewerSchema = errors.New("store was written by a newer controller")
	// ErrUnavailable is returned (wrapped, with the cause) when a
	// replicated store cannot be reached or has no quorum: the
	// transaction did not run or did not commit, and may be retried. The
	// controller answers 503 with Retry-After.
	ErrUnavailable = errors.New("store unavailable")
	// ErrUnknownOutcome is returned when a replicated store lost contact
	// in the middle of a commit and could not learn whether it took
	// effect. The caller must not report success; a client's retry must
	// be safe (registration and key rotation are idempotent for the node
	// that asked).
	ErrUnknownOutcome = errors.New("store did not confirm whether the transaction committed")
	// ErrTooLarge is returned when a transaction exceeds the store's
	// limits (etcd's --max-txn-ops or --max-request-bytes). Nothing was
	// written; the controller commits a batch that hits it in halves.
	ErrTooLarge = errors.New("transaction too large for the store")
	// ErrNoSpace is returned when the store refuses writes because it is
	// full (etcd's space quota alarm, or a disk with no space left).
	ErrNoSpace = errors.New("store is out of space")
)

// ConflictError is returned by PutNode when a unique field of the node is
// already held by another node.
type ConflictError struct {
	Field string     // "machine_key", "node_key", "name" or "address"
	Value string     // the contested value
	Owner api.NodeID // the node that holds it
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s is already held by node %s", e.Field, e.Value, e.Owner)
}

// Store is the controller's durable state.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it if fn
	// returns nil. When Update returns nil the writes are durable. fn may
	// be called more than once and must not have effects outside the Tx
	// other than setting variables it owns. Update returns the revision the
	// transaction committed as.
	Update(ctx context.Context, fn func(Tx) error) (rev uint64, err error)
	// Backup writes a consistent copy of the whole store to w, in a form
	// the store's Restore can read.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Close releases the store. Transactions in progress complete first.
	Close() error
}

// Tx is a transaction. Reads see the transaction's own writes.
type Tx interface {
	// Revision is the revision of the data as this transaction sees it:
	// the last committed revision in a View, the one this transaction will
	// commit as in an Update. It increases by one with every committed
	// Update.
	Revision() uint64

	Node(id api.NodeID) (*Node, error)
	// NodeIDBy looks a node up by a unique index: "machine_key",
	// "node_key", "name" or "address" (an IP address in text form).
	NodeIDBy(index, value string) (api.NodeID, error)
	// PutNode creates or replaces a node and keeps the unique indexes. It
	// returns a *ConflictError when a unique field belongs to another node.
	PutNode(n *Node) error
	// DeleteNode removes a node and its index entries.
	DeleteNode(id api.NodeID) error
	// ForEachNode calls fn for each node in ID order until fn returns an
	// error.
	ForEachNode(fn func(*Node) error) error

	AuthKey(id string) (*AuthKey, error)
	PutAuthKey(k *AuthKey) error
	ForEachAuthKey(fn func(*AuthKey) error) error
	// DeleteAuthKey removes a key (ErrNotFound if it does not exist).
	DeleteAuthKey(id string) error

	// Policy returns the ACL policy, or ErrNotFound if none was ever set.
	Policy() (*Policy, error)
	PutPolicy(p *Policy) error

	// Counter returns a named uint64 (0 if never set); SetCounter sets it.
	// The controller keeps the IPAM cursor here.
	Counter(name string) (uint64, error)
	SetCounter(name string, v uint64) error
	// ForEachCounter calls fn for each counter that was set, in name
	// order, until fn returns an error.
	ForEachCounter(fn func(name string, v uint64) error) error
}

// Index names for Tx.NodeIDBy.
const (
	IndexMachineKey = "machine_key"
	IndexNodeKey    = "node_key"
	IndexName       = "name"
	IndexAddress    = "address"
)

// Node is a registered node. Records are values: copy before changing.
type Node struct {
	ID   api.NodeID `json:"id"`
	Name string     `json:"name"`
	// NameSource says who chose Name: api.NameFromAuthKey or
	// api.NameFromAdmin (a bound name, which policy selectors match), or
	// empty when the node chose it by its hostname (a label only).
	NameSource string            `json:"name_source,omitempty"`
	NodeKey    api.NodePublic    `json:"node_key"`
	MachineKey api.MachinePublic `json:"machine_key"`
	Addresses  []netip.Prefix    `json:"addresses"`
	// Endpoints are those the node reported; Observed is the one the
	// controller derived from the source address of its last report.
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	Observed   netip.AddrPort   `json:"observed,omitzero"`
	ListenPort uint16           `json:"listen_port,omitempty"`
	// Backends the node can run, most preferred first.
	Backends []string `json:"backends"`
	// BackendKeys are the node's public keys for backends that do not use
	// the node key.
	BackendKeys map[string]string `json:"backend_keys,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	// PQ lists the post-quantum schemes the node runs, as it last
	// announced them (capability version 4; none before).
	PQ        []string `json:"pq,omitempty"`
	AuthKeyID string   `json:"auth_key_id"`
	// CredentialHash is the SHA-256 of the node credential's secret.
	CredentialHash Hash      `json:"credential_hash"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Clone returns a deep copy.
func (n *Node) Clone() *Node {
	c := *n
	c.Addresses = append([]netip.Prefix(nil), n.Addresses...)
	c.Endpoints = append([]netip.AddrPort(nil), n.Endpoints...)
	c.Backends = append([]string(nil), n.Backends...)
	c.Tags = append([]string(nil), n.Tags...)
	c.PQ = append([]string(nil), n.PQ...)
	c.BackendKeys = maps.Clone(n.BackendKeys)
	return &c
}

// NameBound reports whether the admin chose the node's name (directly or
// through its auth key), so that policy selectors may match it.
func (n *Node) NameBound() bool { return n.NameSource != "" }

// AllEndpoints returns the reported endpoints followed by the observed one
// when it is not among them.
func (n *Node) AllEndpoints() []netip.AddrPort {
	eps := append([]netip.AddrPort(nil), n.Endpoints...)
	if n.Observed.IsValid() {
		for _, ep := range eps {
			if ep == n.Observed {
				return eps
			}
		}
		eps = append(eps, n.Observed)
	}
	return eps
}

// AuthKey is a pre-auth key. Only the SHA-256 of its secret is kept.
type AuthKey struct {
	ID          string     `json:"id"`
	Hash        Hash       `json:"hash"`
	Description string     `json:"description,omitempty"`
	Reusable    bool       `json:"reusable"`
	Tags        []string   `json:"tags,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	Uses        int        `json:"uses"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Name is the node name the key binds, if any.
	Name string `json:"name,omitempty"`
}

// Hash is a SHA-256 digest, stored as hex.
type Hash [32]byte

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h[:])), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("hash: want %d hex characters, got %d", 2*len(h), len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Policy is the ACL policy text as the operator set it.
type Policy struct {
	Text      string    `json:"text"`
	UpdatedAt time.Time `json:"updated_at"`
}
