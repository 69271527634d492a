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
// among those this node may open connections to (skipping a peer whose
// last probe still waits for its answer), and counts each as answered
// (result "ok") or not within ProbeTimeout ("lost"). A probe the
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
	var wg sync.WaitGroup
	defer wg.Wait()
	inFlight := map[api.NodeID]bool{} // guarded by mu
	var mu sync.Mutex
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.probeRound(ctx, &wg, &mu, inFlight)
	}
}

// ProbeRecord is one line of the probe log (Config.ProbeLog): a probe
// sent at At to the peer ID (named Name), its Result ("ok", "lost" or
// "error"), and its round trip when answered.
type ProbeRecord struct {
	At     time.Time  `json:"at"`
	Peer   api.NodeID `json:"peer"`
	Name   string     `json:"name"`
	Result string     `json:"result"`
	RTTMS  float64    `json:"rtt_ms,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// probeRound probes a sample of the peers, at the same time, and counts
// the results. It does not wait for the answers: a peer that does not
// answer holds up its own next probe (one is in flight to a peer at a
// time, inFlight, guarded by mu), never the probes of the others, so a
// dead peer does not stretch the interval at which the live ones are
// probed (by ProbeTimeout, when every round waited for its slowest).
func (n *Node) probeRound(ctx context.Context, wg *sync.WaitGroup, mu *sync.Mutex, inFlight map[api.NodeID]bool) {
	k := n.cfg.ProbePeers
	if k == 0 {
		k = ProbePeers
	}
	for _, peer := range n.probeTargets(k) {
		mu.Lock()
		busy := inFlight[peer.ID]
		inFlight[peer.ID] = true
		mu.Unlock()
		if busy {
			continue
		}
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(inFlight, peer.ID)
				mu.Unlock()
			}()
			start := time.Now()
			res, err := n.Ping(ctx, string(peer.ID), ProbeTimeout)
			rec := ProbeRecord{At: start.UTC(), Peer: peer.ID, Name: peer.Name}
			switch {
			case ctx.Err() != nil:
				return // shutting down: not a result
			case err == nil:
				rec.Result, rec.RTTMS = "ok", float64(res.RTT.Microseconds())/1000
			case errors.Is(err, errNoReply):
				rec.Result = "lost"
			default:
				rec.Result, rec.Error = "error", err.Error()
			}
			n.metrics.probes.WithLabelValues(rec.Result).Inc()
			n.probeLog.write(n.log, rec)
		})
	}
}

// probeTarget is a peer to probe.
type probeTarget struct {
	ID   api.NodeID
	Name string
}

// probeTargets picks up to k peers (every one for a negative k) at random
// among those the node may open connections to (AllowOut) and can use (not
// a stub, with an address).
func (n *Node) probeTargets(k int) []probeTarget {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ts []probeTarget
	for id, p := range n.peers {
		if p.AllowOut && p.Unreachable == "" && len(p.Addresses) > 0 {
			ts = append(ts, probeTarget{id, p.Name})
		}
	}
	rand.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	if k < 0 {
		return ts
	}
	return ts[:min(k, len(ts))]
}
