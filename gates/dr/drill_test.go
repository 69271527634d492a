package dr

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/drload"
	"github.com/rustynet/rustynet/node"
	"github.com/rustynet/rustynet/policies"
)

// TestMeasurePropagation: the change timed is the first acknowledged by a
// surviving replica after the fault, and it has reached a node only when a
// netmap applied after it was sent adds or changes its node.
func TestMeasurePropagation(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	lost := []Window{{Replica: ctlURL("ap"), From: t0}}
	writes := []drload.Record{
		{At: at(-500), Done: at(-450), Op: drload.OpEndpoints, Replica: ctlURL("eu"), OK: true, Node: "n1"}, // before the fault
		{At: at(100), Done: at(150), Op: drload.OpEndpoints, Replica: ctlURL("ap"), OK: true, Node: "n2"},   // the lost region's
		{At: at(200), Done: at(2200), Op: drload.OpRegister, Replica: ctlURL("us"), OK: false},              // not acknowledged
		{At: at(300), Done: at(400), Op: drload.OpEndpoints, Replica: ctlURL("us"), OK: true, Node: "n3"},   // the one timed
		{At: at(500), Done: at(600), Op: drload.OpEndpoints, Replica: ctlURL("eu"), OK: true, Node: "n4"},
	}
	rec := func(ms int, peers ...string) node.NetmapRecord {
		r := node.NetmapRecord{At: at(ms), Revision: uint64(ms), Kind: "delta"}
		for _, p := range peers {
			r.Peers = append(r.Peers, api.NodeID(p))
		}
		return r
	}
	r := &Result{Writes: writes, Down: lost, Netmaps: map[string][]node.NetmapRecord{
		// n3 changed before the write was sent (an earlier report): not it.
		"node-eu-1": {rec(250, "n3"), rec(700, "n4"), rec(900, "n1", "n3")},
		"node-us-1": {rec(450, "n3")},
	}}
	r.measurePropagation(t0)
	if r.PropagationRTO == nil || *r.PropagationRTO != 900*time.Millisecond {
		t.Errorf("propagation RTO = %v (%s), want 900ms: node-eu-1 applied n3's change at +900ms", r.PropagationRTO, r.PropagatedWrite)
	}
	if !strings.HasPrefix(r.PropagatedWrite, "endpoints of n3 ") || !strings.Contains(r.PropagatedWrite, ctlURL("us")) {
		t.Errorf("propagated write %q, want n3's endpoints through ctl-us", r.PropagatedWrite)
	}

	// A node that never applies it: no RTO, and its name.
	r = &Result{Writes: writes, Down: lost, Netmaps: map[string][]node.NetmapRecord{
		"node-eu-1": {rec(900, "n3")},
		"node-us-1": {rec(250, "n3"), rec(700, "n4")},
	}}
	r.measurePropagation(t0)
	if r.PropagationRTO != nil || len(r.NotPropagated) != 1 || r.NotPropagated[0] != "node-us-1" {
		t.Errorf("propagation RTO %v, not propagated to %v; want none, and node-us-1", r.PropagationRTO, r.NotPropagated)
	}

	// No fault, or no write acknowledged after it: nothing to time.
	r = &Result{Writes: writes[:3], Down: lost, Netmaps: map[string][]node.NetmapRecord{"node-eu-1": {rec(900, "n3")}}}
	r.measurePropagation(t0)
	if r.PropagationRTO != nil || r.PropagatedWrite != "" {
		t.Errorf("with no write acknowledged after the fault: %v, %q", r.PropagationRTO, r.PropagatedWrite)
	}
	r.measurePropagation(time.Time{})
	if r.PropagationRTO != nil {
		t.Errorf("with no fault: %v", r.PropagationRTO)
	}
}

// TestMeasureWrites: the RTO is the first write sent after the fault that
// a surviving replica acknowledged, and the outage the longest run of
// refusals after it, from the first refused write's sending to the next
// acknowledgement: a control plane that comes back and then refuses
// writes for 10 s has a short RTO and a 10 s outage.
func TestMeasureWrites(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := func(ms, took int, region string, ok bool) drload.Record {
		return drload.Record{At: at(ms), Done: at(ms + took), Op: drload.OpRegister, Replica: ctlURL(region), OK: ok}
	}
	lost := []Window{{Replica: ctlURL("ap"), From: t0}}
	r := &Result{Down: lost, Writes: []drload.Record{
		w(-1000, 50, "us", false), // before the fault
		w(1300, 50, "eu", true),   // logged in the order answered: sent after the next
		w(100, 1900, "us", true),  // the first sent after the fault: the RTO, 2 s
		w(1500, 100, "ap", false), // the lost region's: not counted
		// A policy change, through docker exec: checked for loss, not timed.
		{At: at(50), Done: at(60), Op: drload.OpPolicy, Replica: ctlURL("us"), OK: true},
		{At: at(2500), Done: at(3500), Op: drload.OpPolicy, Replica: ctlURL("us")},
		w(3000, 100, "us", false), // the outage: from +3 s
		w(4000, 100, "eu", false),
		w(13000, 200, "us", true),  // to +13.2 s
		w(14000, 100, "eu", false), // one more at the end, unanswered to the end of the log
		w(14500, 500, "us", false),
	}}
	r.measureWrites(t0)
	if r.ControlPlaneRTO == nil || *r.ControlPlaneRTO != 2*time.Second {
		t.Errorf("control-plane RTO = %v, want 2s", r.ControlPlaneRTO)
	}
	if r.ControlPlaneOutage != 10200*time.Millisecond || !r.OutageFrom.Equal(at(3000)) {
		t.Errorf("outage = %v from %v, want 10.2s from +3s", r.ControlPlaneOutage, r.OutageFrom.Sub(t0))
	}
	if r.FailedWritesAfter != 4 {
		t.Errorf("%d refused after the fault, want 4", r.FailedWritesAfter)
	}
	r = &Result{Down: lost, Writes: []drload.Record{w(100, 100, "us", true), w(500, 100, "eu", true)}}
	r.measureWrites(t0)
	if r.ControlPlaneOutage != 0 || !r.OutageFrom.IsZero() {
		t.Errorf("with nothing refused: outage %v from %v, want none", r.ControlPlaneOutage, r.OutageFrom)
	}
}

// TestJudge: each target set is held, a figure that was not measured
// misses its target, and an unmeasurable target is never passed.
func TestJudge(t *testing.T) {
	s := loadDrill(t, "region-loss-short")
	dur := func(d time.Duration) *policies.Duration { return &policies.Duration{D: d} }
	zero := 0
	target := &policies.DRTarget{ControlPlaneRTO: dur(3 * time.Second), PropagationRTO: dur(5 * time.Second),
		MaxLostProbes: &zero, MaxLostWrites: &zero, MaxProbeGap: dur(time.Second)}
	rto, prop := 200*time.Millisecond, 800*time.Millisecond
	good := Result{ControlPlaneRTO: &rto, PropagationRTO: &prop, PropagatedWrite: "endpoints of n3", AckedWrites: 100, MaxProbeGap: 300 * time.Millisecond}
	if got := Judge(&good, target, s); len(got) != 0 {
		t.Errorf("a drill within its targets: %q", got)
	}
	slow, never := 4*time.Second, 6*time.Second
	for _, c := range []struct {
		name string
		edit func(*Result)
		want string
	}{
		{"slow control plane", func(r *Result) { r.ControlPlaneRTO = &slow }, "control-plane RTO 4s, over the target of 3s"},
		{"no write after the fault", func(r *Result) { r.ControlPlaneRTO, r.FailedWritesAfter = nil, 40 }, "no write sent after the fault was acknowledged through a surviving region (40 refused)"},
		{"an outage after the RTO", func(r *Result) {
			r.FirstFault = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			r.ControlPlaneOutage, r.OutageFrom = 10*time.Second, r.FirstFault.Add(time.Second)
		}, "surviving replicas refused writes for 10s from 2026-12-03T12:00:01Z (the fault +1s), over the control-plane RTO of 3s"},
		{"slow propagation", func(r *Result) { r.PropagationRTO = &never }, "propagation RTO 6s, over the target of 5s"},
		{"never propagated", func(r *Result) { r.PropagationRTO, r.NotPropagated = nil, []string{"node-us-1"} }, "endpoints of n3 never reached node-us-1"},
		{"nothing to propagate", func(r *Result) { r.PropagationRTO, r.PropagatedWrite = nil, "" }, "no change was acknowledged after the fault"},
		{"a lost probe", func(r *Result) { r.LostProbes = 1 }, "1 probes lost"},
		{"a long gap", func(r *Result) { r.MaxProbeGap = 2 * time.Second }, "longest probe gap 2s, over the target of 1s"},
		{"a lost write", func(r *Result) { r.LostWrites, r.Lost = 1, []string{"register of n9"} }, "1 of 100 acknowledged writes lost, over the target of 0: register of n9"},
		{"no write at all", func(r *Result) { r.AckedWrites = 0 }, "no write was acknowledged in the whole drill"},
	} {
		r := good
		c.edit(&r)
		got := Judge(&r, target, s)
		if len(got) != 1 || !strings.Contains(got[0], c.want) {
			t.Errorf("%s: %q, want one miss saying %q", c.name, got, c.want)
		}
	}
	one := 1.0
	rs := loadDrill(t, "restore")
	restore := &policies.DRTarget{MinRestoreConfidence: &one, MaxBackupAge: dur(20 * time.Second), TimeToRestore: dur(time.Minute), MaxLostProbes: &zero}
	if got := Judge(&good, restore, rs); len(got) != 4 {
		t.Errorf("a drill that made no restore: %q, want the three restore targets missed, and the restore at scale", got)
	}
	took := 5 * time.Second
	complete := make([]Restore, 20)
	for i := range complete {
		complete[i] = Restore{Backup: i + 1, Complete: true}
	}
	scale, slowScale := 20*time.Second, 70*time.Second
	restored := Result{Restore: &RestoreResult{Backup: 6, BackupAge: 10 * time.Second, TimeToRestore: &took},
		AtScale:    &ScaleResult{Nodes: 10000, Took: &scale},
		Confidence: &ConfidenceResult{Restores: complete, Complete: 20, Figure: 1, Lo: 0.83, Hi: 1}}
	if got := Judge(&restored, restore, rs); len(got) != 0 {
		t.Errorf("a restore within its targets: %q", got)
	}
	slowRestore := 61 * time.Second
	for _, c := range []struct {
		name string
		edit func(*Result)
		want string
	}{
		{"an old backup", func(r *Result) { r.Restore.BackupAge = 25 * time.Second }, "the backup restored (6) was 25s old at the loss, over the target of 20s"},
		{"a slow restore", func(r *Result) { r.Restore.TimeToRestore = &slowRestore }, "time to restore 1m1s, over the target of 1m0s"},
		{"never restored", func(r *Result) { r.Restore.TimeToRestore = nil }, "no write was acknowledged through the restored replica"},
		{"a slow restore at scale", func(r *Result) { r.AtScale = &ScaleResult{Nodes: 10000, Took: &slowScale} }, "time to restore 10000 nodes 1m10s, over the target of 1m0s"},
		{"a failed restore at scale", func(r *Result) { r.AtScale = &ScaleResult{Nodes: 10000, Error: "exit 1"} }, "the restore of 10000 nodes did not complete: exit 1"},
		{"an incomplete restore", func(r *Result) {
			r.Confidence.Complete, r.Confidence.Figure = 19, 0.95
			r.Confidence.Restores[3] = Restore{Backup: 9, RecordsOK: 99, RecordsTotal: 100, NodesBack: 6, NodesTotal: 6, PairsOK: 30, PairsTotal: 30}
		}, "restore confidence 0.950 (19 of 20 restores complete, 95% interval [0.830, 1.000]), under the target of 1: backup 9: records 99/100"},
	} {
		r := restored
		rr, cr := *restored.Restore, *restored.Confidence
		cr.Restores = slices.Clone(cr.Restores)
		r.Restore, r.Confidence = &rr, &cr
		c.edit(&r)
		got := Judge(&r, restore, rs)
		if len(got) != 1 || !strings.Contains(got[0], c.want) {
			t.Errorf("%s: %q, want one miss saying %q", c.name, got, c.want)
		}
	}
}

// TestSchedule: every fault of every drill becomes its steps in time order,
// a fault that lasts ending at its time plus its duration; a kind not
// built yet is a step that fails.
func TestSchedule(t *testing.T) {
	for _, c := range []struct {
		drill string
		want  []string
	}{
		{"region-loss-short", []string{"40s lose region eu"}},
		{"region-partition", []string{"1m0s partition region ap", "2m0s heal region ap"}},
		{"etcd-leader-kill", []string{"1m0s SIGKILL the etcd leader", "1m30s start the killed etcd member"}},
		{"controller-kill", []string{"1m0s SIGKILL controller ctl-eu", "1m30s start controller ctl-eu"}},
		{"restore", []string{"1m30s lose the control plane and restore the newest backup into region dr"}},
	} {
		s := loadDrill(t, c.drill)
		steps := (&mesh{s: s}).schedule(&Result{})
		var got []string
		for _, st := range steps {
			got = append(got, st.at.String()+" "+st.what)
		}
		for i := 1; i < len(steps); i++ {
			if steps[i].at < steps[i-1].at {
				t.Errorf("%s: steps out of order: %q", c.drill, got)
			}
		}
		if c.want != nil && strings.Join(got, "; ") != strings.Join(c.want, "; ") {
			t.Errorf("%s: steps %q, want %q", c.drill, got, c.want)
		}
		if len(steps) == 0 {
			t.Errorf("%s: no step", c.drill)
		}
		if c.drill == "restore" && (len(steps) != 1 || !strings.Contains(steps[0].what, "lose the control plane and restore the newest backup into region dr")) {
			t.Errorf("restore: steps %q, want the loss and the restore", got)
		}
	}
}

func TestReachable(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	r := &Result{Down: []Window{
		{Replica: ctlURL("eu"), From: t0, To: t0.Add(time.Minute)},
		{Replica: ctlURL("us"), From: t0.Add(time.Minute)},
	}}
	for _, c := range []struct {
		url  string
		at   time.Duration
		want bool
	}{
		{ctlURL("eu"), -time.Second, true}, {ctlURL("eu"), 0, false}, {ctlURL("eu"), 59 * time.Second, false}, {ctlURL("eu"), time.Minute, true},
		{ctlURL("us"), 0, true}, {ctlURL("us"), time.Hour, false}, {ctlURL("ap"), 0, true},
	} {
		if got := r.reachable(c.url, t0.Add(c.at)); got != c.want {
			t.Errorf("reachable(%s, +%v) = %v, want %v", c.url, c.at, got, c.want)
		}
	}
}
