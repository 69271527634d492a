package compat

import (
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// TestJudges: what the gate blocks on, from fixtures of each check's
// result; a clean result passes.
func TestJudges(t *testing.T) {
	good := &StoreUpgrade{From: "v0.1.0", Nodes: upgradeNodes, Kept: upgradeNodes, Credentials: upgradeNodes, Peers: upgradeNodes - 1, Start: 100 * time.Millisecond,
		TooOld:    TooOld{Status: 426, Message: "client capability version 0 is no longer supported; the oldest supported is 1: upgrade rustynetd to v0.1.0 or later"},
		Downgrade: Downgrade{Refused: true, SchemaBefore: 1, SchemaAfter: 2, Message: "rustynet-controller: open store DATA_DIR/controller.db: store was written by a newer controller: schema version 2, this build knows up to 1; run a newer controller or restore a backup taken before the upgrade"}}
	if p := JudgeStore(good); len(p) != 0 {
		t.Errorf("a clean store upgrade: %v", p)
	}
	lost := *good
	lost.Kept--
	lost.Problems = []string{"node v0-1-0-node-2 is gone"}
	if p := strings.Join(JudgeStore(&lost), "; "); !strings.Contains(p, "is gone") || !strings.Contains(p, "2 kept") {
		t.Errorf("a node lost in the upgrade: %q", p)
	}

	served := *good
	served.TooOld = TooOld{Version: 0, Status: 200}
	if p := JudgeStore(&served); len(p) != 1 || !strings.Contains(p[0], "got 200") {
		t.Errorf("a client older than the window served: %v", p)
	}

	accepted := *good
	accepted.Downgrade = Downgrade{SchemaBefore: 1, SchemaAfter: 2, Message: "listening on 127.0.0.1:41000"}
	if p := JudgeStore(&accepted); len(p) != 1 || !strings.Contains(p[0], "did not refuse") {
		t.Errorf("a downgrade accepted: %v", p)
	}
	vague := *good
	vague.Downgrade = Downgrade{Refused: true, SchemaBefore: 1, SchemaAfter: 2, Message: "open store: unsupported data"}
	if p := JudgeStore(&vague); len(p) != 1 || !strings.Contains(p[0], "name the data dir's schema version 2") {
		t.Errorf("a downgrade refused without the versions: %v", p)
	}

	same := *good
	same.Downgrade = Downgrade{SchemaBefore: 2, SchemaAfter: 2, Served: true}
	if p := JudgeStore(&same); len(p) != 0 {
		t.Errorf("a downgrade within one schema that works: %v", p)
	}
	same.Downgrade.Served, same.Downgrade.Message = false, "exited before it served"
	if p := JudgeStore(&same); len(p) != 1 || !strings.Contains(p[0], "a downgrade must work") {
		t.Errorf("a downgrade within one schema that fails: %v", p)
	}

	pairs := func(n int, fail int) *Mixed {
		m := &Mixed{Controller: "this tree"}
		for i := range n * (n - 1) {
			p := Pair{From: "a", To: "b", OK: i != fail}
			m.Pairs = append(m.Pairs, p)
			if !p.OK {
				m.Problems = append(m.Problems, "v0.1.0 -> this tree: no data after 10s")
			}
		}
		return m
	}
	if p := JudgeMixed(pairs(3, -1), 3); len(p) != 0 {
		t.Errorf("a clean mixed mesh: %v", p)
	}
	if p := JudgeMixed(pairs(3, 4), 3); len(p) != 1 || !strings.Contains(p[0], "no data") {
		t.Errorf("a pair that passed nothing: %v", p)
	}
	if p := JudgeMixed(pairs(2, -1), 3); len(p) != 1 || !strings.Contains(p[0], "2 pairs tried, want 6") {
		t.Errorf("pairs missing: %v", p)
	}

	step := func(what string, gap time.Duration, lost int) RollingStep {
		return RollingStep{What: what, Interruption: gap, Lost: lost}
	}
	roll := &Rolling{From: "v0.2.0", Nodes: 3, Steps: []RollingStep{step("controller", 0, 0), step("n1", 40*time.Millisecond, 2), step("n2", 30*time.Millisecond, 1), step("n3", 0, 0)}}
	if p := JudgeRolling(roll, 3); len(p) != 0 {
		t.Errorf("a clean rolling upgrade: %v", p)
	}
	bad := *roll
	bad.Steps = append([]RollingStep{}, roll.Steps...)
	bad.Steps[0] = step("controller", 1500*time.Millisecond, 75)
	bad.Steps[2] = step("n2", 12*time.Second, 600)
	got := strings.Join(JudgeRolling(&bad, 3), "; ")
	for _, want := range []string{"controller: 75 probes lost", "n2: an interruption of 12s, over 10s"} {
		if !strings.Contains(got, want) {
			t.Errorf("rolling upgrade: %q, want %q in it", got, want)
		}
	}
	short := *roll
	short.Steps = roll.Steps[:2]
	if p := JudgeRolling(&short, 3); len(p) != 1 || !strings.Contains(p[0], "2 steps") {
		t.Errorf("steps missing: %v", p)
	}
	dead := *roll
	dead.Steps = append([]RollingStep{}, roll.Steps...)
	dead.Steps[0].DeadBefore = []string{"n1->n2", "n1->n3", "n2->n1", "n2->n3", "n3->n1", "n3->n2"}
	if p := JudgeRolling(&dead, 3); len(p) != 1 || !strings.Contains(p[0], "no pair passed traffic before it") {
		t.Errorf("a mesh that never passed traffic: %v", p)
	}
}

// TestRegistered: the gate is a control-plane gate every channel requires,
// and needs root (namespaces) and Go (it builds the earlier releases).
func TestRegistered(t *testing.T) {
	var r gates.Registry
	Register(&r)
	s, ok := r.Get(Name)
	if !ok {
		t.Fatal("compat is not registered")
	}
	if s.Owner != "control-plane" || len(s.Channels) != len(gates.Channels) || s.Concurrent {
		t.Errorf("spec %+v", s)
	}
}

// TestTimeoutFor: only a pair of two nodes that both shipped with the
// crossed-initiation issue is given longer, and the pair records why.
func TestTimeoutFor(t *testing.T) {
	old := Binary{Release: "v0.1.0", KnownIssues: []string{policies.IssueCrossedInitiations}}
	fixed := Binary{Release: "v0.3.0"}
	for _, c := range []struct {
		a, b  Binary
		want  time.Duration
		issue string
	}{
		{old, old, crossedTimeout, policies.IssueCrossedInitiations},
		{old, fixed, pairTimeout, ""},
		{fixed, old, pairTimeout, ""},
		{fixed, fixed, pairTimeout, ""},
	} {
		if got, issue := timeoutFor(c.a, c.b); got != c.want || issue != c.issue {
			t.Errorf("%s -> %s: %v, %q; want %v, %q", c.a.KnownIssues, c.b.KnownIssues, got, issue, c.want, c.issue)
		}
	}
}
