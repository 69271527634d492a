package matrix

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/etcdproc"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

// TestRunCells measures one small cell of every kind for real: a controller
// and nodes in namespaces, the built binaries.
func TestRunCells(t *testing.T) {
	require.Root(t)
	require.Command(t, "iperf3")
	dir := buildDaemons(t)
	_, cells, err := Parse("small.yaml", []byte(`version: 1
name: small
repetitions: 2
suites:
  - kind: throughput
    duration: 1s
    axes: {backend: [wireguard], mtu: ["1420"], peers: ["2"], traffic: [tcp-bulk, udp-small, request-response]}
  - kind: handshake
    repetitions: 1
    axes: {backend: [quic]}
  - kind: reconnect
    repetitions: 1
    axes: {backend: [wireguard]}
  - kind: route-apply
    repetitions: 5
    axes: {routes: ["100"]}
  - kind: netmap-propagation
    repetitions: 1
    axes: {nodes: ["50"], store: [bolt, etcd3]}
`))
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := etcdproc.Build(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := Run(ctx, Env{ControllerBin: filepath.Join(dir, "rustynet-controller"), DaemonBin: filepath.Join(dir, "rustynetd"), EtcdBin: etcd, Work: t.TempDir(), Log: &log}, cells)
	if len(results) != len(cells) {
		t.Fatalf("%d results for %d cells", len(results), len(cells))
	}
	for _, r := range results {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Cell, r.Error)
			continue
		}
		if len(r.Measurements) == 0 {
			t.Errorf("%s measured nothing", r.Cell)
		}
		for _, m := range r.Measurements {
			for _, v := range m.Values {
				if !(v >= 0) {
					t.Errorf("%s %s: value %v", r.Cell, m.Name, v)
				}
			}
		}
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

// TestRunPaired runs a throughput cell and a route-apply cell in paired
// rounds for real, the same build on both sides: every round yields a pair
// for every metric, the peak RSS included; route-apply's quantiles are
// those of every round's applies together; a cell of another kind runs
// once.
func TestRunPaired(t *testing.T) {
	require.Root(t)
	require.Command(t, "iperf3")
	dir := buildDaemons(t)
	_, cells, err := Parse("paired.yaml", []byte(`version: 1
name: paired
repetitions: 3
paired_rounds: 3
suites:
  - kind: throughput
    duration: 1s
    axes: {backend: [wireguard], mtu: ["1420"], peers: ["2"], traffic: [tcp-bulk]}
  - kind: route-apply
    repetitions: 30
    axes: {routes: ["10"]}
  - kind: handshake
    repetitions: 1
    axes: {backend: [wireguard]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := Env{ControllerBin: filepath.Join(dir, "rustynet-controller"), DaemonBin: filepath.Join(dir, "rustynetd"), Work: t.TempDir(), Log: &log}
	results := RunPaired(ctx, env, env, cells, 3)
	if len(results) != 3 || results[0].Error != "" || results[1].Error != "" || results[2].Error != "" {
		t.Fatalf("results %+v\n%s", results, log.String())
	}
	paired := map[string]Paired{}
	for _, p := range results[0].Paired {
		paired[p.Name] = p
	}
	for _, name := range []string{"tunnel_throughput", "cpu_per_gb", "rss_peak_node1", "rss_peak_node2"} {
		p, ok := paired[name]
		if !ok || len(p.Baseline) != 3 || len(p.Candidate) != 3 {
			t.Errorf("paired %s = %+v, want 3 rounds a side", name, p)
		}
	}
	// Every round runs on a fresh mesh a side: its peaks are the peak of
	// processes that lived for that round only.
	if n := strings.Count(log.String(), "mesh up"); n != 2*3 {
		t.Errorf("%d meshes started for 3 paired rounds, want 6 (a fresh one a side each round)", n)
	}
	for _, m := range results[0].Measurements {
		if strings.HasPrefix(m.Name, "rss_peak") && !strings.Contains(m.Method, "fresh mesh a side each round") {
			t.Errorf("%s method %q does not say each round had a fresh mesh", m.Name, m.Method)
		}
	}
	routes := map[string][]float64{}
	for _, m := range results[1].Measurements {
		routes[m.Name] = m.Values
	}
	if all := routes["route_apply"]; len(all) != 30 || len(routes["route_apply_p99"]) != 1 || routes["route_apply_p99"][0] != slices.Max(all) {
		t.Errorf("route-apply candidate figures %v: want the 3 rounds' 10 applies together, and their p99 (the largest of 30)", routes)
	}
	var p50 *Paired
	for i, p := range results[1].Paired {
		if p.Name == "route_apply_p50" {
			p50 = &results[1].Paired[i]
		}
	}
	if p50 == nil || len(p50.Baseline) != 3 || len(p50.Candidate) != 3 {
		t.Errorf("route-apply paired %+v, want route_apply_p50 in 3 rounds a side", results[1].Paired)
	}
	if len(results[2].Paired) != 0 || len(results[2].Measurements) == 0 {
		t.Errorf("handshake: %+v, want measured once, unpaired", results[2])
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

// buildDaemons builds the controller and rustynetd, as the build gate does
// (static), into a temporary directory and returns it.
func buildDaemons(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testbed.BuildDaemons(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
