package dr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
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
	// Failed names the regions a fault took out for good.
	Failed []string `json:"failed_regions"`

	// ControlPlaneRTO: the first fault until the first write sent after
	// it that a surviving region's replica acknowledged; nil when none was.
	ControlPlaneRTO *time.Duration `json:"control_plane_rto_ns"`
	// FailedWritesAfter counts writes to surviving replicas after the
	// first fault that were not acknowledged.
	FailedWritesAfter int `json:"failed_writes_after_fault"`
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

	Writes []drload.Record               `json:"-"`
	Probes map[string][]node.ProbeRecord `json:"-"`
}

// Run runs the drill: its topology, its workload, its faults at their
// times; then it collects the logs and measures. Only lose-region is
// injected yet; a drill with another fault kind is refused.
func Run(ctx context.Context, t containers.T, s *Scenario, b Bins) *Result {
	t.Helper()
	for _, f := range s.Faults {
		if f.Kind.Value != LoseRegion {
			t.Fatalf("drill %s: fault %s: its injection is not built yet", s.Name, f.Kind.Value)
		}
	}
	res := &Result{Drill: s.Name, Latency: LatencyMethod(s.Topology.Latency.D)}
	event := func(what string) {
		res.Events = append(res.Events, Event{At: time.Now().UTC(), What: what})
		t.Logf("%s", what)
	}
	m := up(ctx, t, s, b)
	event("topology up")
	var urls []string
	for _, r := range s.Live() {
		urls = append(urls, ctlURL(r.Name.Value))
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
	event("workload started")
	var first time.Time
	for _, f := range s.Faults {
		if err := sleepUntil(ctx, start.Add(f.At.D)); err != nil {
			t.Fatalf("drill %s: %v", s.Name, err)
		}
		region := f.Region.Value
		if first.IsZero() {
			first = time.Now()
		}
		event(fmt.Sprintf("fault: %s %s", f.Kind.Value, region))
		if err := m.loseRegion(ctx, region); err != nil {
			t.Fatalf("drill %s: %v", s.Name, err)
		}
		res.Failed = append(res.Failed, region)
		event(fmt.Sprintf("region %s: every container killed", region))
	}
	wctx, cancel := context.WithTimeout(ctx, s.Duration.D+time.Minute)
	defer cancel()
	if code, err := load.Wait(wctx); err != nil || code != 0 {
		l, _ := load.Logs(ctx)
		t.Fatalf("load client: exit %d, %v\n%s", code, err, l)
	}
	event("workload ended")

	raw, err := containers.CopyFile(ctx, load.Container, acks, 64<<20)
	if err != nil {
		t.Fatalf("the load client's log: %v", err)
	}
	if res.Writes, err = parseLines[drload.Record](raw); err != nil {
		t.Fatalf("the load client's log: %v", err)
	}
	res.Probes = map[string][]node.ProbeRecord{}
	for _, r := range s.Live() {
		if slices.Contains(res.Failed, r.Name.Value) {
			continue
		}
		for _, n := range m.nodes[r.Name.Value] {
			raw, err := containers.CopyFile(ctx, n.Container, containers.DataDir+"/probes.jsonl", 256<<20)
			if err != nil {
				t.Fatalf("%s's probe log: %v", n.Name, err)
			}
			if res.Probes[n.Name], err = parseLines[node.ProbeRecord](raw); err != nil {
				t.Fatalf("%s's probe log: %v", n.Name, err)
			}
		}
	}
	surviving := func(url string) bool {
		for _, r := range res.Failed {
			if url == ctlURL(r) {
				return false
			}
		}
		return true
	}
	res.measureWrites(first, surviving)
	res.measureProbes(s.Workload.ProbeEvery.D)
	if err := res.checkStore(ctx, m); err != nil {
		t.Fatalf("drill %s: %v", s.Name, err)
	}
	return res
}

// loseRegion kills every container of the region at once.
func (m *mesh) loseRegion(ctx context.Context, region string) error {
	var kills []func(context.Context) error
	for _, n := range m.nodes[region] {
		kills = append(kills, n.Kill)
	}
	kills = append(kills, m.ctl[region].Kill, m.etcd[region].Kill)
	var wg sync.WaitGroup
	errs := make([]error, len(kills))
	for i, k := range kills {
		wg.Go(func() { errs[i] = k(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("lose region %s: %w", region, err)
		}
	}
	return nil
}

// measureWrites takes the control-plane RTO from the write log.
func (r *Result) measureWrites(fault time.Time, surviving func(string) bool) {
	if fault.IsZero() {
		return
	}
	for _, w := range r.Writes {
		if w.At.Before(fault) || !surviving(w.Replica) {
			continue
		}
		if !w.OK {
			r.FailedWritesAfter++
			continue
		}
		if r.ControlPlaneRTO == nil {
			d := w.Done.Sub(fault)
			r.ControlPlaneRTO = &d
		}
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
// read from a surviving replica.
func (r *Result) checkStore(ctx context.Context, m *mesh) error {
	var ctl *containers.Controller
	for region, c := range m.ctl {
		if !slices.Contains(r.Failed, region) {
			ctl = c
			break
		}
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
	for _, w := range r.Writes {
		if !w.OK {
			continue
		}
		r.AckedWrites++
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
