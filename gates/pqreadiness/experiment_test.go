package pqreadiness

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/policies"
)

// TestExperiment runs the experiment for real, small: the built daemons
// in network namespaces, a pair under the shipped rotation period with
// two paired throughput rounds and idle windows of 3 periods, and a fleet
// of 4 nodes
// migrated in waves of 0, 50 and 100% and rolled back. The pair must see
// its keys rotate without losing a datagram, and every wave must reach
// the modes it wants with every pair pinging.
func TestExperiment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs meshes in network namespaces: not in -short")
	}
	require.Root(t)
	require.Command(t, "iperf3")
	dir := t.TempDir()
	if err := testbed.BuildDaemons(dir); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	}()
	env := Env{Mesh: testbed.MeshConfig{ControllerBin: filepath.Join(dir, "rustynet-controller"), DaemonBin: filepath.Join(dir, "rustynetd"), Work: dir, Log: &log}, Log: &log, Full: true}
	pol, err := policies.LoadPQ("../../" + PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The shipped rotation period; the rest cut down.
	exp := pol.Experiment
	exp.IdleWindow = policies.Duration{D: 3 * exp.Period.D}
	exp.ThroughputRounds = policies.Int{Value: 2}
	exp.Fleet = policies.Int{Value: 4}
	exp.Waves = []policies.Int{{Value: 0}, {Value: 50}, {Value: 100}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := &Results{}
	if err := runPair(ctx, env, exp, res); err != nil {
		t.Fatalf("pair: %v", err)
	}
	if err := runWaves(ctx, env, exp, res); err != nil {
		t.Fatalf("waves: %v", err)
	}
	r := res.Rotation
	t.Logf("rotation: %d rotations in %v, %d of %d lost; throughput classical %v, hybrid %v Gbit/s; idle bytes %v, %.0f per rotation",
		r.Rotations, r.Window, r.Lost, r.Sent, res.Classical, res.Hybrid, res.IdleBytes, res.RotationBytes)
	if want := int(r.Window/r.Period) - 1; r.Rotations < want || r.Sent == 0 || r.Lost != 0 {
		t.Errorf("rotation: %d rotations (want at least %d), %d of %d lost", r.Rotations, want, r.Lost, r.Sent)
	}
	if len(res.Classical) != 2 || len(res.Hybrid) != 2 || res.IdleBytes["hybrid"] <= 0 {
		t.Errorf("throughput %v / %v, idle bytes %v: want two paired rounds and the idle windows", res.Classical, res.Hybrid, res.IdleBytes)
	}
	if len(res.Waves) != 3 {
		t.Fatalf("%d waves, want 3", len(res.Waves))
	}
	for _, w := range res.Waves {
		t.Logf("wave %d%%: %d capable, modes %v", w.Percent, w.Capable, w.Modes)
		if w.Problem != "" || len(w.Pairs) != 12 {
			t.Errorf("wave %d%%: %d pairs, problem %q", w.Percent, len(w.Pairs), w.Problem)
		}
		for _, p := range w.Pairs {
			if !p.OK || p.Mode != p.Want {
				t.Errorf("wave %d%%: %s -> %s ok %v, mode %s, want %s (%s)", w.Percent, p.From, p.To, p.OK, p.Mode, p.Want, p.Error)
			}
		}
	}
	if n := res.Waves[2].Modes[localapi.PQPSK]; n != 12 {
		t.Errorf("at 100%%, %d pairs on the preshared key, want 12", n)
	}
	rb := res.Rollback
	if rb == nil || rb.Nodes != 2 || rb.Lost != 0 || rb.Sent == 0 || rb.Classical != rb.Of || rb.Of != 10 {
		t.Errorf("rollback %+v: want 2 nodes, nothing lost, the 10 pairs with a rolled-back node classical", rb)
	}
	if len(res.Problems) > 0 {
		t.Errorf("problems: %v", res.Problems)
	}
}
