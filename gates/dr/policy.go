package dr

import (
	"context"
	"fmt"
	"time"

	"github.com/rustynet/rustynet/internal/containers"
	"github.com/rustynet/rustynet/internal/drload"
)

// The policy changes of a drill's workload are admin writes (the policy
// is set only on a replica's admin socket): the runner sets them with
// `rustynet-controller policy set` in a live replica's container, in turn,
// and logs each as a write (drload.OpPolicy) beside the load client's.
// Every policy lets every node reach every other, so that a change never
// costs a probe; each names a tag of its own, so that each is a change.

// policyText is the drill's k-th policy.
func policyText(k int) string {
	return fmt.Sprintf(`# drill policy change %d: everyone reaches everyone; the tag makes it a change
acls:
  - action: accept
    src: ["*"]
    dst: ["*"]
  - action: accept
    src: ["tag:drill-%d"]
    dst: ["tag:drill-%d"]
`, k, k, k)
}

// Where a replica reads the policy it is asked to set.
const policyPath = containers.DataDir + "/policy.yaml"

// policySteps are the drill's policy changes, at
// workload.policy_changes_per_minute from one interval in to the end.
func (m *mesh) policySteps(res *Result) []step {
	rate := m.s.Workload.PolicyChangesPerMinute
	if rate <= 0 {
		return nil
	}
	every := time.Duration(float64(time.Minute) / rate)
	var steps []step
	for k, at := 1, every; at < m.s.Duration.D; k, at = k+1, at+every {
		steps = append(steps, step{at: at, what: fmt.Sprintf("policy change %d", k), aside: true, do: func(ctx context.Context) error {
			w := m.setPolicy(ctx, res, k)
			res.Policies = append(res.Policies, w)
			if w.OK {
				res.event(fmt.Sprintf("policy change %d set through %s", k, w.Replica))
			} else {
				res.event(fmt.Sprintf("policy change %d through %s refused: %s", k, w.Replica, w.Error))
			}
			return nil
		}})
	}
	return steps
}

// setPolicy sets the k-th policy through the k-th live replica that is
// reachable now, and returns the write as the load client would log it.
func (m *mesh) setPolicy(ctx context.Context, res *Result, k int) drload.Record {
	w := drload.Record{At: time.Now().UTC(), Op: drload.OpPolicy, Policy: policyText(k)}
	var up []string
	for _, r := range m.s.Live() {
		if res.reachable(ctlURL(r.Name.Value), w.At) {
			up = append(up, r.Name.Value)
		}
	}
	if sp := m.s.spare(); sp != "" && m.ctl[sp] != nil && res.reachable(ctlURL(sp), w.At) {
		up = append(up, sp)
	}
	if len(up) == 0 {
		w.Done, w.Error = time.Now().UTC(), "no replica is up to set it through"
		return w
	}
	region := up[k%len(up)]
	w.Replica = ctlURL(region)
	ctl := m.ctl[region]
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ctl.Container.CopyToContainer(pctx, []byte(w.Policy), policyPath, 0o600); err != nil {
		w.Done, w.Error = time.Now().UTC(), fmt.Sprintf("copying the policy in: %v", err)
		return w
	}
	code, out, err := ctl.Admin(pctx, "policy", "set", "--data-dir", containers.DataDir, policyPath)
	w.Done = time.Now().UTC()
	switch {
	case err != nil:
		w.Error = err.Error()
	case code != 0:
		w.Error = fmt.Sprintf("exit %d: %s", code, trunc(out))
	default:
		w.OK = true
	}
	return w
}
