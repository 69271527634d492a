package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// The prober's defaults: every ProbeInterval it sends one ICMP echo
// through the tunnel to each of up to ProbePeers peers, chosen at random
// among those this node may open connections to, and counts each as
// answered (result "ok") or not within ProbeTimeout ("lost"). A probe the
// node could not send at all (no dataplane yet, no ICMP socket) counts as
// "error": it says nothing of the peer. The counts feed the peer
// reachability SLO (slos/rustynet-node.yaml), summed over peers: no
// label names a peer.
const (
	ProbeInterval = 10 * time.Second
	ProbePeers    = 3
	ProbeTimeout  = 2 * time.Second
)

// errNoReply is a ping that went out and met no reply in time.
var errNoReply = errors.New("no reply")

// runProber probes until ctx ends. interval 0 takes ProbeInterval; a
// negative interval disables the prober.
func (n *Node) runProber(ctx context.Context, interval time.Duration) {
	if interval < 0 {
		return
	}
	if interval == 0 {
		interval = ProbeInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.probeRound(ctx)
	}
}

// probeRound probes a sample of the peers, at the same time, and counts
// the results.
func (n *Node) probeRound(ctx context.Context) {
	targets := n.probeTargets(ProbePeers)
	var wg sync.WaitGroup
	for _, peer := range targets {
		wg.Go(func() {
			_, err := n.Ping(ctx, string(peer), ProbeTimeout)
			switch {
			case ctx.Err() != nil:
				// Shutting down: not a result.
			case err == nil:
				n.metrics.probes.WithLabelValues("ok").Inc()
			case errors.Is(err, errNoReply):
				n.metrics.probes.WithLabelValues("lost").Inc()
			default:
				n.metrics.probes.WithLabelValues("error").Inc()
			}
		})
	}
	wg.Wait()
}

// probeTargets picks up to k peers at random among those the node may open
// connections to (AllowOut) and can use (not a stub, with an address).
func (n *Node) probeTargets(k int) []api.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ids []api.NodeID
	for id, p := range n.peers {
		if p.AllowOut && p.Unreachable == "" && len(p.Addresses) > 0 {
			ids = append(ids, id)
		}
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids[:min(k, len(ids))]
}
