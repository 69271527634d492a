package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/acl"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// maxLogEntries bounds the change log that deltas are computed from. A node
// whose revision has fallen off the log gets a full netmap.
const maxLogEntries = 16384

var errNodeGone = errors.New("node removed or its credential replaced")

// state is the in-memory view of the store that netmaps are computed from:
// every node, the compiled policy, and a log of recent changes. Only the
// committer writes it, after each commit and in revision order, so it never
// runs ahead of what is durable.
type state struct {
	mu        sync.RWMutex
	rev       uint64
	nodes     map[api.NodeID]*store.Node // values are never modified: replaced
	policy    *acl.Policy
	policyRec *store.Policy // nil while the default policy is in force
	log       []change      // ascending by rev
	logFrom   uint64        // the log holds every change with rev > logFrom
	changed   chan struct{} // closed and replaced when a change is applied
	advanced  chan struct{} // closed and replaced whenever rev advances
	// onChanged, if set before the state is shared, is called (without
	// the lock) after changed is closed: it wakes the parked long-polls.
	onChanged func()
}

// change is one entry of the log: a node changed, or (node "") the policy.
type change struct {
	rev  uint64
	at   time.Time
	node api.NodeID
	prev *store.Node // the node before the change; nil if it did not exist
}

// effect is what a committed mutation changed, for the state to apply.
type effect struct {
	nodes  []nodeUpdate
	policy *policyUpdate
}

type nodeUpdate struct {
	id   api.NodeID
	node *store.Node // nil: deleted
}

type policyUpdate struct {
	rec      *store.Policy
	compiled *acl.Policy
}

func newState(rev uint64, nodes map[api.NodeID]*store.Node, policy *acl.Policy, rec *store.Policy) *state {
	return &state{
		rev:       rev,
		nodes:     nodes,
		policy:    policy,
		policyRec: rec,
		logFrom:   rev,
		changed:   make(chan struct{}),
		advanced:  make(chan struct{}),
	}
}

// reset replaces the whole state (a replicated store's feed started over):
// the log restarts at rev, so every node's next netmap is full.
func (s *state) reset(rev uint64, nodes map[api.NodeID]*store.Node, policy *acl.Policy, rec *store.Policy) {
	s.mu.Lock()
	s.rev, s.nodes, s.policy, s.policyRec = rev, nodes, policy, rec
	s.log, s.logFrom = nil, rev
	close(s.changed)
	s.changed = make(chan struct{})
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
	if s.onChanged != nil {
		s.onChanged()
	}
}

// revision returns the revision the state is at and a channel that closes
// when it advances.
func (s *state) revision() (uint64, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev, s.advanced
}

// waitRev waits until the state has applied rev, or ctx is done; it reports
// whether the state got there.
func (s *state) waitRev(ctx context.Context, rev uint64) bool {
	for {
		cur, adv := s.revision()
		if cur >= rev {
			return true
		}
		select {
		case <-adv:
		case <-ctx.Done():
			return false
		}
	}
}

// apply records the effects committed at rev and wakes waiting long-polls if
// any node or the policy changed.
func (s *state) apply(rev uint64, at time.Time, effects []effect) {
	if s.applyLocked(rev, at, effects) && s.onChanged != nil {
		s.onChanged()
	}
}

// applyLocked is apply's work under the lock; it reports whether changed
// was closed.
func (s *state) applyLocked(rev uint64, at time.Time, effects []effect) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.log)
	for _, e := range effects {
		for _, u := range e.nodes {
			prev := s.nodes[u.id]
			if u.node == nil {
				delete(s.nodes, u.id)
			} else {
				s.nodes[u.id] = u.node
			}
			s.log = append(s.log, change{rev: rev, at: at, node: u.id, prev: prev})
		}
		if e.policy != nil {
			s.policy, s.policyRec = e.policy.compiled, e.policy.rec
			s.log = append(s.log, change{rev: rev, at: at})
		}
	}
	s.rev = rev
	close(s.advanced)
	s.advanced = make(chan struct{})
	if len(s.log) > maxLogEntries {
		drop := len(s.log) - maxLogEntries
		s.logFrom = s.log[drop-1].rev
		for drop < len(s.log) && s.log[drop].rev == s.logFrom {
			drop++
		}
		s.log = slices.Clone(s.log[drop:])
	}
	if len(s.log) != n || n > maxLogEntries {
		close(s.changed)
		s.changed = make(chan struct{})
		return true
	}
	return false
}

// subject is n as policy rules see it: its ID, its tags, and its name
// only when the admin bound it (a name a node chose is never matched).
func subject(n *store.Node) *acl.Subject {
	s := &acl.Subject{ID: n.ID, Tags: n.Tags}
	if n.NameBound() {
		s.Name = n.Name
	}
	return s
}

// nodeView is n as the data plane sees it, running the backend p chooses
// for it.
func nodeView(p *acl.Policy, n *store.Node) api.Node {
	return api.Node{
		ID:          n.ID,
		Name:        n.Name,
		NodeKey:     n.NodeKey,
		Addresses:   n.Addresses,
		AllowedIPs:  n.Addresses,
		Endpoints:   n.AllEndpoints(),
		Backends:    []string{p.Backend(subject(n), n.Backends)},
		BackendKeys: n.BackendKeys,
		Tags:        n.Tags,
		PQ:          n.PQ,
		PQMode:      p.PQMode(subject(n)),
	}
}

// withoutPQ takes the post-quantum fields out of resp, for a client older
// than capability version 4.
func withoutPQ(resp *api.MapResponse) *api.MapResponse {
	strip := func(n *api.Node) { n.PQ, n.PQMode = nil, "" }
	if resp.Self != nil {
		strip(resp.Self)
	}
	for i := range resp.Peers {
		strip(&resp.Peers[i])
	}
	for i := range resp.PeersChanged {
		strip(&resp.PeersChanged[i])
	}
	return resp
}

// peerEntry is what self's netmap says of peer, if anything. The ACL
// decides whether they are peers at all and in which directions; when the
// two run different backends, a client of capability 2 or later gets a
// stub that says why (no keys, addresses or endpoints) and an older one
// nothing.
func peerEntry(p *acl.Policy, self, peer *store.Node, stubs bool) (api.Node, bool) {
	if self.ID == peer.ID {
		return api.Node{}, false
	}
	ss, ps := subject(self), subject(peer)
	out, in := p.Allows(ss, ps), p.Allows(ps, ss)
	if !out && !in {
		return api.Node{}, false
	}
	mine, theirs := p.Backend(ss, self.Backends), p.Backend(ps, peer.Backends)
	if mine != theirs {
		if !stubs {
			return api.Node{}, false
		}
		return api.Node{ID: peer.ID, Name: peer.Name, Backends: []string{theirs}, Tags: peer.Tags,
			Unreachable: fmt.Sprintf("runs the %s backend; this node runs %s", theirs, mine)}, true
	}
	v := nodeView(p, peer)
	v.AllowOut, v.AllowIn = out, in
	return v, true
}

// sameAccessInputs reports whether a and b match in everything that decides
// who their peers are.
func sameAccessInputs(a, b *store.Node) bool {
	return a.Name == b.Name && a.NameSource == b.NameSource && slices.Equal(a.Tags, b.Tags) && slices.Equal(a.Backends, b.Backends)
}

// activeBackend is the backend the policy in force chooses for n.
func (s *state) activeBackend(n *store.Node) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policy.Backend(subject(n), n.Backends)
}

// netmap computes what node id, holding credential hash cred and the netmap
// of revision since, must receive: a full map, a delta, or an empty delta
// that only advances the revision. v is the client's capability version.
// It also returns the channel that closes on the next change and the
// commit time of the newest change included (zero if none).
func (s *state) netmap(id api.NodeID, cred store.Hash, since uint64, v api.CapabilityVersion) (*api.MapResponse, <-chan struct{}, time.Time, error) {
	stubs := v >= 2
	s.mu.RLock()
	defer s.mu.RUnlock()
	self := s.nodes[id]
	if self == nil || !hashEqual(self.CredentialHash, cred) {
		return nil, nil, time.Time{}, errNodeGone
	}
	if since == 0 || since < s.logFrom || since > s.rev {
		return s.fullLocked(self, stubs), s.changed, time.Time{}, nil
	}
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].rev > since })
	entries := s.log[i:]
	resp := &api.MapResponse{Revision: s.rev}
	if len(entries) == 0 {
		return resp, s.changed, time.Time{}, nil
	}
	newest := entries[len(entries)-1].at
	// The earliest state in range of each changed node is what the
	// receiver last saw of it.
	before := make(map[api.NodeID]*store.Node, len(entries))
	var order []api.NodeID
	for _, c := range entries {
		if c.node == "" {
			return s.fullLocked(self, stubs), s.changed, newest, nil
		}
		if _, seen := before[c.node]; !seen {
			before[c.node] = c.prev
			order = append(order, c.node)
		}
	}
	if prev, ok := before[id]; ok {
		if prev == nil || !sameAccessInputs(prev, self) {
			return s.fullLocked(self, stubs), s.changed, newest, nil
		}
		sv := nodeView(s.policy, self)
		resp.Self = &sv
	}
	for _, pid := range order {
		if pid == id {
			continue
		}
		prev, cur := before[pid], s.nodes[pid]
		sawBefore := false
		if prev != nil {
			_, sawBefore = peerEntry(s.policy, self, prev, stubs)
		}
		if cur != nil {
			if e, ok := peerEntry(s.policy, self, cur, stubs); ok {
				resp.PeersChanged = append(resp.PeersChanged, e)
				continue
			}
		}
		if sawBefore {
			resp.PeersRemoved = append(resp.PeersRemoved, pid)
		}
	}
	if resp.Self == nil && len(resp.PeersChanged) == 0 && len(resp.PeersRemoved) == 0 {
		newest = time.Time{}
	}
	return resp, s.changed, newest, nil
}

func (s *state) fullLocked(self *store.Node, stubs bool) *api.MapResponse {
	v := nodeView(s.policy, self)
	resp := &api.MapResponse{Revision: s.rev, Full: true, Self: &v, Peers: []api.Node{}}
	for _, n := range s.nodes {
		if e, ok := peerEntry(s.policy, self, n, stubs); ok {
			resp.Peers = append(resp.Peers, e)
		}
	}
	sort.Slice(resp.Peers, func(i, j int) bool { return resp.Peers[i].ID < resp.Peers[j].ID })
	return resp
}

// authenticate returns the node whose credential hash is cred.
func (s *state) authenticate(id api.NodeID, cred store.Hash) (*store.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.nodes[id]
	if n == nil || !hashEqual(n.CredentialHash, cred) {
		return nil, false
	}
	return n, true
}

func (s *state) nodeByNameOrID(v string) *store.Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := s.nodes[api.NodeID(v)]; n != nil {
		return n
	}
	for _, n := range s.nodes {
		if n.Name == v {
			return n
		}
	}
	return nil
}

func (s *state) snapshot() (nodes []*store.Node, policy *store.Policy, rev uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	nodes = make([]*store.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	return nodes, s.policyRec, s.rev
}

func (s *state) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.nodes)
}

// policyNow returns the compiled policy in force.
func (s *state) policyNow() *acl.Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policy
}
