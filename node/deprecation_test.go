package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// TestDeprecationShown: when the controller announces the removal of the
// node's capability version (here, this build's own, announced for the
// test), the node's status carries it with its sunset, and so does its
// metric.
func TestDeprecationShown(t *testing.T) {
	saved := api.Deprecations
	// Registered first, so it runs last: after the controller and the
	// node have stopped reading it.
	t.Cleanup(func() { api.Deprecations = saved })
	api.Deprecations = append(slices.Clone(saved), api.Deprecation{Version: api.CurrentCapabilityVersion, Announced: "2026-01-01", Sunset: "2099-01-01"})

	ctl := controllertest.Start(t)
	m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: "wireguard"}
	cfg := m.config("alpha", m.AuthKey())
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	a := startNetstackNode(t, cfg)
	waitState(t, []meshNode{a}, "running", "the node follows the netmap")
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := st.Deprecation
	if d == nil || d.CapabilityVersion != int(api.CurrentCapabilityVersion) || d.Since == nil || !d.Since.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		d.Sunset == nil || !d.Sunset.Equal(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("status deprecation = %+v, want version %d, since 2026-01-01, sunset 2099-01-01", d, api.CurrentCapabilityVersion)
	}
	if got, ok := gathered(t, reg, "rustynet_node_control_capability_sunset_timestamp_seconds", "", ""); !ok || got != 4070908800 {
		t.Errorf("rustynet_node_control_capability_sunset_timestamp_seconds = %v, %v; want 4070908800 (2099-01-01)", got, ok)
	}
}
