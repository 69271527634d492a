package node

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, &Node{syncedAt: time.Now()})
	m.probes.WithLabelValues("ok").Inc()
	m.netmaps.WithLabelValues("full").Inc()
	m.netmapApply.Observe(0.01)
	m.routeApply.Observe(0.01)
	m.reconnects.Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if len(mfs) < 14 {
		t.Errorf("gathered %d metric families, want the 14 the node defines", len(mfs))
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains([]string{"kind", "result", "state", "version", "goversion", "capability_version"}, l.GetName()) {
					t.Errorf("metric %s has label %s; node metrics carry no per-peer labels", mf.GetName(), l.GetName())
				}
			}
		}
	}
}
