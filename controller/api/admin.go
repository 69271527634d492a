package api

import (
	"fmt"
	"net/netip"
	"time"
)

// Admin routes, served only on the controller's unix socket (DIR/admin.sock,
// mode 0600, and only to the user the controller runs as).
const (
	AdminPathAuthKeys = "/admin/v1/authkeys"      // GET -> []AuthKey; POST CreateAuthKeyRequest -> CreateAuthKeyResponse
	AdminPathAuthKey  = "/admin/v1/authkeys/{id}" // DELETE: revoke
	AdminPathNodes    = "/admin/v1/nodes"         // GET -> []AdminNode
	AdminPathNode     = "/admin/v1/nodes/{id}"    // DELETE: remove; PATCH UpdateNodeRequest -> AdminNode
	AdminPathPolicy   = "/admin/v1/policy"        // GET -> Policy; PUT SetPolicyRequest -> Policy
	AdminPathBackup   = "/admin/v1/backup"        // GET -> a consistent copy of the store
)

// MaxAuthKeyTTL bounds how long a pre-auth key may live.
const MaxAuthKeyTTL = 365 * 24 * time.Hour

// CreateAuthKeyRequest asks for a new pre-auth key.
type CreateAuthKeyRequest struct {
	Reusable    bool     `json:"reusable,omitempty"`
	TTLSeconds  int64    `json:"ttl_seconds"`
	Tags        []string `json:"tags,omitempty"`
	Description string   `json:"description,omitempty"`
	// Name binds the name of the node the key registers: that node gets
	// this name whatever hostname it asks for, and the policy's
	// "name:NAME" selectors match it. Only for single-use keys.
	Name string `json:"name,omitempty"`
}

// Validate checks the request.
func (r *CreateAuthKeyRequest) Validate() error {
	if r.Name != "" {
		if !ValidName(r.Name) {
			return fmt.Errorf("name %q: want a DNS label (lowercase letters, digits and dashes, at most %d) that is not of the form of a node ID", truncate(r.Name, 70), MaxHostnameLen)
		}
		if r.Reusable {
			return fmt.Errorf("a key that binds a name registers one node: it cannot be reusable")
		}
	}
	if r.TTLSeconds <= 0 {
		return fmt.Errorf("ttl_seconds must be positive")
	}
	if time.Duration(r.TTLSeconds)*time.Second > MaxAuthKeyTTL || r.TTLSeconds > int64(MaxAuthKeyTTL/time.Second) {
		return fmt.Errorf("ttl_seconds must be at most %d (%s)", int64(MaxAuthKeyTTL/time.Second), MaxAuthKeyTTL)
	}
	if len(r.Description) > 256 {
		return fmt.Errorf("description is longer than 256 bytes")
	}
	return ValidateTags(r.Tags)
}

// AuthKey describes a pre-auth key. The key itself is never shown again
// after creation; the controller keeps only its hash.
type AuthKey struct {
	ID          string     `json:"id"`
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

// State says whether the key can still register a node, as of now.
func (k *AuthKey) State(now time.Time) string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case !now.Before(k.ExpiresAt):
		return "expired"
	case !k.Reusable && k.Uses > 0:
		return "used"
	default:
		return "valid"
	}
}

// CreateAuthKeyResponse carries the new key, shown only once.
type CreateAuthKeyResponse struct {
	AuthKey AuthKey `json:"auth_key"`
	Key     string  `json:"key"`
}

// AdminNode is a node as the operator sees it.
type AdminNode struct {
	ID   NodeID `json:"id"`
	Name string `json:"name"`
	// NameSource says who chose the name: NameFromHostname (the node's
	// own choice, a label that no policy selector matches), NameFromAuthKey
	// or NameFromAdmin (bound: "name:NAME" selectors match it).
	NameSource string           `json:"name_source"`
	NodeKey    NodePublic       `json:"node_key"`
	MachineKey MachinePublic    `json:"machine_key"`
	Addresses  []netip.Prefix   `json:"addresses"`
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	Backends   []string         `json:"backends"`
	// Backend is the one the controller chose for the node to run.
	Backend   string    `json:"backend"`
	Tags      []string  `json:"tags,omitempty"`
	AuthKeyID string    `json:"auth_key_id"`
	CreatedAt time.Time `json:"created_at"`
	// Online is true while the node holds a netmap long-poll open.
	Online bool `json:"online"`
}

// Who chose a node's name.
const (
	NameFromHostname = "hostname"
	NameFromAuthKey  = "auth-key"
	NameFromAdmin    = "admin"
)

// UpdateNodeRequest changes a node (PATCH AdminPathNode).
type UpdateNodeRequest struct {
	// Name, when set, renames the node and binds the name: the policy's
	// "name:NAME" selectors match it from then on. A node that holds the
	// name by its own hostname gives it up; one bound to it refuses.
	Name string `json:"name"`
}

// Validate checks the request.
func (r *UpdateNodeRequest) Validate() error {
	if !ValidName(r.Name) {
		return fmt.Errorf("name %q: want a DNS label (lowercase letters, digits and dashes, at most %d) that is not of the form of a node ID", truncate(r.Name, 70), MaxHostnameLen)
	}
	return nil
}

// SetPolicyRequest replaces the ACL policy.
type SetPolicyRequest struct {
	// Policy is the YAML text of the policy.
	Policy string `json:"policy"`
}

// Policy is the policy in force.
type Policy struct {
	// Policy is the YAML text; empty when Default.
	Policy string `json:"policy"`
	// Default is true when no policy was ever set: every node may reach
	// every other.
	Default   bool       `json:"default"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// MaxPolicyBytes bounds the YAML text of a policy. It is the one policy size
// limit: SetPolicyRequest.Validate, the controller's policy parser
// (controller/acl) and `rustynet-controller policy set` all enforce it.
const MaxPolicyBytes = 48 << 10

// MaxPolicyBodyBytes bounds the body of PUT AdminPathPolicy in place of
// MaxBodyBytes. It fits the largest allowed policy however its JSON string
// is escaped (at most 6 bytes per byte of text, as in "\u003c", which
// encoding/json writes for '<', '>' and '&') and the object around it, so a
// policy within MaxPolicyBytes is never refused for the size of its encoding.
const MaxPolicyBodyBytes = 6*MaxPolicyBytes + 1<<10

// Validate checks the request; the policy itself is checked by the
// controller's parser.
func (r *SetPolicyRequest) Validate() error {
	if r.Policy == "" {
		return fmt.Errorf("policy is empty")
	}
	if len(r.Policy) > MaxPolicyBytes {
		return fmt.Errorf("policy is %d bytes, at most %d allowed", len(r.Policy), MaxPolicyBytes)
	}
	return nil
}
