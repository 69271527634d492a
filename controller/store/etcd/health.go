package etcd

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Members that stop answering.
//
// etcd's client balances its requests round robin over one connection per
// endpoint, and keeps sending a member its share for as long as that
// connection stays open. A member that stops answering while its
// connection stays open (a stalled process, a disk that hangs, a partition
// that drops packets rather than refusing them) keeps its share until
// gRPC's keepalive gives the connection up: at least 10 s (gRPC's floor
// for a client's keepalive interval) plus the keepalive timeout. Watches
// whose stream rides that connection see nothing meanwhile.
//
// So a Store with Options.Probe asks every member, each on a connection of
// its own, for a linearizable read every ProbeEvery, and gives the client
// only the members that answered their last probe within ProbeTimeout (all
// of them when none did, so that requests fail as etcd says rather than
// for want of an endpoint). Leaving a member out of the client's endpoints
// stops new requests to it at once; requests already on it end at their
// attempt deadline (Options.Attempt) and are sent again, and the Store's
// watches start again from the revision they had reached, on a member that
// answers.

// Probe defaults.
const (
	DefaultProbeEvery   = 500 * time.Millisecond
	DefaultProbeTimeout = time.Second
)

// prober keeps cli's endpoints to the members that answer.
type prober struct {
	cli     *clientv3.Client
	eps     []string
	probes  []*clientv3.Client // probes[i] reaches eps[i] only
	key     string
	every   time.Duration
	timeout time.Duration
	up      *prometheus.GaugeVec
	changes prometheus.Counter

	mu      sync.Mutex
	healthy []bool // by endpoint; all true at the start
	lost    chan struct{}
}

// newProber connects to each of base.Endpoints on a client of its own.
func newProber(cli *clientv3.Client, base clientv3.Config, key string, every, timeout time.Duration, m *metrics) (*prober, error) {
	p := &prober{cli: cli, eps: slices.Clone(base.Endpoints), key: key, every: every, timeout: timeout,
		up: m.memberUp, changes: m.endpointChanges, lost: make(chan struct{})}
	for _, ep := range p.eps {
		cfg := base
		cfg.Endpoints = []string{ep}
		c, err := clientv3.New(cfg)
		if err != nil {
			p.close()
			return nil, err
		}
		p.probes = append(p.probes, c)
		p.healthy = append(p.healthy, true)
		p.up.WithLabelValues(ep).Set(1)
	}
	return p, nil
}

// run probes until ctx is done.
func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		ok := make([]bool, len(p.eps))
		var wg sync.WaitGroup
		for i, c := range p.probes {
			wg.Go(func() { ok[i] = p.probe(ctx, c) })
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		p.set(ok)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe is one linearizable read through one member: it answers only if
// it reaches a leader that reaches a quorum.
func (p *prober) probe(ctx context.Context, c *clientv3.Client) bool {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), p.timeout)
	defer cancel()
	_, err := c.Get(ctx, p.key, clientv3.WithCountOnly())
	return err == nil
}

// set records one round of probes and gives the client the members that
// answered (all of them if none did).
func (p *prober) set(ok []bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Equal(ok, p.healthy) {
		return
	}
	lost := false
	var eps []string
	for i, ep := range p.eps {
		if p.healthy[i] && !ok[i] {
			lost = true
		}
		if ok[i] {
			eps = append(eps, ep)
			p.up.WithLabelValues(ep).Set(1)
		} else {
			p.up.WithLabelValues(ep).Set(0)
		}
	}
	if len(eps) == 0 {
		eps = p.eps
	}
	p.healthy = ok
	p.cli.SetEndpoints(eps...)
	p.changes.Inc()
	if lost {
		close(p.lost)
		p.lost = make(chan struct{})
	}
}

// lostMember is closed when a member that answered stops answering.
func (p *prober) lostMember() <-chan struct{} {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

func (p *prober) close() {
	for _, c := range p.probes {
		c.Close()
	}
}
