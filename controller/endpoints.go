package controller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// Endpoints a node may advertise. Peers send handshakes to whatever the
// controller hands out, so an endpoint that points at the peer's own
// machine (loopback), at a link-local service (169.254.169.254, the cloud
// metadata address), at a broadcast address or into the mesh itself is
// refused; loopback is allowed only on a test network where every node
// shares one host (Config.AllowLoopbackEndpoints).

var limitedBroadcast = netip.MustParseAddr("255.255.255.255")

// endpointProblem says why a is not a usable endpoint address, or "".
func (s *Server) endpointProblem(a netip.Addr) string {
	a = a.Unmap()
	v4, v6 := s.pool.Prefixes()
	switch {
	case a.Zone() != "":
		return "an address with a zone (%IFACE) names an interface of the node's host, which its peers do not have"
	case a.IsLoopback() && !s.allowLoopback:
		return "loopback addresses cannot be endpoints (they point every peer at itself)"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local addresses cannot be endpoints"
	case a == limitedBroadcast:
		return "the broadcast address cannot be an endpoint"
	case a.Is4() && a.As4()[0] == 0:
		return "0.0.0.0/8 addresses cannot be endpoints"
	case a.IsUnspecified() || a.IsMulticast():
		return "unspecified and multicast addresses cannot be endpoints"
	case v4.Contains(a) || v6.Contains(a):
		return "mesh addresses cannot be endpoints (the tunnel would carry itself)"
	}
	return ""
}

// checkEndpoints refuses a report that holds an endpoint peers must not
// be sent to, naming it and why.
func (s *Server) checkEndpoints(eps []netip.AddrPort) error {
	for _, ep := range eps {
		if p := s.endpointProblem(ep.Addr()); p != "" {
			return badRequest("endpoint %s: %s", ep, p)
		}
	}
	return nil
}

// observedEndpoint pairs the request's source address with the node's
// data-plane port, unless that address may not be an endpoint.
func (s *Server) observedEndpoint(r *http.Request, port uint16) netip.AddrPort {
	if port == 0 {
		return netip.AddrPort{}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}
	}
	a = a.Unmap().WithZone("")
	if s.endpointProblem(a) != "" {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, port)
}

// Endpoint reports are coalesced, as a group commit: a report that
// arrives while another batch is being stored waits for that commit to
// end and is stored with every other report that arrived meanwhile, in
// one commit that wakes the long-polls once. An idle controller stores a
// report at once. A report that changes nothing is not stored at all (the
// handler answers it from memory).

type endpointReport struct {
	cred     credential
	eps      []netip.AddrPort
	port     uint16
	observed netip.AddrPort
	pq       []string
	done     chan endpointResult // buffered
}

type endpointResult struct {
	node *store.Node
	err  error
}

type endpointCoalescer struct {
	s        *Server
	mu       sync.Mutex
	pending  map[api.NodeID][]*endpointReport
	flushing bool
}

// submit queues a report and waits for the commit that stores it.
func (c *endpointCoalescer) submit(rep *endpointReport) (*store.Node, error) {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = make(map[api.NodeID][]*endpointReport)
	}
	c.pending[rep.cred.id] = append(c.pending[rep.cred.id], rep)
	if !c.flushing {
		c.flushing = true
		go c.run()
	}
	c.mu.Unlock()
	r := <-rep.done
	return r.node, r.err
}

// run stores batches until none is pending.
func (c *endpointCoalescer) run() {
	for {
		c.mu.Lock()
		batch := c.pending
		c.pending = nil
		if len(batch) == 0 {
			c.flushing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.flush(batch)
	}
}

// flush stores the latest report of each node in one mutation (through
// the writer replica, if there is one); every report of the node gets its
// answer.
func (c *endpointCoalescer) flush(batch map[api.NodeID][]*endpointReport) {
	ins := make([]endpointsIntent, 0, len(batch))
	for id, reps := range batch {
		last := reps[len(reps)-1]
		ins = append(ins, endpointsIntent{Node: id, CredentialHash: last.cred.hash, Endpoints: last.eps, ListenPort: last.port, Observed: last.observed, PQ: last.pq})
	}
	outs, _, err := c.s.commitEndpoints(context.Background(), ins, true)
	for i, in := range ins {
		var r endpointResult
		if err != nil {
			r.err = err
		} else {
			r = endpointResult{outs[i].node, outs[i].err}
		}
		for _, rep := range batch[in.Node] {
			rep.done <- r
		}
	}
}

// endpointsIntent is one node's endpoint report as its transaction needs
// it: the node, the hash of the credential it sent, and what it reported
// (checked by the replica it sent it to).
type endpointsIntent struct {
	Node           api.NodeID       `json:"node"`
	CredentialHash store.Hash       `json:"credential_hash"`
	Endpoints      []netip.AddrPort `json:"endpoints,omitempty"`
	ListenPort     uint16           `json:"listen_port,omitempty"`
	Observed       netip.AddrPort   `json:"observed"`
	// PQ replaces the node's post-quantum schemes (capability 4).
	PQ []string `json:"pq,omitempty"`
}

// endpointsOutcome is one report's result: the node as stored, or the
// refusal.
type endpointsOutcome struct {
	node *store.Node
	err  error
}

// endpointsChunk bounds the reports handed to the writer in one request
// (under maxReplicaRequest at api.MaxEndpoints endpoints each), and
// endpointsPerTx the reports committed in one transaction: a changed node
// is 6 etcd operations (its record and 5 index entries), and etcd's
// default --max-txn-ops is 128.
const (
	endpointsChunk = 48
	endpointsPerTx = 18
)

// commitEndpoints stores endpoint reports, one outcome per report, in
// order: handed to the writer replica when there is one and mayForward,
// else here. It returns once this replica's state has them. An error is
// for the whole batch.
func (s *Server) commitEndpoints(ctx context.Context, ins []endpointsIntent, mayForward bool) ([]endpointsOutcome, uint64, error) {
	w := s.writer()
	if !mayForward || w == "" {
		return s.commitEndpointsHere(ctx, ins, false)
	}
	outs := make([]endpointsOutcome, 0, len(ins))
	var rev uint64
	for i := 0; i < len(ins); i += endpointsChunk {
		chunk := ins[i:min(i+endpointsChunk, len(ins))]
		got, r, err := s.forwardEndpoints(ctx, w, chunk)
		if errors.Is(err, errNotSent) {
			// The writer did not take this chunk: commit the rest
			// here.
			rest, r, err := s.commitEndpointsHere(ctx, ins[i:], false)
			if err != nil {
				rest = failed(len(ins)-i, err)
			}
			outs = append(outs, rest...)
			rev = max(rev, r)
			break
		}
		if err != nil {
			// This chunk's outcome is unknown, and the rest were not
			// sent; the chunks before it stand.
			outs = append(outs, failed(len(ins)-i, err)...)
			break
		}
		outs, rev = append(outs, got...), max(rev, r)
	}
	s.waitWriter(ctx, rev)
	return outs, rev, nil
}

func failed(n int, err error) []endpointsOutcome {
	out := make([]endpointsOutcome, n)
	for i := range out {
		out[i].err = err
	}
	return out
}

// commitEndpointsHere commits endpoint reports on this replica, in
// transactions of at most endpointsPerTx reports; durable answers once
// they are durable rather than once this replica's state has them.
func (s *Server) commitEndpointsHere(ctx context.Context, ins []endpointsIntent, durable bool) ([]endpointsOutcome, uint64, error) {
	outs := make([]endpointsOutcome, len(ins))
	var rev uint64
	for i := 0; i < len(ins); i += endpointsPerTx {
		part := ins[i:min(i+endpointsPerTx, len(ins))]
		got := outs[i : i+len(part)]
		fn := func(tx store.Tx) (effect, any, error) { return s.endpointsTx(tx, part, got) }
		var r uint64
		var err error
		if durable {
			_, r, err = s.mutateDurable(ctx, fn)
		} else {
			_, r, err = s.mutateRev(ctx, fn)
		}
		if err != nil {
			return nil, 0, err
		}
		rev = max(rev, r)
	}
	return outs, rev, nil
}

// endpointsTx stores endpoint reports, each outcome in outs.
func (s *Server) endpointsTx(tx store.Tx, ins []endpointsIntent, outs []endpointsOutcome) (effect, any, error) {
	var eff effect
	for i, in := range ins {
		old, err := tx.Node(in.Node)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !hashEqual(old.CredentialHash, in.CredentialHash)) {
			outs[i] = endpointsOutcome{err: unauthorized("node %s was removed, logged out or re-registered; register again", in.Node)}
			continue
		}
		if err != nil {
			return effect{}, nil, err
		}
		if slices.Equal(old.Endpoints, in.Endpoints) && old.ListenPort == in.ListenPort && old.Observed == in.Observed && slices.Equal(old.PQ, in.PQ) {
			outs[i] = endpointsOutcome{node: old}
			continue
		}
		n := old.Clone()
		n.Endpoints, n.ListenPort, n.Observed, n.PQ = in.Endpoints, in.ListenPort, in.Observed, in.PQ
		n.UpdatedAt = s.now().UTC()
		if err := tx.PutNode(n); err != nil {
			return effect{}, nil, err
		}
		outs[i] = endpointsOutcome{node: n}
		eff.nodes = append(eff.nodes, nodeUpdate{in.Node, n})
	}
	return eff, nil, nil
}
