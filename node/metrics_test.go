package node

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/rustynet/rustynet/node/control"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := control.New(srv.URL, ca)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(reg, &Node{syncedAt: time.Now(), client: client})
	m.probes.WithLabelValues("ok").Inc()
	m.netmaps.WithLabelValues("full").Inc()
	m.netmapApply.Observe(0.01)
	m.routeApply.Observe(0.01)
	m.reconnects.Inc()
	m.replicaSwitches.WithLabelValues(control.ReasonNetwork).Inc()
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
	if len(mfs) < 16 {
		t.Errorf("gathered %d metric families, want the 16 the node defines", len(mfs))
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains([]string{"kind", "result", "state", "version", "goversion", "capability_version", "controller", "reason", "role", "mode"}, l.GetName()) {
					t.Errorf("metric %s has label %s; node metrics carry no per-peer labels", mf.GetName(), l.GetName())
				}
			}
		}
	}
}
