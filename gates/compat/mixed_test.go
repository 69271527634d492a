package compat

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
)

// TestMixedVersions: nodes of every supported earlier release and of this
// tree, on one controller of this tree, pass traffic between every pair,
// both ways; and so do this tree's nodes with an N-1 node, on the N-1
// controller.
func TestMixedVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the earlier releases and runs meshes in namespaces: not in -short")
	}
	require.Root(t)
	rels := load(t).SupportedReleases(time.Now(), int(CurrentCapability()))
	if len(rels) == 0 {
		t.Fatal("no supported earlier release to run")
	}
	e := newEnv(t, 15*time.Minute, rels, "rustynet-controller", "rustynetd")
	this := e.this
	var built []Built
	for _, r := range rels {
		built = append(built, e.build(t, r))
	}
	newest := built[len(built)-1]
	check := func(name string, ctl Binary, cli string, nodes []Binary) {
		t.Run(name, func(t *testing.T) {
			res, err := CheckMixed(e.ctx, ctl, cli, nodes, e.work, e.log)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range JudgeMixed(res, len(nodes)) {
				t.Error(p)
			}
			for _, p := range res.Pairs {
				t.Logf("%s -> %s: ok %v in %v%s", p.From, p.To, p.OK, p.Took.Round(time.Millisecond), knownIssue(p))
			}
		})
	}
	nodes := []Binary{{Release: "this tree", Path: this["rustynetd"]}}
	for _, b := range built {
		nodes = append(nodes, b.Node())
	}
	check("old nodes on this controller", Binary{Release: "this tree", Path: this["rustynet-controller"]}, this["rustynet-controller"], nodes)
	check("this tree's nodes on the N-1 controller", Binary{Release: newest.Release, Path: newest.Controller}, newest.Controller,
		[]Binary{{Release: "this tree", Path: this["rustynetd"]}, {Release: "this tree", Path: this["rustynetd"]}, newest.Node()})
}

// TestRollingUpgrade: a mesh of the N-1 release is upgraded to this tree
// under traffic, the controller first, then each node: the controller's
// restart costs no probe, and each node's its own restart only.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the N-1 release and runs a mesh in namespaces: not in -short")
	}
	require.Root(t)
	rels := load(t).SupportedReleases(time.Now(), int(CurrentCapability()))
	prev := rels[len(rels)-1]
	e := newEnv(t, 10*time.Minute, rels[len(rels)-1:], "rustynet-controller", "rustynetd")
	b := e.build(t, prev)
	res, err := CheckRolling(e.ctx, b, e.this["rustynet-controller"], e.this["rustynetd"], RollingNodes, e.work, e.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range JudgeRolling(res, RollingNodes) {
		t.Error(p)
	}
	for _, s := range res.Steps {
		t.Logf("%s: took %v, interruption %v, %d probes lost %v (pairs dead before it: %v)", s.What, s.Took.Round(time.Millisecond), s.Interruption.Round(time.Millisecond), s.Lost, s.LostBy, s.DeadBefore)
	}
	t.Logf("%d probes sent, %d lost", res.Sent, res.Lost)
}

// TestMixedControllerThatExits: a controller that exits before it serves
// (as this tree's does when it cannot open a fresh store) is a problem the
// gate blocks on, not a check that could not run.
func TestMixedControllerThatExits(t *testing.T) {
	require.Root(t)
	f, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) to stand for a controller that exits")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := CheckMixed(ctx, Binary{Release: "this tree", Path: f}, f, []Binary{{Release: "this tree", Path: f}, {Release: "this tree", Path: f}}, t.TempDir(), &log)
	if err != nil {
		t.Fatalf("CheckMixed: %v, want the exit as a problem", err)
	}
	if p := JudgeMixed(res, 2); len(p) != 1 || !strings.Contains(p[0], "exited on a fresh data dir before it served") {
		t.Errorf("JudgeMixed = %q", p)
	}
}
