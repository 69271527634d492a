package dr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/containers"
	"github.com/rustynet/rustynet/internal/etcdproc"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "dr"

// Owner owns the gate: the on-call SRE team, who run the drills' faults
// for real.
const Owner = "sre"

// The drill tools the gate builds from the commit under test, beside the
// build gate's controller, daemon and CLI.
const (
	relayPackage = "github.com/rustynet/rustynet/internal/relay/relayd"
	loadPackage  = "github.com/rustynet/rustynet/internal/drload/loadclient"
)

// Register adds the dr gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    Owner,
		Timeout:  90 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedDocker},
		Run:      run,
		Fields:   gates.FieldsOf(details{}),
		// Beside the soak, slo and incident gates (light, steady loads):
		// its figures are RTOs judged in seconds (measured in tenths) and
		// probes lost after 2 s without an answer, which those loads
		// cannot tip; it keeps the nightly channel under 30 minutes.
		Concurrent: true,
	})
}

// Load reads every drill of root and the policy that holds them to their
// targets, checked against each other.
func Load(root string) ([]*Scenario, *policies.Resilience, error) {
	drills, err := LoadAll(root)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, d := range drills {
		names = append(names, d.Name)
	}
	pol, err := policies.LoadResilience(filepath.Join(root, PolicyFile), names)
	if err != nil {
		return nil, nil, err
	}
	return drills, pol, nil
}

func run(ctx context.Context, r *gates.Run) error {
	drills, pol, err := Load(r.Root)
	if err != nil {
		return err // could not run
	}
	bins, err := buildBins(ctx, r)
	if err != nil {
		return err
	}
	var problems []string
	var summaries []drillDetail
	run := pol.Drills(r.Channel)
	for i, name := range run {
		s := drills[slices.IndexFunc(drills, func(d *Scenario) bool { return d.Name == name })]
		target := pol.Target(name, r.Channel)
		if r.Channel == policies.Nightly && s.Duration.D > NightlyMaxDuration {
			problems = append(problems, fmt.Sprintf("%s: lasts %v, over the nightly channel's %v (%s)", name, s.Duration.D, NightlyMaxDuration, s.File))
			continue
		}
		fmt.Fprintf(r.Log, "== drill %s (%s): %s\n", name, s.File, s.Summary)
		var res *Result
		err := containers.RunDrill(name, r.Log, func(t *containers.Drill) { res = Run(ctx, t, s, bins) })
		r.Progress(float64(i+1) / float64(len(run)))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil || res == nil {
			problems = append(problems, fmt.Sprintf("%s: the drill did not complete: %v", name, err))
			continue
		}
		if err := record(r, s, res); err != nil {
			return err
		}
		ps := Judge(res, target, s)
		for _, p := range ps {
			problems = append(problems, name+": "+p)
		}
		fmt.Fprintf(r.Log, "drill %s: %s\n", name, res.Summary())
		summaries = append(summaries, drillDetail{Drill: name, File: s.File, Passed: len(ps) == 0, Problems: ps,
			Basis: target.Basis.Value, Result: *res})
	}
	sort.Strings(problems)
	// The struct WriteReport reads: the report and the evidence cannot
	// drift apart.
	if err := r.Details(details{Channel: string(r.Channel), Policy: PolicyFile, PolicyDigest: pol.Digest,
		Drills: summaries, Problems: problems}); err != nil {
		return err
	}
	if len(problems) > 0 {
		return gates.Fail("%d problems; %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

// buildBins takes the controller, daemon and CLI the build gate built (the
// commit's own, static), and builds etcd and the drill tools from the
// commit, static too.
func buildBins(ctx context.Context, r *gates.Run) (Bins, error) {
	b := Bins{Controller: r.Binaries["rustynet-controller"], Daemon: r.Binaries["rustynetd"], CLI: r.Binaries["rustynet"]}
	if b.Controller == "" || b.Daemon == "" || b.CLI == "" {
		return b, fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	dir := filepath.Join(r.Work, "dr-bin")
	var err error
	if b.Etcd, err = etcdproc.Build(ctx, r.Root, dir); err != nil {
		return b, err
	}
	for _, t := range []struct {
		pkg string
		out *string
	}{{relayPackage, &b.Relay}, {loadPackage, &b.Load}} {
		*t.out = filepath.Join(dir, filepath.Base(t.pkg))
		cmd := r.Command(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-o", *t.out, t.pkg)
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("go build %s: %w (the log has the compiler's output)", t.pkg, err)
		}
	}
	return b, nil
}

// Judge holds a drill's result to its targets and returns what missed,
// each saying by how much. A target whose figure was not measured (no
// write acknowledged after the fault, a change that never reached a
// node, a fault this build cannot measure) is missed.
func Judge(res *Result, t *policies.DRTarget, s *Scenario) []string {
	var out []string
	miss := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if t.ControlPlaneRTO != nil {
		switch {
		case res.ControlPlaneRTO == nil:
			miss("control-plane RTO: no write sent after the fault was acknowledged through a surviving region (%d refused); target %v", res.FailedWritesAfter, t.ControlPlaneRTO.D)
		case *res.ControlPlaneRTO > t.ControlPlaneRTO.D:
			miss("control-plane RTO %v, over the target of %v", res.ControlPlaneRTO.Round(time.Millisecond), t.ControlPlaneRTO.D)
		}
		// Back within the RTO, and no outage as long after it.
		if res.ControlPlaneOutage > t.ControlPlaneRTO.D {
			miss("control-plane outage: surviving replicas refused writes for %v from %s (the fault +%v), over the control-plane RTO of %v",
				res.ControlPlaneOutage.Round(time.Millisecond), res.OutageFrom.Format(time.RFC3339Nano), res.OutageFrom.Sub(res.FirstFault).Round(time.Millisecond), t.ControlPlaneRTO.D)
		}
	}
	if t.PropagationRTO != nil {
		switch {
		case res.PropagatedWrite == "":
			miss("propagation RTO: no change was acknowledged after the fault to time; target %v", t.PropagationRTO.D)
		case res.PropagationRTO == nil:
			miss("propagation RTO: %s never reached %s; target %v", res.PropagatedWrite, strings.Join(res.NotPropagated, ", "), t.PropagationRTO.D)
		case *res.PropagationRTO > t.PropagationRTO.D:
			miss("propagation RTO %v, over the target of %v (%s)", res.PropagationRTO.Round(time.Millisecond), t.PropagationRTO.D, res.PropagatedWrite)
		}
	}
	if t.MaxProbeGap != nil && res.MaxProbeGap > t.MaxProbeGap.D {
		miss("longest probe gap %v, over the target of %v", res.MaxProbeGap.Round(time.Millisecond), t.MaxProbeGap.D)
	}
	if t.MaxLostProbes != nil && res.LostProbes > *t.MaxLostProbes {
		miss("%d probes lost between nodes outside the failed regions, over the target of %d", res.LostProbes, *t.MaxLostProbes)
	}
	if t.MaxLostWrites != nil {
		switch {
		case res.AckedWrites == 0:
			miss("no write was acknowledged in the whole drill: nothing to lose, nothing proven")
		case res.LostWrites > *t.MaxLostWrites:
			miss("%d of %d acknowledged writes lost, over the target of %d: %s", res.LostWrites, res.AckedWrites, *t.MaxLostWrites, strings.Join(first(res.Lost, 3), "; "))
		}
	}
	rr := res.Restore
	if t.MaxBackupAge != nil {
		switch {
		case rr == nil:
			miss("backup age: no restore was made (%s has no %s fault that completed); target %v", s.File, RestoreFromBackup, t.MaxBackupAge.D)
		case rr.BackupAge > t.MaxBackupAge.D:
			miss("the backup restored (%d) was %v old at the loss, over the target of %v", rr.Backup, rr.BackupAge.Round(time.Millisecond), t.MaxBackupAge.D)
		}
	}
	if t.TimeToRestore != nil {
		switch {
		case rr == nil:
			miss("time to restore: no restore was made; target %v", t.TimeToRestore.D)
		case rr.TimeToRestore == nil:
			miss("time to restore: no write was acknowledged through the restored replica; target %v", t.TimeToRestore.D)
		case *rr.TimeToRestore > t.TimeToRestore.D:
			miss("time to restore %v, over the target of %v", rr.TimeToRestore.Round(time.Millisecond), t.TimeToRestore.D)
		}
		if sr := res.AtScale; s.AtScale != nil {
			switch {
			case sr == nil || sr.Took == nil:
				miss("time to restore at scale: the restore of %d nodes did not complete: %s; target %v", s.AtScale.Nodes, orNone(sr), t.TimeToRestore.D)
			case *sr.Took > t.TimeToRestore.D:
				miss("time to restore %d nodes %v, over the target of %v", sr.Nodes, sr.Took.Round(time.Millisecond), t.TimeToRestore.D)
			}
		}
	}
	if t.MinRestoreConfidence != nil {
		c := res.Confidence
		switch {
		case c == nil || len(c.Restores) == 0:
			miss("restore confidence: no backup was restored to measure it (%s has no restore_confidence); target %g", s.File, *t.MinRestoreConfidence)
		case c.Figure < *t.MinRestoreConfidence:
			var failed []string
			for _, r := range c.Restores {
				if !r.Complete {
					failed = append(failed, fmt.Sprintf("backup %d: %s", r.Backup, r.summary()))
				}
			}
			miss("restore confidence %.3f (%d of %d restores complete, 95%% interval [%.3f, %.3f]), under the target of %g: %s",
				c.Figure, c.Complete, len(c.Restores), c.Lo, c.Hi, *t.MinRestoreConfidence, strings.Join(first(failed, 3), "; "))
		}
	}
	return out
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func orNone(sr *ScaleResult) string {
	if sr == nil {
		return "not run"
	}
	return sr.Error
}

// Summary is a line of a drill's figures, for the log.
func (r *Result) Summary() string {
	d := func(p *time.Duration) string {
		if p == nil {
			return "none"
		}
		return p.Round(time.Millisecond).String()
	}
	out := fmt.Sprintf("control-plane RTO %s (%d writes refused after the fault, longest outage %v), propagation RTO %s, longest probe gap %v, %d probes lost, %d of %d acknowledged writes lost",
		d(r.ControlPlaneRTO), r.FailedWritesAfter, r.ControlPlaneOutage.Round(time.Millisecond), d(r.PropagationRTO), r.MaxProbeGap.Round(time.Millisecond), r.LostProbes, r.LostWrites, r.AckedWrites)
	if rr := r.Restore; rr != nil {
		out += fmt.Sprintf("; restored backup %d, %v old at the loss (%d writes acknowledged after it began), time to restore %s, serving after %v",
			rr.Backup, rr.BackupAge.Round(time.Millisecond), rr.WritesAfterBackup, d(rr.TimeToRestore), rr.Serving.Sub(rr.Started).Round(time.Millisecond))
	}
	if sr := r.AtScale; sr != nil && sr.Took != nil {
		out += fmt.Sprintf("; %d nodes restored and served in %v", sr.Nodes, sr.Took.Round(time.Millisecond))
	}
	if c := r.Confidence; c != nil {
		out += fmt.Sprintf("; restore confidence %d/%d = %.3f, 95%% interval [%.3f, %.3f] (records mean %.4f min %.4f, credentials mean %.4f min %.4f, tunnels mean %.4f min %.4f)",
			c.Complete, len(c.Restores), c.Figure, c.Lo, c.Hi, c.MeanRecords, c.MinRecords, c.MeanCredentials, c.MinCredentials, c.MeanTunnels, c.MinTunnels)
	}
	return out
}

// record writes a drill's evidence: its result (figures and timeline),
// the raw logs the figures come from, and a measurement per figure.
func record(r *gates.Run, s *Scenario, res *Result) error {
	dir := "drills/" + s.Name + "/"
	if err := r.ArtifactJSON(dir+"result.json", res); err != nil {
		return err
	}
	if err := r.Artifact(dir+"writes.jsonl", jsonLines(res.Writes)); err != nil {
		return err
	}
	for _, n := range slices.Sorted(maps.Keys(res.Probes)) {
		if err := r.Artifact(dir+"probes/"+n+".jsonl", jsonLines(res.Probes[n])); err != nil {
			return err
		}
	}
	for _, n := range slices.Sorted(maps.Keys(res.Netmaps)) {
		if err := r.Artifact(dir+"netmaps/"+n+".jsonl", jsonLines(res.Netmaps[n])); err != nil {
			return err
		}
	}
	for _, n := range slices.Sorted(maps.Keys(res.Logs)) {
		if err := r.Artifact(dir+"logs/"+n+".log", []byte(res.Logs[n])); err != nil {
			return err
		}
	}
	method := fmt.Sprintf("drill %s (%s): %d regions in containers (etcd member, controller replica, nodes each), a paced load client logging every write, faults at their stated times; %s; one run",
		s.Name, s.File, len(s.Live()), res.Latency)
	seconds := func(name string, d *time.Duration, what string) {
		if d == nil {
			return
		}
		r.Measure(evidence.Measurement{Name: s.Name + ":" + name, Unit: "s", Method: method + "; " + what, Values: []float64{d.Seconds()}})
	}
	seconds("control_plane_rto", res.ControlPlaneRTO, "the first fault to the first write sent after it that a surviving region's replica acknowledged (the load client's log)")
	seconds("propagation_rto", res.PropagationRTO, "the first fault to the last surviving node applying a netmap with that write's change (the nodes' netmap logs)")
	outage := res.ControlPlaneOutage
	seconds("control_plane_outage", &outage, "the longest time after the fault from sending a write a surviving replica refused to the acknowledgement of the next write sent after it (the load client's log); 0: none refused")
	gap := res.MaxProbeGap
	seconds("max_probe_gap", &gap, "the longest time, beyond the probe interval, between answered probes of one pair of surviving nodes (the nodes' probe logs)")
	count := func(name string, v int, what string) {
		r.Measure(evidence.Measurement{Name: s.Name + ":" + name, Unit: "count", Method: method + "; " + what, Values: []float64{float64(v)}})
	}
	count("lost_probes", res.LostProbes, "probes between surviving nodes not answered, once every pair had been answered")
	count("lost_writes", res.LostWrites, fmt.Sprintf("acknowledged writes (%d) the store does not hold afterwards, read through a surviving replica", res.AckedWrites))
	if rr := res.Restore; rr != nil {
		age := rr.BackupAge
		seconds("backup_age", &age, fmt.Sprintf("the age at the loss of the control plane of the newest backup, the one restored (backup %d, %d writes acknowledged after it began): the restore's RPO", rr.Backup, rr.WritesAfterBackup))
		if sr := res.AtScale; sr != nil {
			seconds("time_to_restore_at_scale", sr.Took, fmt.Sprintf("the restored backup grown to %d nodes (%d bytes; synthetic copies of a registered node, each with its own ID, keys and address), restored after the drill: a fresh etcd member started, `rustynet-controller restore --store etcd`, the replica started on it until it answered /healthz (it loads every node first)", sr.Nodes, sr.Bytes))
		}
		seconds("time_to_restore", rr.TimeToRestore, "the restore's start (right after the loss of every etcd member and replica) to the first write acknowledged through the replica restored in the spare region (the load client's log): a fresh etcd member, `rustynet-controller restore --store etcd`, the replica started on it")
	}
	if c := res.Confidence; c != nil && len(c.Restores) > 0 {
		var took []float64
		for _, rs := range c.Restores {
			if rs.Error == "" {
				took = append(took, rs.Took.Seconds())
			}
		}
		cm := fmt.Sprintf("%s; %d backups at moments drawn uniformly (seed %d) over the workload before the restore, each restored after the drill into a fresh etcd member and replica of the spare region (documents/resilience/restore-confidence.md)", method, len(c.Restores), c.Seed)
		r.Measure(evidence.Measurement{Name: s.Name + ":restore_confidence", Unit: "ratio", Method: fmt.Sprintf("%s; complete restores / restores = %d/%d, two-sided 95%% Clopper-Pearson interval [%.4f, %.4f]", cm, c.Complete, len(c.Restores), c.Lo, c.Hi), Values: []float64{c.Figure}})
		if len(took) > 0 {
			r.Measure(evidence.Measurement{Name: s.Name + ":confidence_restore_time", Unit: "s", Method: cm + "; per restore: the etcd member started, the backup restored, the replica serving", Values: took})
		}
	}
	return nil
}

// jsonLines encodes records one per line, as the logs were.
func jsonLines[T any](recs []T) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, rec := range recs {
		enc.Encode(rec) // the record types always encode
	}
	return b.Bytes()
}
