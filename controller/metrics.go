package controller

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rustynet/rustynet/controller/api"
)

// metrics are the controller's Prometheus metrics, on a registry the caller
// injects. Labels are bounded: route is a registered pattern or
// "unmatched", code a status code.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	nodes        prometheus.Gauge
	polls        prometheus.Gauge
	pushLatency  prometheus.Histogram
	registered   *prometheus.CounterVec
	commitBatch  prometheus.Histogram
	commitTime   prometheus.Histogram
	storeErrors  prometheus.Counter
	fullNetmaps  prometheus.Counter
	deltaNetmaps prometheus.Counter
	connsOpen    prometheus.Gauge
	connsRefused *prometheus.CounterVec
	leader       prometheus.Gauge
	swept        prometheus.Counter
	limited      *prometheus.CounterVec
	forwarded    *prometheus.CounterVec
	forWriters   prometheus.Counter
	capability   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, version string) *metrics {
	f := promauto.With(reg)
	if version == "" {
		version = "unknown"
	}
	f.NewGauge(prometheus.GaugeOpts{
		Name:        "rustynet_controller_build_info",
		Help:        "Build information of the controller; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "capability_version": api.CurrentCapabilityVersion.String()},
	}).Set(1)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_http_requests_total",
			Help: "HTTP requests to the control API, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rustynet_controller_http_request_duration_seconds",
			Help:    "Time to answer control API requests, by route pattern (netmap long-polls included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		nodes: f.NewGauge(prometheus.GaugeOpts{
			Name: "rustynet_controller_nodes",
			Help: "Registered nodes.",
		}),
		polls: f.NewGauge(prometheus.GaugeOpts{
			Name: "rustynet_controller_netmap_polls_open",
			Help: "Netmap long-polls currently held open.",
		}),
		pushLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_controller_netmap_push_latency_seconds",
			Help:    "Time from a committed change to the netmap response that carries it being written to a waiting node.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		registered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_registrations_total",
			Help: "Registration attempts, by result (ok, refused, error).",
		}, []string{"result"}),
		forwarded: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_writes_forwarded_total",
			Help: "Writes this replica handed to the writer replica, by result: ok, refused (the writer refused the write), error (the writer's store failed), unanswered (the writer took it and did not answer), committed_here (the writer could not be reached or declined it; this replica committed the write).",
		}, []string{"result"}),
		capability: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_requests_by_capability_total",
			Help: "Node API requests by the client's capability version (\"newer\" past this build's), those refused 426 included: who a removal would break.",
		}, []string{"capability"}),
		forWriters: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_writes_for_replicas_total",
			Help: "Writes other replicas handed to this one, as the writer, that it committed.",
		}),
		commitBatch: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_controller_store_commit_batch_size",
			Help:    "Mutations committed together in one store transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		commitTime: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_controller_store_commit_duration_seconds",
			Help:    "Time to commit one store transaction, fsync included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		storeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_store_errors_total",
			Help: "Store transactions that failed to commit (each refuses the mutations it carried).",
		}),
		fullNetmaps: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_netmaps_full_total",
			Help: "Full netmap responses sent.",
		}),
		deltaNetmaps: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_netmaps_delta_total",
			Help: "Delta netmap responses sent, empty keep-alives included.",
		}),
		connsOpen: f.NewGauge(prometheus.GaugeOpts{
			Name: "rustynet_controller_connections_open",
			Help: "Open connections to the control API.",
		}),
		connsRefused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_connections_refused_total",
			Help: "Connections to the control API closed on accept, by the limit they were over (total, per_ip).",
		}, []string{"limit"}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "rustynet_controller_leader",
			Help: "1 while this controller runs the work that must happen once (the auth key sweep): always for a single controller, for one replica at a time over etcd.",
		}),
		swept: f.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_auth_keys_swept_total",
			Help: "Auth keys deleted by the sweep, expired or revoked more than the retention ago.",
		}),
		limited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_rate_limited_total",
			Help: "Requests refused 429 by a per-node limit, by limit (writes, polls, open_polls).",
		}, []string{"limit"}),
	}
}
