package dr

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"

	"github.com/rustynet/rustynet/internal/containers"
)

// Window is a time a replica could not be reached, or was down: writes
// sent to it then are not held against the surviving replicas. A zero To
// is the end of the drill.
type Window struct {
	Replica string    `json:"replica"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to,omitzero"`
}

// step is one action of a drill's schedule: a fault, or its end.
type step struct {
	at   time.Duration // from the start of the workload
	what string
	do   func(context.Context) error
	// aside: a backup or a policy change, not a fault (a drill is timed
	// from its first fault); it logs its own event, and its failure is
	// recorded, not fatal.
	aside bool
	// before, if set, runs up to prepareAhead before the step, so that
	// what it records (the etcd leader) takes none of the fault's time.
	before func(context.Context)
}

// prepareAhead is how long before its fault a step's before runs.
const prepareAhead = time.Second

// schedule turns the drill's faults into its steps, in time order: each
// fault at its time, and the end of each fault that lasts at its time plus
// its duration.
func (m *mesh) schedule(res *Result) []step {
	var steps []step
	for _, f := range m.s.Faults {
		f := f
		region := f.Region.Value
		switch f.Kind.Value {
		case LoseRegion:
			var victims []victim
			steps = append(steps, step{at: f.At.D, what: "lose region " + region,
				before: func(ctx context.Context) {
					m.noteLeader(ctx, res)
					victims = m.regionVictims(ctx, region)
				},
				do: func(ctx context.Context) error {
					res.down(ctlURL(region))
					res.Failed = append(res.Failed, region)
					return m.killAll(ctx, "lose region "+region, victims, res)
				}})
		case KillController:
			var victims []victim
			steps = append(steps,
				step{at: f.At.D, what: "SIGKILL controller " + ctlName(region),
					before: func(ctx context.Context) {
						victims = []victim{newVictim(ctx, ctlName(region), m.ctl[region].Container)}
					},
					do: func(ctx context.Context) error {
						res.down(ctlURL(region))
						return m.killAll(ctx, "SIGKILL controller "+ctlName(region), victims, res)
					}},
				step{at: f.At.D + f.For.D, what: "start controller " + ctlName(region), do: func(ctx context.Context) error {
					err := m.ctl[region].Start(ctx)
					res.up(ctlURL(region)) // serving again (Start waits for it)
					return err
				}})
		case KillEtcdLeader:
			var killed string
			steps = append(steps,
				step{at: f.At.D, what: "SIGKILL the etcd leader", do: func(ctx context.Context) error {
					r, err := m.etcdLeader(ctx)
					if err != nil {
						return err
					}
					killed = r
					res.event("etcd leader is " + etcdName(r) + ": killed")
					return m.etcd[r].Kill(ctx)
				}},
				step{at: f.At.D + f.For.D, what: "start the killed etcd member", do: func(ctx context.Context) error {
					if killed == "" {
						return fmt.Errorf("no member was killed")
					}
					return m.etcd[killed].Start(ctx)
				}})
		case PartitionRegion:
			steps = append(steps,
				step{at: f.At.D, what: "partition region " + region, before: func(ctx context.Context) { m.noteLeader(ctx, res) }, do: func(ctx context.Context) error {
					res.down(ctlURL(region))
					res.Partitioned = append(res.Partitioned, region)
					return m.partition(ctx, region, true)
				}},
				step{at: f.At.D + f.For.D, what: "heal region " + region, do: func(ctx context.Context) error {
					err := m.partition(ctx, region, false)
					res.up(ctlURL(region))
					return err
				}})
		case RestoreFromBackup:
			steps = append(steps, step{at: f.At.D, what: "lose the control plane and restore the newest backup into region " + m.s.spare(), do: func(ctx context.Context) error {
				return m.loseAndRestore(ctx, m.t, res)
			}})
		default:
			steps = append(steps, step{at: f.At.D, what: f.Kind.Value, do: func(context.Context) error {
				return fmt.Errorf("fault %s: its injection is not built yet", f.Kind.Value)
			}})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	return steps
}

// down opens a window of replica url from now; up closes it.
func (r *Result) down(url string) {
	r.Down = append(r.Down, Window{Replica: url, From: time.Now().UTC()})
}

func (r *Result) up(url string) {
	for i := len(r.Down) - 1; i >= 0; i-- {
		if r.Down[i].Replica == url && r.Down[i].To.IsZero() {
			r.Down[i].To = time.Now().UTC()
			return
		}
	}
}

// reachable reports whether the replica at url was neither down nor cut
// off at t.
func (r *Result) reachable(url string, t time.Time) bool {
	for _, w := range r.Down {
		if w.Replica == url && !t.Before(w.From) && (w.To.IsZero() || t.Before(w.To)) {
			return false
		}
	}
	return true
}

// etcdLeader returns the region whose etcd member leads, as the members
// that answer say.
func (m *mesh) etcdLeader(ctx context.Context) (string, error) {
	ids := map[uint64]string{}
	var leader uint64
	var errs []error
	for r, em := range m.etcd {
		st, err := em.Status(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids[st.ID] = r
		if st.Leader != 0 {
			leader = st.Leader
		}
	}
	if r, ok := ids[leader]; ok {
		return r, nil
	}
	return "", fmt.Errorf("no etcd member names a leader that answers (leader %x; %v)", leader, errs)
}

// noteLeader records in the timeline which etcd member leads, a moment
// before a fault: a region that holds the leader costs an election.
func (m *mesh) noteLeader(ctx context.Context, res *Result) {
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if r, err := m.etcdLeader(lctx); err == nil {
		res.event("etcd leader before the fault: " + etcdName(r))
	} else {
		res.event("etcd leader before the fault: unknown (" + err.Error() + ")")
	}
}

// victim is a container a fault kills, with its main process's host PID
// resolved ahead of the fault (0 if that failed: why says why).
type victim struct {
	name string
	ctr  testcontainers.Container
	pid  int
	why  string
}

func newVictim(ctx context.Context, name string, ctr testcontainers.Container) victim {
	v := victim{name: name, ctr: ctr}
	pid, err := containers.HostPID(ctx, ctr)
	if err != nil {
		v.why = err.Error()
	} else {
		v.pid = pid
	}
	return v
}

// regionVictims are every container of the region: its nodes, its
// controller replica and its etcd member.
func (m *mesh) regionVictims(ctx context.Context, region string) []victim {
	var out []victim
	for _, n := range m.nodes[region] {
		out = append(out, newVictim(ctx, n.Name, n.Container))
	}
	return append(out, newVictim(ctx, ctlName(region), m.ctl[region].Container), newVictim(ctx, etcdName(region), m.etcd[region].Container))
}

// killAll kills the victims at once: a SIGKILL to each one's main process
// by its host PID (containers.KillPID), all within a millisecond, so that
// the fault happens at its time. Docker's kill API, under the nightly
// channel's concurrent load, took 1.6 to 3.3 s per container, and a region
// whose etcd leader died seconds after the fault's time added those
// seconds to the control-plane RTO. A victim whose PID could not be
// resolved is killed through Docker, and the timeline says so. Then it
// waits until Docker sees every one stopped, and records in the timeline
// when each kill was sent and when Docker saw it.
func (m *mesh) killAll(ctx context.Context, what string, victims []victim, res *Result) error {
	start := time.Now()
	sent := make([]time.Duration, len(victims))
	var slow []int
	for i, v := range victims {
		if v.pid == 0 {
			slow = append(slow, i)
			continue
		}
		if err := containers.KillPID(v.pid, v.ctr); err != nil {
			victims[i].why = err.Error()
			slow = append(slow, i)
			continue
		}
		sent[i] = time.Since(start)
	}
	seen := make([]time.Duration, len(victims))
	var fns []func(context.Context) error
	for i, v := range victims {
		fns = append(fns, func(ctx context.Context) error {
			var err error
			if slices.Contains(slow, i) {
				err = containers.Kill(ctx, v.ctr)
				sent[i] = time.Since(start)
			} else {
				err = containers.WaitStopped(ctx, v.ctr)
			}
			seen[i] = time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			return nil
		})
	}
	err := all(ctx, fns, what)
	var done []string
	for i, v := range victims {
		how := fmt.Sprintf("SIGKILL to pid %d at +%v", v.pid, sent[i].Round(time.Microsecond))
		if slices.Contains(slow, i) {
			how = fmt.Sprintf("through Docker (%s), done at +%v", v.why, sent[i].Round(time.Millisecond))
		}
		done = append(done, fmt.Sprintf("%s %s, seen stopped by Docker at +%v", v.name, how, seen[i].Round(time.Millisecond)))
	}
	res.event("killed: " + strings.Join(done, "; "))
	return err
}

// controlPlaneLogs returns the logs of every replica and etcd member the
// drill started, by container name; one that cannot be read says why in
// its place.
func (m *mesh) controlPlaneLogs(ctx context.Context) map[string]string {
	out := map[string]string{}
	read := func(name string, ctr testcontainers.Container) {
		l, err := containers.Logs(ctx, ctr)
		if err != nil {
			l += fmt.Sprintf("\n(the log could not be read whole: %v)\n", err)
		}
		out[name] = l
	}
	for r, c := range m.ctl {
		read(ctlName(r), c.Container)
	}
	for r, e := range m.etcd {
		read(etcdName(r), e.Container)
	}
	if m.spareEtcd != nil {
		read(m.spareEtcd.Name, m.spareEtcd.Container)
	}
	return out
}

// partition cuts the region off from the wan, or (cut false) puts it back:
// its relays (so its etcd member reaches no other), its replica (which the
// nodes and the load client reach over the wan) and its nodes. What is on
// the region's own network (its etcd member, its replica) still reaches
// each other.
func (m *mesh) partition(ctx context.Context, region string, cut bool) error {
	type attach struct {
		ctr   testcontainers.Container
		alias string
	}
	var on []attach
	for _, other := range m.s.Live() {
		if name := relayName(region, other.Name.Value); m.relays[name] != nil {
			on = append(on, attach{m.relays[name].Container, name})
		}
	}
	on = append(on, attach{m.ctl[region].Container, ctlName(region)})
	for _, n := range m.nodes[region] {
		on = append(on, attach{n.Container, n.Name})
	}
	var fns []func(context.Context) error
	for _, a := range on {
		if cut {
			fns = append(fns, func(ctx context.Context) error { return containers.Disconnect(ctx, a.ctr, m.wan) })
		} else {
			fns = append(fns, func(ctx context.Context) error { return containers.Connect(ctx, a.ctr, m.wan, a.alias) })
		}
	}
	what := "partition region "
	if !cut {
		what = "heal region "
	}
	return all(ctx, fns, what+region)
}

// all runs fns at once and returns the first error.
func all(ctx context.Context, fns []func(context.Context) error, what string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i, f := range fns {
		wg.Go(func() { errs[i] = f(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}
