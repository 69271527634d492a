package promtext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const exposition = `# HELP etcd_server_lease_expired_total The total number of expired leases.
# TYPE etcd_server_lease_expired_total counter
etcd_server_lease_expired_total 2
go_goroutines 41 1700000000000
rustynet_controller_insecure_mode_enabled{mode="controller-tls12"} 0
rustynet_controller_insecure_mode_enabled_extra 7
`

func TestParse(t *testing.T) {
	got, err := Parse(exposition, "etcd_server_lease_expired_total", "go_goroutines", `rustynet_controller_insecure_mode_enabled{mode="controller-tls12"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"etcd_server_lease_expired_total": 2, "go_goroutines": 41, `rustynet_controller_insecure_mode_enabled{mode="controller-tls12"}`: 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// A name is matched whole: a longer metric that starts with it is
	// another series.
	if _, err := Parse(exposition, "rustynet_controller_insecure_mode_enabled"); err == nil || !strings.Contains(err.Error(), "no rustynet_controller_insecure_mode_enabled in the metrics") {
		t.Errorf("a series only a longer name starts with: err = %v, want it missing", err)
	}
	if _, err := Parse("x NaNa\n", "x"); err == nil {
		t.Error("a value that is no number: no error")
	}
}

func TestRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(exposition))
	}))
	defer srv.Close()
	v, err := One(context.Background(), nil, srv.URL+"/metrics", "etcd_server_lease_expired_total")
	if err != nil || v != 2 {
		t.Errorf("One = %v, %v; want 2", v, err)
	}
	if _, err := One(context.Background(), nil, srv.URL+"/nothing", "go_goroutines"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404: err = %v, want the status", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(exposition, "go_goroutines")
	f.Fuzz(func(t *testing.T, text, name string) {
		Parse(text, name)
	})
}
