package node

import (
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/control"
	"github.com/rustynet/rustynet/node/localapi"
)

// metrics are the node's Prometheus metrics. No label carries a peer: the
// per-peer figures are summed.
type metrics struct {
	reconnects      prometheus.Counter
	replicaSwitches *prometheus.CounterVec
	netmaps         *prometheus.CounterVec
	netmapApply     prometheus.Histogram
	routeApply      prometheus.Histogram
	probes          *prometheus.CounterVec
	pqExchanges     *prometheus.CounterVec
	pqExchangeTime  prometheus.Histogram
}

var applyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	f := promauto.With(reg)
	reg.MustRegister(&peerCollector{n: n, seen: map[api.NodePublic]peerTotals{}})
	version := n.cfg.Version
	if version == "" {
		version = "unknown"
	}
	f.NewGauge(prometheus.GaugeOpts{
		Name:        "rustynet_node_build_info",
		Help:        "Build information of the node; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "capability_version": api.CurrentCapabilityVersion.String()},
	}).Set(1)
	m := &metrics{
		reconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_node_control_reconnects_total",
			Help: "Times the node lost the controller and tried again.",
		}),
		replicaSwitches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_node_control_replica_switches_total",
			Help: "Times the node moved from one controller replica to the next, by reason: network, tls, timeout, unavailable (503), server_error (another 5xx without an API error).",
		}, []string{"reason"}),
		netmaps: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_node_netmaps_total",
			Help: "Netmaps applied, by kind (full, delta, cache).",
		}, []string{"kind"}),
		netmapApply: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_node_netmap_apply_duration_seconds",
			Help:    "Time to apply a netmap to the dataplane (backend and routes).",
			Buckets: applyBuckets,
		}),
		routeApply: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_node_route_apply_duration_seconds",
			Help:    "Time to apply the addresses and routes of a netmap.",
			Buckets: applyBuckets,
		}),
		probes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_node_peer_probes_total",
			Help: "Probes (ICMP echoes through the tunnel) sent to a sample of the peers, by result: ok (answered in time), lost (not answered), error (could not be sent). Summed over peers.",
		}, []string{"result"}),
	}
	m.pqExchanges = f.NewCounterVec(prometheus.CounterOpts{
		Name: "rustynet_node_pq_exchanges_total",
		Help: "Post-quantum preshared-key exchanges (node/pq) with peers, by this node's role (initiator, responder) and result: ok, refused (the other side runs none with this node, and says why), error. Summed over peers.",
	}, []string{"role", "result"})
	m.pqExchangeTime = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "rustynet_node_pq_exchange_duration_seconds",
		Help:    "Time of the post-quantum exchanges this node initiated and completed, from the connection to the installed key.",
		Buckets: applyBuckets,
	})
	for _, role := range []string{"initiator", "responder"} {
		for _, r := range []string{"ok", "refused", "error"} {
			m.pqExchanges.WithLabelValues(role, r)
		}
	}
	// Every result from zero, so that a rate of lost probes exists before
	// the first is lost.
	for _, r := range []string{"ok", "lost", "error"} {
		m.probes.WithLabelValues(r)
	}
	for _, r := range control.Reasons {
		m.replicaSwitches.WithLabelValues(r)
	}
	return m
}

var (
	descPeers      = prometheus.NewDesc("rustynet_node_peers", "Peers configured in the backend.", nil, nil)
	descHandshakes = prometheus.NewDesc("rustynet_node_handshakes_total", "Completed handshakes with peers, as seen by the backend at scrape time.", nil, nil)
	descRx         = prometheus.NewDesc("rustynet_node_received_bytes_total", "Bytes received from peers through the tunnel.", nil, nil)
	descTx         = prometheus.NewDesc("rustynet_node_sent_bytes_total", "Bytes sent to peers through the tunnel.", nil, nil)
	descFiltered   = prometheus.NewDesc("rustynet_node_filtered_packets_total", "Packets dropped because the sending peer may not open connections to this node.", nil, nil)
	descConnected  = prometheus.NewDesc("rustynet_node_control_connected", "1 while the node's last exchange with its controller succeeded, else 0.", nil, nil)
	descReplica    = prometheus.NewDesc("rustynet_node_control_replica_info", "The controller replica the node sends its requests to now, by its URL (controller); always 1.", []string{"controller"}, nil)
	descNetmapAge  = prometheus.NewDesc("rustynet_node_netmap_age_seconds", "Time since the controller last confirmed the netmap in force (its last answered poll); absent before the first.", nil, nil)
	descSunset     = prometheus.NewDesc("rustynet_node_control_capability_sunset_timestamp_seconds", "The sunset (Unix time) the controller announced for the node's capability version: from then it may stop serving this rustynetd, which must be upgraded before. Absent while no removal is announced; 0 when one is, without a date the node reads.", nil, nil)
	descPeerStates = prometheus.NewDesc("rustynet_node_peers_by_state", "Peers by state: up (a handshake completed), pending (none yet), unusable (in the netmap but not usable: another backend).", []string{"state"}, nil)
	descApplied    = prometheus.NewDesc("rustynet_node_netmap_applied", "1 while the node's netmap is in force on its dataplane, 0 while applying it failed (rustynet status says why; the node tries again at each poll).", nil, nil)
	descPQPeers    = prometheus.NewDesc("rustynet_node_pq_peers", "Peers by post-quantum protection of the pair (mode): classical, pending (wanted, not yet in the session; under pq: require only the exchange passes), psk (the session runs on a post-quantum preshared key), refused (pq: require and the peer cannot: nothing passes), hybrid-tls (the backend's own exchange is post-quantum). rustynet status shows each peer's.", []string{"mode"}, nil)
)

// Peer states of rustynet_node_peers_by_state.
const (
	PeerStateUp       = "up"
	PeerStatePending  = "pending"
	PeerStateUnusable = "unusable"
)

// peerCollector reads the backend's peer stats at scrape time and keeps
// running totals, so the counters do not fall when a peer is removed.
type peerCollector struct {
	n *Node

	mu         sync.Mutex
	seen       map[api.NodePublic]peerTotals
	handshakes float64
	rx, tx     float64
	// filtered counts drops of earlier dataplanes plus the current one's.
	filtered, lastFiltered float64
	lastFilter             any
}

type peerTotals struct {
	lastHandshake int64
	rx, tx        uint64
}

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPeers
	ch <- descHandshakes
	ch <- descRx
	ch <- descTx
	ch <- descFiltered
	ch <- descConnected
	ch <- descReplica
	ch <- descNetmapAge
	ch <- descSunset
	ch <- descPeerStates
	ch <- descPQPeers
	ch <- descApplied
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	c.n.mu.Lock()
	dp := c.n.dp
	connected := 0.0
	if c.n.state == localapi.StateRunning {
		connected = 1
	}
	syncedAt := c.n.syncedAt
	applied := 1.0
	if c.n.applyErr != "" {
		applied = 0
	}
	unusable := len(c.n.missing)
	pqModes := map[string]int{}
	for _, p := range c.n.peers {
		if p.Unreachable == "" {
			state, _, _ := c.n.pqStateLocked(&p)
			pqModes[state]++
		}
	}
	c.n.mu.Unlock()
	for _, m := range localapi.PQStates {
		ch <- prometheus.MustNewConstMetric(descPQPeers, prometheus.GaugeValue, float64(pqModes[m]), m)
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, applied)
	if c.n.client != nil {
		ch <- prometheus.MustNewConstMetric(descReplica, prometheus.GaugeValue, 1, c.n.client.Current())
		if d, ok := c.n.client.Deprecation(); ok {
			sunset := 0.0
			if !d.Sunset.IsZero() {
				sunset = float64(d.Sunset.Unix())
			}
			ch <- prometheus.MustNewConstMetric(descSunset, prometheus.GaugeValue, sunset)
		}
	}
	if !syncedAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(descNetmapAge, prometheus.GaugeValue, time.Since(syncedAt).Seconds())
	}
	up, pending := 0, 0
	c.mu.Lock()
	defer c.mu.Unlock()
	peers := 0
	if dp != nil {
		cur := float64(dp.filter.Dropped())
		if c.lastFilter != dp.filter {
			c.lastFilter, c.lastFiltered = dp.filter, 0
		}
		c.filtered += cur - c.lastFiltered
		c.lastFiltered = cur
		if stats, err := dp.backend.Stats(); err == nil {
			peers = len(stats)
			for _, s := range stats {
				if s.LastHandshake.IsZero() {
					pending++
				} else {
					up++
				}
				old := c.seen[s.PublicKey]
				cur := peerTotals{rx: s.RxBytes, tx: s.TxBytes}
				if !s.LastHandshake.IsZero() {
					cur.lastHandshake = s.LastHandshake.UnixNano()
				}
				if cur.lastHandshake != 0 && cur.lastHandshake != old.lastHandshake {
					c.handshakes++
				}
				// A backend's counters restart when a peer is re-added.
				if cur.rx >= old.rx {
					c.rx += float64(cur.rx - old.rx)
				} else {
					c.rx += float64(cur.rx)
				}
				if cur.tx >= old.tx {
					c.tx += float64(cur.tx - old.tx)
				} else {
					c.tx += float64(cur.tx)
				}
				c.seen[s.PublicKey] = cur
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(peers))
	ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, c.handshakes)
	ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, c.rx)
	ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, c.tx)
	ch <- prometheus.MustNewConstMetric(descFiltered, prometheus.CounterValue, c.filtered)
	ch <- prometheus.MustNewConstMetric(descPeerStates, prometheus.GaugeValue, float64(up), PeerStateUp)
	ch <- prometheus.MustNewConstMetric(descPeerStates, prometheus.GaugeValue, float64(pending), PeerStatePending)
	ch <- prometheus.MustNewConstMetric(descPeerStates, prometheus.GaugeValue, float64(unusable), PeerStateUnusable)
}
