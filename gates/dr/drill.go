package dr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/containers"
	"github.com/rustynet/rustynet/internal/drload"
	"github.com/rustynet/rustynet/node"
)

// Event is one moment of a drill's timeline.
type Event struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// Result is what a drill measured, with the raw logs it measured from.
type Result struct {
	Drill   string  `json:"drill"`
	Latency string  `json:"latency_method"`
	Events  []Event `json:"timeline"`
	// Failed names the regions a fault took out for good; Partitioned
	// those cut off for a while. Neither's nodes are measured.
	Failed      []string `json:"failed_regions"`
	Partitioned []string `json:"partitioned_regions,omitempty"`
	// Down are the times replicas were down or cut off: writes sent to
	// them then are not held against the surviving ones.
	Down []Window `json:"replicas_down,omitempty"`

	// ControlPlaneRTO: the first fault until the first write sent after
	// it that a surviving region's replica acknowledged; nil when none was.
	ControlPlaneRTO *time.Duration `json:"control_plane_rto_ns"`
	// FailedWritesAfter counts writes to surviving replicas after the
	// first fault that were not acknowledged.
	FailedWritesAfter int `json:"failed_writes_after_fault"`
	// ControlPlaneOutage is the longest time, after the first fault, from
	// sending a write that a surviving replica refused (or left
	// unanswered) to the acknowledgement of the next write sent after it
	// (to the drill's end if none was): the control plane must not only
	// come back within its RTO but stay back. 0 when none was refused.
	// OutageFrom is when that write was sent.
	ControlPlaneOutage time.Duration `json:"control_plane_outage_ns"`
	OutageFrom         time.Time     `json:"control_plane_outage_from,omitzero"`
	// FirstFault is when the first fault was injected.
	FirstFault time.Time `json:"first_fault,omitzero"`
	// PropagationRTO: the first fault until the last surviving node
	// applied a netmap holding the change of PropagatedWrite, the first
	// write sent after the fault that a surviving replica acknowledged;
	// nil when some surviving node never did.
	PropagationRTO  *time.Duration `json:"propagation_rto_ns"`
	PropagatedWrite string         `json:"propagated_write,omitempty"`
	// NotPropagated names the surviving nodes that never applied it.
	NotPropagated []string `json:"not_propagated,omitempty"`
	// MaxProbeGap is the longest time, beyond the probe interval, between
	// two answered probes of one pair of surviving nodes, in the steady
	// state (from the moment every pair had been answered); LostProbes
	// counts the probes between them not answered in it.
	MaxProbeGap time.Duration `json:"max_probe_gap_ns"`
	LostProbes  int           `json:"lost_probes"`
	// AckedWrites and LostWrites: acknowledged writes, and those of them
	// the store does not hold afterwards (a registered node missing, an
	// endpoint report neither in place nor replaced by a later write).
	AckedWrites int      `json:"acked_writes"`
	LostWrites  int      `json:"lost_writes"`
	Lost        []string `json:"lost,omitempty"`

	// Backups are the backups the drill took; Restore what its
	// restore-from-backup fault measured; Confidence the restores of the
	// random backups, one by one, after the drill. Seed drew the random
	// backups' moments.
	Backups    []*Backup         `json:"backups,omitempty"`
	Restore    *RestoreResult    `json:"restore,omitempty"`
	Confidence *ConfidenceResult `json:"restore_confidence,omitempty"`
	AtScale    *ScaleResult      `json:"restore_at_scale,omitempty"`
	Seed       uint64            `json:"seed,omitempty"`
	// Policies are the policy changes the runner made (in Writes too).
	Policies []drload.Record `json:"-"`

	Writes  []drload.Record                `json:"-"`
	Probes  map[string][]node.ProbeRecord  `json:"-"`
	Netmaps map[string][]node.NetmapRecord `json:"-"`
	// Logs are the control plane's own logs (each replica's and etcd
	// member's, by container name), so that a missed target can be
	// traced to what the replicas did.
	Logs map[string]string `json:"-"`

	logf func(format string, args ...any)
}

// Injected are the fault kinds a drill can inject today.
var Injected = []string{LoseRegion, PartitionRegion, KillEtcdLeader, KillController, RestoreFromBackup}

// Run runs the drill: its topology, its workload, its faults at their
// times (a fault whose injection is not built fails the drill); then it
// collects the logs and measures.
func Run(ctx context.Context, t containers.T, s *Scenario, b Bins) *Result {
	t.Helper()
	for _, f := range s.Faults {
		if !slices.Contains(Injected, f.Kind.Value) {
			// Refused before minutes of topology and workload.
			t.Fatalf("drill %s: fault %s: its injection is not built yet", s.Name, f.Kind.Value)
		}
	}
	res := &Result{Drill: s.Name, Latency: LatencyMethod(s.Topology.Latency.D), logf: t.Logf, Seed: rand.Uint64()}
	m := up(ctx, t, s, b)
	res.event("topology up")
	var urls []string
	for _, r := range s.Live() {
		urls = append(urls, ctlURL(r.Name.Value))
	}
	spare := s.spare()
	if s.restoreAt() > 0 {
		// The load writes to the spare's replica too: refused until a
		// restore brings it up, which the write log then times.
		urls = append(urls, ctlURL(spare))
		res.down(ctlURL(spare))
	}
	const acks = containers.DataDir + "/writes.jsonl"
	w := s.Workload
	load := containers.StartProcess(ctx, t, containers.Process{
		What: "load client", Image: "loadclient", Bin: b.Load,
		Args: []string{"--controllers", strings.Join(urls, ","), "--ca", "/ca.pem", "--auth-key-file", "/key",
			"--duration", s.Duration.D.String(), "--registrations-per-minute", fmt.Sprint(w.RegistrationsPerMinute),
			"--endpoint-reports-per-minute", fmt.Sprint(w.NetmapChangesPerMinute), "--prefix", "drill-", "--out", acks},
		Networks: []containers.Attachment{{Network: m.wan}},
		Files:    map[string][]byte{"/ca.pem": m.caPEM, "/key": []byte(m.key)},
	})
	start := time.Now()
	res.event("workload started")
	var first time.Time
	steps := append(append(m.schedule(res), m.backupSteps(res, res.Seed)...), m.policySteps(res)...)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	for _, st := range steps {
		if st.before != nil {
			if err := sleepUntil(ctx, start.Add(st.at-prepareAhead)); err != nil {
				t.Fatalf("drill %s: %v", s.Name, err)
			}
			st.before(ctx)
		}
		if err := sleepUntil(ctx, start.Add(st.at)); err != nil {
			t.Fatalf("drill %s: %v", s.Name, err)
		}
		if st.aside {
			st.do(ctx) // records what it did, and logs it
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		res.event("fault: " + st.what)
		if err := st.do(ctx); err != nil {
			t.Fatalf("drill %s: %s: %v", s.Name, st.what, err)
		}
		res.event("done: " + st.what)
	}
	wctx, cancel := context.WithTimeout(ctx, s.Duration.D+time.Minute)
	defer cancel()
	if code, err := load.Wait(wctx); err != nil || code != 0 {
		l, _ := load.Logs(ctx)
		t.Fatalf("load client: exit %d, %v\n%s", code, err, l)
	}
	res.event("workload ended")

	raw, err := containers.CopyFile(ctx, load.Container, acks, 64<<20)
	if err != nil {
		t.Fatalf("the load client's log: %v", err)
	}
	if res.Writes, err = parseLines[drload.Record](raw); err != nil {
		t.Fatalf("the load client's log: %v", err)
	}
	res.Writes = append(res.Writes, res.Policies...)
	sort.SliceStable(res.Writes, func(i, j int) bool { return res.Writes[i].At.Before(res.Writes[j].At) })
	res.Probes, res.Netmaps = map[string][]node.ProbeRecord{}, map[string][]node.NetmapRecord{}
	for _, r := range s.Live() {
		if !res.survived(r.Name.Value) {
			continue
		}
		for _, n := range m.nodes[r.Name.Value] {
			raw, err := containers.CopyFile(ctx, n.Container, probeLog, 256<<20)
			if err == nil {
				res.Probes[n.Name], err = parseLines[node.ProbeRecord](raw)
			}
			if err != nil {
				t.Fatalf("%s's probe log: %v", n.Name, err)
			}
			raw, err = containers.CopyFile(ctx, n.Container, netmapLog, 64<<20)
			if err == nil {
				res.Netmaps[n.Name], err = parseLines[node.NetmapRecord](raw)
			}
			if err != nil {
				t.Fatalf("%s's netmap log: %v", n.Name, err)
			}
		}
	}
	res.Logs = m.controlPlaneLogs(ctx)
	res.measureWrites(first)
	res.measurePropagation(first)
	res.measureProbes(s.Workload.ProbeEvery.D)
	res.measureRestore(spare)
	if err := res.checkStore(ctx, m); err != nil {
		t.Fatalf("drill %s: %v", s.Name, err)
	}
	if s.Confidence != nil {
		res.Confidence = m.confidence(ctx, t, res)
		c := res.Confidence
		res.event(fmt.Sprintf("restore confidence %d/%d, 95%% interval [%.3f, %.3f]", c.Complete, len(c.Restores), c.Lo, c.Hi))
	}
	if a := s.AtScale; a != nil {
		res.AtScale = m.atScale(ctx, t, res, a.Nodes)
		if sr := res.AtScale; sr.Error != "" {
			res.event(fmt.Sprintf("restore at scale (%d nodes) failed: %s", sr.Nodes, sr.Error))
		} else {
			res.event(fmt.Sprintf("restore at scale: %d nodes (%d bytes) restored and served in %v", sr.Nodes, sr.Bytes, sr.Took.Round(time.Millisecond)))
		}
	}
	return res
}

// event adds a moment to the drill's timeline, and logs it.
func (r *Result) event(what string) {
	r.Events = append(r.Events, Event{At: time.Now().UTC(), What: what})
	if r.logf != nil {
		r.logf("%s", what)
	}
}

// survived reports whether a region's nodes are measured: it was neither
// lost nor cut off.
func (r *Result) survived(region string) bool {
	return !slices.Contains(r.Failed, region) && !slices.Contains(r.Partitioned, region)
}

// measureWrites takes the control-plane RTO and the longest outage after
// it from the write log, in the order the writes were sent (an outage
// that lasts to the end of the log ends at its last answer): writes sent
// to a replica while it was down or cut off are not counted.
func (r *Result) measureWrites(fault time.Time) {
	if fault.IsZero() {
		return
	}
	r.FirstFault = fault
	writes := slices.Clone(r.Writes)
	slices.SortStableFunc(writes, func(a, b drload.Record) int { return a.At.Compare(b.At) })
	var end time.Time
	for _, w := range writes {
		if w.Done.After(end) {
			end = w.Done
		}
	}
	var refused time.Time // the first refused write since the last acknowledged one
	outage := func(until time.Time) {
		if !refused.IsZero() && until.Sub(refused) > r.ControlPlaneOutage {
			r.ControlPlaneOutage, r.OutageFrom = until.Sub(refused), refused
		}
		refused = time.Time{}
	}
	for _, w := range writes {
		// Policy changes go through `docker exec` on a replica, whose own
		// second or so would time the harness: they are checked for loss
		// (checkStore), not timed.
		if w.Op == drload.OpPolicy || w.At.Before(fault) || !r.reachable(w.Replica, w.At) {
			continue
		}
		if !w.OK {
			r.FailedWritesAfter++
			if refused.IsZero() {
				refused = w.At
			}
			continue
		}
		outage(w.Done)
		if r.ControlPlaneRTO == nil {
			d := w.Done.Sub(fault)
			r.ControlPlaneRTO = &d
		}
	}
	outage(end)
}

// measurePropagation times the first change acknowledged after the fault
// by a surviving replica until every surviving node has applied it (a
// netmap line, after the change was sent, adding or changing its node).
func (r *Result) measurePropagation(fault time.Time) {
	if fault.IsZero() {
		return
	}
	// A change of a node (a policy change names none, and reaches every
	// node as a full netmap).
	i := slices.IndexFunc(r.Writes, func(w drload.Record) bool {
		return w.OK && w.Node != "" && !w.At.Before(fault) && r.reachable(w.Replica, w.At)
	})
	if i < 0 {
		return
	}
	w := r.Writes[i]
	r.PropagatedWrite = fmt.Sprintf("%s of %s sent at %s through %s", w.Op, w.Node, w.At.Format(time.RFC3339Nano), w.Replica)
	var last time.Time
	names := slices.Sorted(maps.Keys(r.Netmaps))
	for _, name := range names {
		j := slices.IndexFunc(r.Netmaps[name], func(rec node.NetmapRecord) bool {
			return !rec.At.Before(w.At) && slices.Contains(rec.Peers, w.Node)
		})
		if j < 0 {
			r.NotPropagated = append(r.NotPropagated, name)
			continue
		}
		if at := r.Netmaps[name][j].At; at.After(last) {
			last = at
		}
	}
	if len(r.NotPropagated) == 0 && !last.IsZero() {
		d := last.Sub(fault)
		r.PropagationRTO = &d
	}
}

// measureProbes finds the longest gap between answered probes of every
// pair of surviving nodes, and the probes lost, from the moment every
// pair had been answered once.
func (r *Result) measureProbes(interval time.Duration) {
	type pair struct{ from, to string }
	byPair := map[pair][]node.ProbeRecord{}
	var steady time.Time
	for from, recs := range r.Probes {
		for _, rec := range recs {
			if _, ok := r.Probes[rec.Name]; !ok {
				continue // a peer in a failed region
			}
			p := pair{from, rec.Name}
			byPair[p] = append(byPair[p], rec)
		}
	}
	for _, recs := range byPair {
		sort.Slice(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
		for _, rec := range recs {
			if rec.Result == "ok" {
				if rec.At.After(steady) {
					steady = rec.At
				}
				break
			}
		}
	}
	for _, recs := range byPair {
		var last time.Time
		for _, rec := range recs {
			if rec.At.Before(steady) {
				continue
			}
			if rec.Result != "ok" {
				r.LostProbes++
				continue
			}
			if !last.IsZero() {
				if gap := rec.At.Sub(last) - interval; gap > r.MaxProbeGap {
					r.MaxProbeGap = gap
				}
			}
			last = rec.At
		}
	}
}

// checkStore counts the acknowledged writes the store does not hold,
// read from a surviving replica (after a restore, the restored one; the
// writes acknowledged after the restored backup began, before the loss,
// are its age, not a loss).
func (r *Result) checkStore(ctx context.Context, m *mesh) error {
	var ctl *containers.Controller
	for region, c := range m.ctl {
		if r.survived(region) {
			ctl = c
			break
		}
	}
	if r.Restore != nil {
		ctl = m.ctl[m.s.spare()]
	}
	if ctl == nil {
		return fmt.Errorf("no surviving replica to read the store from")
	}
	code, out, err := ctl.Admin(ctx, "node", "list", "--data-dir", containers.DataDir, "--json")
	if err != nil || code != 0 {
		return fmt.Errorf("node list: exit %d, %v: %s", code, err, out)
	}
	var nodes []api.AdminNode
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		return fmt.Errorf("node list --json: %w", err)
	}
	byID := map[api.NodeID]api.AdminNode{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	// The last report sent for each node, acknowledged or not: a later
	// write whose answer was lost may have replaced an acknowledged one.
	last := map[api.NodeID]drload.Record{}
	for _, w := range r.Writes {
		if w.Op == drload.OpEndpoints {
			if p, ok := last[w.Node]; !ok || w.At.After(p.At) {
				last[w.Node] = w
			}
		}
	}
	// The policy in force: the last change sent, acknowledged or not (an
	// unanswered one may have landed).
	var lastPolicy drload.Record
	var policy api.Policy
	for _, w := range r.Writes {
		if w.Op == drload.OpPolicy && w.At.After(lastPolicy.At) {
			lastPolicy = w
		}
	}
	if lastPolicy.OK {
		code, out, err := ctl.Admin(ctx, "policy", "get", "--data-dir", containers.DataDir, "--json")
		if err != nil || code != 0 {
			return fmt.Errorf("policy get: exit %d, %v: %s", code, err, out)
		}
		if err := json.Unmarshal([]byte(out), &policy); err != nil {
			return fmt.Errorf("policy get --json: %w", err)
		}
	}
	for _, w := range r.Writes {
		if !w.OK || !r.expectedInStore(w) {
			continue
		}
		r.AckedWrites++
		if w.Op == drload.OpPolicy {
			if lastPolicy.At.Equal(w.At) && policy.Policy != w.Policy {
				r.LostWrites++
				r.Lost = append(r.Lost, fmt.Sprintf("the policy set through %s at %s, the last sent: the store holds another (%d bytes)", w.Replica, w.Done.Format(time.RFC3339Nano), len(policy.Policy)))
			}
			continue
		}
		n, ok := byID[w.Node]
		switch {
		case !ok:
			r.LostWrites++
			r.Lost = append(r.Lost, fmt.Sprintf("%s of %s acknowledged by %s at %s: the node is gone", w.Op, w.Node, w.Replica, w.Done.Format(time.RFC3339Nano)))
		case w.Op == drload.OpEndpoints && last[w.Node].At.Equal(w.At) && !containsAll(n.Endpoints, w.Endpoints):
			r.LostWrites++
			r.Lost = append(r.Lost, fmt.Sprintf("endpoints %v of %s acknowledged by %s at %s: the store holds %v", w.Endpoints, w.Node, w.Replica, w.Done.Format(time.RFC3339Nano), n.Endpoints))
		}
	}
	return nil
}

func containsAll[T comparable](have, want []T) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// parseLines reads JSON lines, refusing a line that is not one.
func parseLines[T any](raw []byte) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for i := 1; sc.Scan(); i++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("line %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t)):
		return nil
	}
}
