package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/ipam"
	"github.com/rustynet/rustynet/controller/store"
)

// registerIntent is a registration as its transaction needs it, checked
// by the replica the node sent it to (the auth key's form, the machine
// proof, the endpoints). It carries no secret: the auth key's ID and the
// hash of its secret, and the hash of the node's new credential. A replica
// hands it to the writer replica as it is (forward.go).
type registerIntent struct {
	MachineKey  api.MachinePublic `json:"machine_key"`
	NodeKey     api.NodePublic    `json:"node_key"`
	Hostname    string            `json:"hostname,omitempty"`
	Backends    []string          `json:"backends,omitempty"`
	BackendKeys map[string]string `json:"backend_keys,omitempty"`
	Endpoints   []netip.AddrPort  `json:"endpoints,omitempty"`
	ListenPort  uint16            `json:"listen_port,omitempty"`
	// PQ is the post-quantum schemes the node announced (capability 4).
	PQ []string `json:"pq,omitempty"`
	// Observed is the node's data-plane endpoint as the receiving
	// replica saw it (its source address and ListenPort).
	Observed    netip.AddrPort `json:"observed"`
	AuthKeyID   string         `json:"auth_key_id"`
	AuthKeyHash store.Hash     `json:"auth_key_hash"`
	// CredentialNode and CredentialHash are the credential the node sent
	// (nil hash: none).
	CredentialNode api.NodeID  `json:"credential_node,omitempty"`
	CredentialHash *store.Hash `json:"credential_hash,omitempty"`
	// Proven: the node proved it holds the machine private key.
	Proven bool `json:"proven"`
	// NewID is the node's ID if it is new; NewCredentialHash the hash of
	// the credential it is given.
	NewID             api.NodeID `json:"new_id"`
	NewCredentialHash store.Hash `json:"new_credential_hash"`
}

// Validate checks what a node's request would have been checked for.
func (in *registerIntent) Validate() error {
	req := api.RegisterRequest{AuthKey: in.AuthKeyID, NodeKey: in.NodeKey, MachineKey: in.MachineKey,
		Hostname: in.Hostname, Backends: in.Backends, BackendKeys: in.BackendKeys, PQ: in.PQ}
	if in.AuthKeyID == "" {
		return errors.New("auth_key_id is required")
	}
	if err := req.Validate(); err != nil {
		return err
	}
	in.Backends = req.Backends
	if !validNodeID(in.NewID) {
		return fmt.Errorf("new_id %q is not a node ID (n and 16 hex digits)", truncate(string(in.NewID), 40))
	}
	if (in.CredentialNode == "") != (in.CredentialHash == nil) {
		return errors.New("credential_node and credential_hash go together")
	}
	return nil
}

// Validate checks a write handed over by another replica.
func (r *replicaCommitRequest) Validate() error {
	switch {
	case r.Register != nil && r.Endpoints != nil:
		return errors.New("register and endpoints are two writes: send one")
	case r.Register != nil:
		return r.Register.Validate()
	case len(r.Endpoints) > endpointsChunk:
		return fmt.Errorf("at most %d endpoint reports at once, got %d", endpointsChunk, len(r.Endpoints))
	case len(r.Endpoints) > 0:
		seen := make(map[api.NodeID]bool, len(r.Endpoints))
		for i, in := range r.Endpoints {
			if !validNodeID(in.Node) {
				return fmt.Errorf("endpoints[%d]: node %q is not a node ID (n and 16 hex digits)", i, truncate(string(in.Node), 40))
			}
			if seen[in.Node] {
				return fmt.Errorf("endpoints[%d]: a second report for node %s", i, in.Node)
			}
			seen[in.Node] = true
			if len(in.Endpoints) > api.MaxEndpoints {
				return fmt.Errorf("endpoints[%d]: at most %d endpoints, got %d", i, api.MaxEndpoints, len(in.Endpoints))
			}
		}
		return nil
	}
	return errors.New("the write is empty: nothing to commit")
}

// validNodeID reports whether id has the form of the IDs the controller
// hands out: n and 16 hex digits.
func validNodeID(id api.NodeID) bool {
	return len(id) == 17 && id[0] == 'n' && strings.Trim(string(id[1:]), "0123456789abcdef") == ""
}

// commitRegister commits a registration: handed to the writer replica
// when there is one and mayForward, else here. It returns the node and the
// revision, once this replica's state has it.
func (s *Server) commitRegister(ctx context.Context, in *registerIntent, mayForward bool) (*store.Node, uint64, error) {
	if w := s.writer(); mayForward && w != "" {
		resp, err := s.forward(ctx, w, &replicaCommitRequest{Register: in})
		if err == nil {
			s.metrics.forwarded.WithLabelValues("ok").Inc()
			s.waitWriter(ctx, resp.Revision)
			return resp.Node, resp.Revision, nil
		}
		s.countForward(err, 1)
		// Not committed by the writer, or perhaps committed: the
		// intent is idempotent (registerTx), so commit it here.
		if !errors.Is(err, errNotSent) && !errors.Is(err, store.ErrUnknownOutcome) {
			return nil, 0, err
		}
	}
	res, rev, err := s.mutateRev(ctx, func(tx store.Tx) (effect, any, error) { return s.registerTx(tx, in) })
	if err != nil {
		return nil, 0, err
	}
	return res.(*store.Node), rev, nil
}

// commitRegisterEarly commits a registration another replica handed over,
// answered once it is durable.
func (s *Server) commitRegisterEarly(ctx context.Context, in *registerIntent) (*store.Node, uint64, error) {
	res, rev, err := s.mutateDurable(ctx, func(tx store.Tx) (effect, any, error) { return s.registerTx(tx, in) })
	if err != nil {
		return nil, 0, err
	}
	return res.(*store.Node), rev, nil
}

// registerTx is a registration's transaction.
func (s *Server) registerTx(tx store.Tx, in *registerIntent) (effect, any, error) {
	now := s.now().UTC()
	var old *store.Node
	existing, err := tx.NodeIDBy(store.IndexMachineKey, in.MachineKey.String())
	switch {
	case err == nil:
		if old, err = tx.Node(existing); err != nil {
			return effect{}, nil, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return effect{}, nil, err
	}
	// This very intent, applied already (a replica that handed it to the
	// writer and got no answer commits it too): nothing to do.
	if old != nil && hashEqual(old.CredentialHash, in.NewCredentialHash) {
		return effect{}, old, nil
	}
	// A node may always come back with the key that registered it
	// (a retry whose answer was lost, or a re-registration): a
	// single-use key is not spent twice by the same node.
	own := old != nil
	k, err := checkAuthKey(tx, in.AuthKeyID, in.AuthKeyHash, now, func(k *store.AuthKey) bool { return own && k.ID == old.AuthKeyID })
	if err != nil {
		return effect{}, nil, err
	}
	var n *store.Node
	var cursor uint64
	counters := map[string]uint64{} // written after PutNode
	var displaced []*store.Node     // nodes that give up a name to this one
	if old != nil {
		switch {
		case in.CredentialHash != nil && in.CredentialNode != old.ID:
			return effect{}, nil, &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden,
				Message: "the credential does not belong to the node that holds this machine key"}
		case in.CredentialHash != nil && !hashEqual(*in.CredentialHash, old.CredentialHash):
			return effect{}, nil, unauthorized("unknown credential for this machine key: it was replaced by a later registration; register without it")
		case in.CredentialHash == nil && !in.Proven:
			return effect{}, nil, conflict(api.CodeConflict,
				"this machine key is already registered; a client of capability version 3 proves it holds the key (GET %s) and gets its node back, "+
					"an older one re-registers with its credential, or the admin removes the node (`rustynet-controller node remove`)", api.PathRegisterChallenge)
		}
		n = old.Clone()
	} else {
		if _, err := tx.Node(in.NewID); err == nil {
			// 64 random bits that collide: a refusal of this one
			// registration, which a retry (with a new ID) gets past.
			return effect{}, nil, conflict(api.CodeConflict, "node ID %s is taken; retry the registration, which picks a new one", in.NewID)
		}
		n = &store.Node{ID: in.NewID, MachineKey: in.MachineKey, CreatedAt: now}
		if k.Name == "" {
			base := api.Hostname(in.Hostname)
			name, suffix, err := uniqueName(tx, base)
			if err != nil {
				return effect{}, nil, err
			}
			if suffix != 0 {
				counters[nameCounter(base)] = suffix
			}
			n.Name = name
		}
		if cursor, err = tx.Counter(ipamCounter); err != nil {
			return effect{}, nil, err
		}
		idx, v4, v6, err := s.pool.Allocate(cursor, func(a netip.Addr) (bool, error) {
			_, err := tx.NodeIDBy(store.IndexAddress, a.String())
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		})
		if errors.Is(err, ipam.ErrExhausted) {
			return effect{}, nil, conflict(api.CodePoolExhausted, "%s", err)
		}
		if err != nil {
			return effect{}, nil, err
		}
		cursor = idx
		n.Addresses = []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)}
	}
	if k.Name != "" && (n.Name != k.Name || !n.NameBound()) {
		if displaced, err = bindName(tx, n, k.Name, api.NameFromAuthKey, counters); err != nil {
			return effect{}, nil, err
		}
	}
	// Refuse a node key conflict before anything is written.
	if holder, err := tx.NodeIDBy(store.IndexNodeKey, in.NodeKey.String()); err == nil && holder != n.ID {
		return effect{}, nil, nodeKeyInUse()
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return effect{}, nil, err
	}
	n.NodeKey = in.NodeKey
	n.AuthKeyID = k.ID
	n.Backends = in.Backends
	n.BackendKeys = in.BackendKeys
	n.PQ = in.PQ
	n.Tags = k.Tags
	n.Endpoints = in.Endpoints
	n.ListenPort = in.ListenPort
	n.Observed = in.Observed
	n.CredentialHash = in.NewCredentialHash
	n.UpdatedAt = now
	// Displaced nodes first: they free the name this one takes.
	for _, d := range displaced {
		if err := putNode(tx, d); err != nil {
			return effect{}, nil, err
		}
	}
	if err := putNode(tx, n); err != nil {
		return effect{}, nil, err
	}
	if cursor != 0 {
		counters[ipamCounter] = cursor
	}
	for name, v := range counters {
		if err := tx.SetCounter(name, v); err != nil {
			return effect{}, nil, err
		}
	}
	if old == nil || k.ID != old.AuthKeyID {
		k.Uses++
	}
	if err := tx.PutAuthKey(k); err != nil {
		return effect{}, nil, err
	}
	eff := effect{}
	for _, d := range displaced {
		eff.nodes = append(eff.nodes, nodeUpdate{d.ID, d})
	}
	eff.nodes = append(eff.nodes, nodeUpdate{n.ID, n})
	return eff, n, nil
}
