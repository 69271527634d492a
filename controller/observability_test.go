package controller

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/certs"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
)

// failingStore fails every Update while fail is set, as a full disk does.
type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (f *failingStore) Update(ctx context.Context, fn func(store.Tx) error) (uint64, error) {
	if f.fail.Load() {
		return 0, errors.New("write /data/controller.db: no space left on device")
	}
	return f.Store.Update(ctx, fn)
}

// TestStoreErrorsCounted: a commit the store refuses counts in
// rustynet_controller_store_errors_total, and the client gets a 5xx.
func TestStoreErrorsCounted(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs := &failingStore{Store: st}
	s, err := New(Config{Store: fs, Version: "v9.9.9", Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fs.fail.Store(true)
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", api.AdminPathAuthKeys, strings.NewReader(`{"ttl_seconds":3600}`)))
	if rec.Code < 500 {
		t.Fatalf("creating a key on a failing store answered %d, want a 5xx", rec.Code)
	}
	if got := testutil.ToFloat64(s.metrics.storeErrors); got != 1 {
		t.Fatalf("rustynet_controller_store_errors_total = %v, want 1", got)
	}
	fs.fail.Store(false)
	rec = httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", api.AdminPathAuthKeys, strings.NewReader(`{"ttl_seconds":3600}`)))
	if rec.Code != 201 {
		t.Fatalf("after the store recovered: %d %s", rec.Code, rec.Body)
	}
	if got := testutil.ToFloat64(s.metrics.storeErrors); got != 1 {
		t.Fatalf("rustynet_controller_store_errors_total = %v after a good commit, want still 1", got)
	}
}

// TestBuildInfoVersion: the build's version is a label of build_info.
func TestBuildInfoVersion(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg, "v1.2.3")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rustynet_controller_build_info" {
			continue
		}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if l.GetName() == "version" && l.GetValue() == "v1.2.3" {
				return
			}
		}
	}
	t.Fatal("no rustynet_controller_build_info{version=\"v1.2.3\"}")
}

// TestCertExpiryMetric reports the CA's expiry and the served
// certificate's: a renewed one's, not the expiry of the one it replaced.
func TestCertExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	hosts := certs.Hosts{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	issued := time.Now().Add(-380 * 24 * time.Hour) // the server certificate expires in 17 days
	cm, err := certs.Open(dir, hosts, func() time.Time { return issued })
	if err != nil {
		t.Fatal(err)
	}
	old := cm.Leaf().NotAfter
	if d := time.Until(old); d > 20*24*time.Hour || d < 10*24*time.Hour {
		t.Fatalf("setup: the server certificate expires in %v, want about 17 days", d)
	}
	cm, err = certs.Open(dir, hosts, nil) // now, with today's clock
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(certExpiry{cm})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["ca"] != float64(cm.CA().NotAfter.Unix()) {
		t.Errorf("ca expiry %v, want %v", got["ca"], cm.CA().NotAfter.Unix())
	}
	if got["server"] <= float64(old.Unix()) || got["server"] != float64(cm.Leaf().NotAfter.Unix()) {
		t.Errorf("server expiry %v: want the renewed certificate's %v (the old one expired at %v)", got["server"], cm.Leaf().NotAfter.Unix(), old.Unix())
	}
}

// TestDeprecatedVersionHeaders: an answer to a client whose capability
// version is announced for removal carries Deprecation and Sunset (a
// refusal too: the headers are about the client, not the request); the
// current version's answers do not; every request is counted by its
// client's version, a 426 too, with the label bounded.
func TestDeprecatedVersionHeaders(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2027, 1, 15, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{Store: st, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		version, label string
		status         int
		deprecated     bool
	}{
		{"1", "1", 401, true},
		{"2", "2", 401, true},
		{api.CurrentCapabilityVersion.String(), api.CurrentCapabilityVersion.String(), 401, false},
		{"0", "0", 426, false},
		{"999999", "newer", 401, false},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", api.PathNetmap, nil)
		req.Header.Set(api.HeaderCapabilityVersion, tc.version)
		s.Handler().ServeHTTP(rec, req)
		dep, sunset := rec.Header().Get(api.HeaderDeprecation), rec.Header().Get(api.HeaderSunset)
		if rec.Code != tc.status || (dep != "") != tc.deprecated || (sunset != "") != tc.deprecated {
			t.Errorf("version %s: %d, Deprecation %q, Sunset %q; want %d, deprecated %v", tc.version, rec.Code, dep, sunset, tc.status, tc.deprecated)
		}
		if tc.deprecated && (dep != "@1796342400" || sunset != "Thu, 02 Dec 2027 00:00:00 GMT") {
			t.Errorf("version %s: Deprecation %q, Sunset %q; want compat.yaml's 2026-12-04 and 2027-12-02", tc.version, dep, sunset)
		}
		if got := testutil.ToFloat64(s.metrics.capability.WithLabelValues(tc.label)); got != 1 {
			t.Errorf("rustynet_controller_requests_by_capability_total{capability=%q} = %v, want 1", tc.label, got)
		}
	}
}
