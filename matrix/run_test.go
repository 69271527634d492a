package matrix

import (
	"context"
	"path/filepath"
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

// TestRunPaired runs a throughput cell in paired rounds for real, the
// same build on both sides: every round yields a pair for every metric,
// the peak RSS included, and a cell of another kind runs once.
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
    repetitions: 5
    axes: {routes: ["10"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := Env{ControllerBin: filepath.Join(dir, "rustynet-controller"), DaemonBin: filepath.Join(dir, "rustynetd"), Work: t.TempDir(), Log: &log}
	results := RunPaired(ctx, env, env, cells, 3)
	if len(results) != 2 || results[0].Error != "" || results[1].Error != "" {
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
	if len(results[1].Paired) != 0 || len(results[1].Measurements) == 0 {
		t.Errorf("route-apply: %+v, want measured once, unpaired", results[1])
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
