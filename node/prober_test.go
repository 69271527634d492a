package node_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/lockedbuf"
	"github.com/rustynet/rustynet/node"
)

// gathered returns the value of metric name whose label (if any) is
// label=value, and whether it was there.
func gathered(t *testing.T, reg *prometheus.Registry, name, label, value string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

// TestProberAndHealthMetrics runs two nodes, one probing the other: its
// probes are answered while the peer runs and lost once it stops, and its
// health metrics say it is connected, with a fresh netmap and one peer up.
func TestProberAndHealthMetrics(t *testing.T) {
	m := &netstackMesh{t: t, ctl: controllertest.Start(t), reg: backends(), backend: "wireguard"}
	key := m.AuthKey()
	reg := prometheus.NewRegistry()
	cfg := m.config("alpha", key)
	probeLog, netmapLog := &lockedbuf.Buffer{}, &lockedbuf.Buffer{}
	cfg.Registerer, cfg.ProbeInterval, cfg.ProbePeers, cfg.ProbeLog = reg, 100*time.Millisecond, -1, probeLog
	cfg.NetmapLog = netmapLog
	startNetstackNode(t, cfg)
	cfg = m.config("bravo", key)
	cfg.ProbeInterval = -1
	b := startNetstackNode(t, cfg)

	eventually(t, 15*time.Second, "alpha's probes of bravo answered", func() error {
		if ok, _ := gathered(t, reg, "rustynet_node_peer_probes_total", "result", "ok"); ok < 3 {
			return fmt.Errorf("%v probes answered", ok)
		}
		return nil
	})
	if v, _ := gathered(t, reg, "rustynet_node_control_connected", "", ""); v != 1 {
		t.Errorf("rustynet_node_control_connected = %v, want 1", v)
	}
	if age, ok := gathered(t, reg, "rustynet_node_netmap_age_seconds", "", ""); !ok || age < 0 || age > 30 {
		t.Errorf("rustynet_node_netmap_age_seconds = %v (present %v), want 0 to 30 (polls return within 10 s here)", age, ok)
	}
	if up, _ := gathered(t, reg, "rustynet_node_peers_by_state", "state", "up"); up != 1 {
		t.Errorf("peers up = %v, want 1", up)
	}
	if v, ok := gathered(t, reg, "rustynet_node_build_info", "version", "unknown"); !ok || v != 1 {
		t.Errorf("rustynet_node_build_info{version=\"unknown\"} = %v (present %v), want 1", v, ok)
	}

	lost0, _ := gathered(t, reg, "rustynet_node_peer_probes_total", "result", "lost")
	b.Stop() // bravo stays in alpha's netmap: it is down, not removed
	eventually(t, 15*time.Second, "alpha's probes of the stopped bravo lost", func() error {
		if lost, _ := gathered(t, reg, "rustynet_node_peer_probes_total", "result", "lost"); lost < lost0+2 {
			return fmt.Errorf("%v probes lost (%v before bravo stopped)", lost, lost0)
		}
		return nil
	})
	if errs, _ := gathered(t, reg, "rustynet_node_peer_probes_total", "result", "error"); errs != 0 {
		t.Errorf("%v probes could not be sent", errs)
	}

	// The probe log has a line for each probe counted (the counter goes
	// first, and is read after the log), each naming bravo.
	results := map[string]int{}
	var bravo api.NodeID
	for line := range strings.Lines(probeLog.String()) {
		var rec node.ProbeRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("probe log line %q: %v", line, err)
		}
		if rec.Name != "bravo" || rec.Peer == "" || rec.At.IsZero() || (rec.Result == "ok") != (rec.RTTMS > 0) {
			t.Errorf("probe log line %q", line)
		}
		results[rec.Result]++
		bravo = rec.Peer
	}
	for _, r := range []string{"ok", "lost"} {
		if n, _ := gathered(t, reg, "rustynet_node_peer_probes_total", "result", r); results[r] == 0 || float64(results[r]) > n {
			t.Errorf("the probe log has %d %s probes, the metric %v", results[r], r, n)
		}
	}

	// The netmap log has a line for netmaps applied (each counted before
	// its line is written; the log is read first), one of them adding
	// bravo.
	logged := netmapLog.String()
	counted := 0.0
	for _, kind := range []string{"full", "delta", "cache"} {
		n, _ := gathered(t, reg, "rustynet_node_netmaps_total", "kind", kind)
		counted += n
	}
	lines, sawBravo := 0, false
	for line := range strings.Lines(logged) {
		var rec node.NetmapRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("netmap log line %q: %v", line, err)
		}
		if rec.At.IsZero() || rec.Revision == 0 || (rec.Kind != "full" && rec.Kind != "delta") {
			t.Errorf("netmap log line %q", line)
		}
		sawBravo = sawBravo || slices.Contains(rec.Peers, bravo)
		lines++
	}
	if lines == 0 || float64(lines) > counted {
		t.Errorf("the netmap log has %d lines, the metric counts %v netmaps", lines, counted)
	}
	if !sawBravo {
		t.Errorf("no line of the netmap log adds bravo (%s):\n%s", bravo, logged)
	}
}
