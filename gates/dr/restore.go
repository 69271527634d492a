package dr

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/internal/containers"
	"github.com/rustynet/rustynet/internal/drload"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/node"
)

// Backup is one backup the drill took: the logical export of the store
// (`rustynet-controller backup --format logical`), through a live replica,
// while the workload wrote. Its content stays in memory: it holds the
// nodes' credential hashes, and the evidence gets its digest only.
type Backup struct {
	Index int `json:"index"`
	// Why: "periodic" (workload.backup_every: a restore fault restores
	// the newest) or "random" (restore_confidence: restored one by one
	// after the drill).
	Why     string `json:"why"`
	Replica string `json:"replica"`
	// Started: every write acknowledged before it is in the backup.
	Started  time.Time `json:"started"`
	Done     time.Time `json:"done"`
	Bytes    int       `json:"bytes,omitempty"`
	SHA256   string    `json:"sha256,omitempty"`
	Revision uint64    `json:"revision,omitempty"`
	Nodes    int       `json:"nodes,omitempty"`
	Error    string    `json:"error,omitempty"`

	data []byte
	exp  *store.Exported
}

// Where a replica writes a backup it is asked for, and reads a restore.
const backupPath = containers.DataDir + "/backup.json"

// RestoreResult is what the drill's restore-from-backup fault measured.
type RestoreResult struct {
	// Backup is the index of the backup restored (the newest), and
	// BackupAge its age when the control plane was lost: the RPO in
	// time. Writes acknowledged after it began are not expected in it.
	Backup    int           `json:"backup"`
	BackupAge time.Duration `json:"backup_age_ns"`
	LostAt    time.Time     `json:"control_plane_lost"`
	// Started is when the restore began (right after the loss); Serving
	// when the restored replica answered /healthz.
	Started time.Time `json:"started"`
	Serving time.Time `json:"serving"`
	// TimeToRestore: Started to the first write acknowledged through the
	// restored replica; nil when none was.
	TimeToRestore *time.Duration `json:"time_to_restore_ns"`
	// WritesAfterBackup counts the writes acknowledged from the backup's
	// start to the loss: the RPO in writes, not held against the store.
	WritesAfterBackup int `json:"writes_acknowledged_after_the_backup"`
}

// Restore is one restore of the confidence measurement
// (documents/resilience/restore-confidence.md).
type Restore struct {
	Backup int `json:"backup"`
	// Took: a fresh etcd member started, the backup restored into it and
	// the replica serving on it.
	Took time.Duration `json:"took_ns"`
	// Records r: of the records expected, those the restored store holds
	// identical. Expected are the backup's nodes, auth keys and policy,
	// and the nodes whose registration was acknowledged before the
	// backup began (with the last endpoints acknowledged for them then).
	RecordsOK    int      `json:"records_ok"`
	RecordsTotal int      `json:"records"`
	Missing      []string `json:"missing,omitempty"`
	// Credentials c: of the drill's nodes the backup holds, those that
	// were served a netmap by the restored replica (with the credentials
	// they hold: a node never registers again by itself).
	NodesBack  int `json:"nodes_back"`
	NodesTotal int `json:"nodes"`
	// Tunnels p: of the pairs of those nodes, those that passed a probe
	// within TunnelWindow of the replica being reachable.
	PairsOK    int    `json:"pairs_ok"`
	PairsTotal int    `json:"pairs"`
	Complete   bool   `json:"complete"`
	Error      string `json:"error,omitempty"`
}

// ConfidenceResult is the restore-confidence figure over the drill's restores.
type ConfidenceResult struct {
	Restores []Restore `json:"restores"`
	Complete int       `json:"complete"`
	// Figure is Complete/len(Restores), with its two-sided 95%
	// Clopper–Pearson interval.
	Figure float64 `json:"figure"`
	Lo     float64 `json:"interval_lo"`
	Hi     float64 `json:"interval_hi"`
	// The mean and lowest of each fraction, so that a miss says which
	// part of a restore failed.
	MeanRecords     float64 `json:"mean_records"`
	MinRecords      float64 `json:"min_records"`
	MeanCredentials float64 `json:"mean_credentials"`
	MinCredentials  float64 `json:"min_credentials"`
	MeanTunnels     float64 `json:"mean_tunnels"`
	MinTunnels      float64 `json:"min_tunnels"`
	// Seed drew the random backups' moments.
	Seed uint64 `json:"seed"`
}

// How long a confidence restore waits for the nodes: to be served a
// netmap, and (from the same moment) to pass a probe to each other.
const (
	CredentialWindow = 30 * time.Second
	TunnelWindow     = 10 * time.Second
)

// spare returns the topology's spare region, or "".
func (s *Scenario) spare() string {
	for _, r := range s.Topology.Regions {
		if r.Spare {
			return r.Name.Value
		}
	}
	return ""
}

// restoreAt returns when the drill's restore fault comes, or 0.
func (s *Scenario) restoreAt() time.Duration {
	for _, f := range s.Faults {
		if f.Kind.Value == RestoreFromBackup {
			return f.At.D
		}
	}
	return 0
}

// backupSteps are the drill's backups: every workload.backup_every until
// the restore fault (or the end), and restore_confidence's, at moments
// drawn uniformly over the same span from seed.
func (m *mesh) backupSteps(res *Result, seed uint64) []step {
	s := m.s
	until := s.restoreAt()
	if until == 0 {
		until = s.Duration.D
	}
	var times []step
	add := func(at time.Duration, why string) {
		times = append(times, step{at: at, what: why, aside: true})
	}
	if every := s.Workload.BackupEvery.D; every > 0 {
		for at := every; at < until; at += every {
			add(at, "periodic")
		}
	}
	if c := s.Confidence; c != nil {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		// From a few seconds in (the workload has begun writing) to a
		// second before the restore.
		from, to := 5*time.Second, until-time.Second
		if to <= from { // a drill whose restore comes that early
			from, to = 0, until
		}
		for range c.Backups {
			add(from+time.Duration(rng.Int64N(int64(to-from))), "random")
		}
	}
	sort.SliceStable(times, func(i, j int) bool { return times[i].at < times[j].at })
	for i := range times {
		st := &times[i]
		why := st.what
		st.what = fmt.Sprintf("backup %d (%s)", i+1, why)
		st.do = func(ctx context.Context) error {
			b := m.takeBackup(ctx, res, why)
			b.Index = i + 1
			res.Backups = append(res.Backups, b)
			if b.Error == "" {
				res.event(fmt.Sprintf("backup %d (%s) taken through %s: revision %d, %d nodes, %d bytes", b.Index, why, b.Replica, b.Revision, b.Nodes, b.Bytes))
			}
			return nil
		}
	}
	return times
}

// takeBackup takes a backup through the first live replica that is up. A
// backup that fails is kept with its error: a restore of it counts as
// failed.
func (m *mesh) takeBackup(ctx context.Context, res *Result, why string) *Backup {
	b := &Backup{Why: why, Started: time.Now().UTC()}
	fail := func(format string, args ...any) *Backup {
		b.Done, b.Error = time.Now().UTC(), fmt.Sprintf(format, args...)
		res.event(fmt.Sprintf("a backup (%s) failed: %s", why, b.Error))
		return b
	}
	var ctl *containers.Controller
	for _, r := range m.s.Live() {
		if url := ctlURL(r.Name.Value); res.reachable(url, b.Started) {
			ctl, b.Replica = m.ctl[r.Name.Value], url
			break
		}
	}
	if ctl == nil {
		return fail("no live replica to take it through")
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	code, out, err := ctl.Admin(bctx, "backup", "--data-dir", containers.DataDir, "--format", "logical", "--out", backupPath)
	if err != nil || code != 0 {
		return fail("backup through %s: exit %d, %v: %s", b.Replica, code, err, trunc(out))
	}
	raw, err := containers.CopyFile(bctx, ctl.Container, backupPath, store.MaxExportBytes)
	b.Done = time.Now().UTC()
	if err != nil {
		return fail("copying the backup out of %s: %v", b.Replica, err)
	}
	e, err := store.ParseExport(bytes.NewReader(raw))
	if err != nil {
		return fail("the backup through %s does not parse: %v", b.Replica, err)
	}
	sum := sha256.Sum256(raw)
	b.data, b.exp = raw, e
	b.Bytes, b.SHA256, b.Revision, b.Nodes = len(raw), hex.EncodeToString(sum[:]), e.Revision, len(e.Nodes)
	return b
}

// restoreSpare starts a fresh one-member etcd cluster in the spare region
// named etcdName, restores b into it with `rustynet-controller restore`
// (a container of its own), and starts the spare's replica on it with
// the drill's CA, on the spare's network and, with wan, on the wan (where
// the nodes and the load client reach it). It returns the replica once
// it serves.
func (m *mesh) restoreSpare(ctx context.Context, t containers.T, b *Backup, etcdName string, wan bool) (*containers.Controller, error) {
	spare := m.s.spare()
	net := m.nets[spare]
	em := containers.StartEtcdMember(ctx, t, m.bins.Etcd, etcdName, containers.NewEtcdCluster("restore-"+etcdName, etcdName), []*containers.Network{net})
	if err := containers.WaitHealthy(ctx, em); err != nil {
		return nil, err
	}
	m.spareEtcd = em
	p := containers.StartProcess(ctx, t, containers.Process{
		What: "restore of backup " + strconv.Itoa(b.Index), Image: "controller-restore", Bin: m.bins.Controller,
		Args:     []string{"restore", "--format", "logical", "--store", "etcd", "--etcd-endpoints", em.ClientURL, "/backup.json"},
		Networks: []containers.Attachment{{Network: net}},
		Files:    map[string][]byte{"/backup.json": b.data},
	})
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if code, err := p.Wait(wctx); err != nil || code != 0 {
		l, _ := p.Logs(ctx)
		return nil, fmt.Errorf("restore of backup %d: exit %d, %v: %s", b.Index, code, err, trunc(l))
	}
	nets := []*containers.Network{net}
	if wan {
		nets = append(nets, m.wan)
	}
	ctl := containers.StartReplica(ctx, t, containers.Replica{Name: ctlName(spare), Networks: nets, Bin: m.bins.Controller,
		EtcdEndpoints: []string{em.ClientURL}, CAPEM: m.caPEM, CAKey: m.caKey})
	m.ctl[spare] = ctl
	return ctl, nil
}

// loseAndRestore is the restore-from-backup fault: every etcd member and
// every replica killed at once (the nodes run on), then the newest
// backup restored into the spare region, whose replica the nodes and the
// load client already list.
func (m *mesh) loseAndRestore(ctx context.Context, t containers.T, res *Result) error {
	var kills []func(context.Context) error
	for _, r := range m.s.Live() {
		res.down(ctlURL(r.Name.Value))
		kills = append(kills, m.ctl[r.Name.Value].Kill, m.etcd[r.Name.Value].Kill)
	}
	lost := time.Now().UTC()
	if err := all(ctx, kills, "lose the control plane"); err != nil {
		return err
	}
	res.event("control plane lost: every etcd member and replica killed")
	var newest *Backup
	for _, b := range res.Backups {
		if b.Error == "" && b.Started.Before(lost) {
			newest = b
		}
	}
	if newest == nil {
		return fmt.Errorf("no backup was taken before the loss")
	}
	rr := &RestoreResult{Backup: newest.Index, BackupAge: lost.Sub(newest.Started), LostAt: lost, Started: time.Now().UTC()}
	res.Restore = rr
	res.event(fmt.Sprintf("restoring backup %d (taken %v before the loss) into region %s", newest.Index, rr.BackupAge.Round(time.Millisecond), m.s.spare()))
	if _, err := m.restoreSpare(ctx, t, newest, etcdName(m.s.spare()), true); err != nil {
		return err
	}
	rr.Serving = time.Now().UTC()
	res.up(ctlURL(m.s.spare()))
	return nil
}

// measureRestore times the restore, from the write log: its start to the
// first write acknowledged through the restored replica; and counts the
// writes acknowledged after the backup began, before the loss.
func (r *Result) measureRestore(spare string) {
	rr := r.Restore
	if rr == nil {
		return
	}
	b := r.backup(rr.Backup)
	for _, w := range r.Writes {
		if w.OK && b != nil && !w.Done.Before(b.Started) && w.At.Before(rr.LostAt) {
			rr.WritesAfterBackup++
		}
		if w.OK && w.Replica == ctlURL(spare) && !w.At.Before(rr.Started) {
			if d := w.Done.Sub(rr.Started); rr.TimeToRestore == nil || d < *rr.TimeToRestore {
				rr.TimeToRestore = &d
			}
		}
	}
}

func (r *Result) backup(index int) *Backup {
	for _, b := range r.Backups {
		if b.Index == index {
			return b
		}
	}
	return nil
}

// expectedInStore reports whether an acknowledged write must be in the
// store after the drill: with a restore, one acknowledged before the
// restored backup began, or through the restored replica after.
func (r *Result) expectedInStore(w drload.Record) bool {
	rr := r.Restore
	if rr == nil {
		return true
	}
	b := r.backup(rr.Backup)
	return (b != nil && w.Done.Before(b.Started)) || !w.At.Before(rr.Started)
}

// confidence restores every random backup in turn into the spare region
// (after the drill: the workload has ended) and measures each restore.
func (m *mesh) confidence(ctx context.Context, t containers.T, res *Result) *ConfidenceResult {
	c := &ConfidenceResult{Seed: res.Seed}
	spare := m.s.spare()
	n := 0
	for _, b := range res.Backups {
		if b.Why != "random" {
			continue
		}
		n++
		if err := m.clearSpare(ctx); err != nil {
			t.Fatalf("confidence restore %d: %v", n, err)
		}
		rs := m.restoreOne(ctx, t, res, b, fmt.Sprintf("%s-%d", etcdName(spare), n))
		res.event(fmt.Sprintf("confidence restore %d (backup %d): %s", n, b.Index, rs.summary()))
		c.Restores = append(c.Restores, rs)
	}
	c.compute()
	return c
}

// clearSpare stops the spare region's replica and etcd member, the last
// restore's: stopped, their aliases leave the networks' DNS, and the next
// restore's take them.
func (m *mesh) clearSpare(ctx context.Context) error {
	if old := m.ctl[m.s.spare()]; old != nil {
		if err := old.Kill(ctx); err != nil {
			return err
		}
	}
	if m.spareEtcd != nil {
		return m.spareEtcd.Kill(ctx)
	}
	return nil
}

func (rs Restore) summary() string {
	if rs.Error != "" {
		return "failed: " + rs.Error
	}
	return fmt.Sprintf("records %d/%d, nodes back %d/%d, pairs passing %d/%d, took %v", rs.RecordsOK, rs.RecordsTotal, rs.NodesBack, rs.NodesTotal, rs.PairsOK, rs.PairsTotal, rs.Took.Round(time.Millisecond))
}

// restoreOne restores b into a fresh etcd member of the spare region and
// a replica on the spare's network only; compares what it holds with
// what was acknowledged; then joins it to the wan and waits for the
// nodes.
func (m *mesh) restoreOne(ctx context.Context, t containers.T, res *Result, b *Backup, etcdName string) Restore {
	rs := Restore{Backup: b.Index}
	if b.Error != "" {
		rs.Error = "the backup failed: " + b.Error
		return rs
	}
	start := time.Now()
	ctl, err := m.restoreSpare(ctx, t, b, etcdName, false)
	if err != nil {
		rs.Error = err.Error()
		return rs
	}
	rs.Took = time.Since(start)
	// What the restored store holds, before any node can reach it.
	code, out, err := ctl.Admin(ctx, "backup", "--data-dir", containers.DataDir, "--format", "logical", "--out", backupPath)
	if err != nil || code != 0 {
		rs.Error = fmt.Sprintf("reading the restored store: exit %d, %v: %s", code, err, trunc(out))
		return rs
	}
	raw, err := containers.CopyFile(ctx, ctl.Container, backupPath, store.MaxExportBytes)
	var got *store.Exported
	if err == nil {
		got, err = store.ParseExport(bytes.NewReader(raw))
	}
	if err != nil {
		rs.Error = fmt.Sprintf("reading the restored store: %v", err)
		return rs
	}
	rs.RecordsOK, rs.RecordsTotal, rs.Missing = compareRecords(b, got, res.Writes)

	// The nodes the backup holds, by their mesh address.
	var nodes []*containers.Node
	ids := map[string]api.NodeID{}
	for _, r := range m.s.Live() {
		for _, nd := range m.nodes[r.Name.Value] {
			for _, n := range b.exp.Nodes {
				if slices.ContainsFunc(n.Addresses, func(p netip.Prefix) bool { return p.Addr() == nd.IPv4 }) {
					nodes = append(nodes, nd)
					ids[nd.Name] = n.ID
				}
			}
		}
	}
	rs.NodesTotal, rs.PairsTotal = len(nodes), len(nodes)*(len(nodes)-1)
	if err := containers.Connect(ctx, ctl.Container, m.wan, ctlName(m.s.spare())); err != nil {
		rs.Error = fmt.Sprintf("joining the restored replica to the wan: %v", err)
		return rs
	}
	reachable := time.Now().UTC()
	back, pairs := map[string]bool{}, map[[2]string]bool{}
	for deadline := reachable.Add(CredentialWindow); ; {
		for _, nd := range nodes {
			if !back[nd.Name] {
				if raw, err := containers.CopyFile(ctx, nd.Container, netmapLog, 64<<20); err == nil {
					recs, _ := parseLines[node.NetmapRecord](raw)
					back[nd.Name] = slices.ContainsFunc(recs, func(r node.NetmapRecord) bool { return !r.At.Before(reachable) })
				}
			}
			raw, err := containers.CopyFile(ctx, nd.Container, probeLog, 256<<20)
			if err != nil {
				continue
			}
			recs, _ := parseLines[node.ProbeRecord](raw)
			for _, p := range recs {
				if p.Result == "ok" && !p.At.Before(reachable) && p.At.Before(reachable.Add(TunnelWindow)) && ids[p.Name] == p.Peer {
					pairs[[2]string{nd.Name, p.Name}] = true
				}
			}
		}
		rs.NodesBack = countTrue(back)
		rs.PairsOK = 0
		for p := range pairs {
			if ids[p[0]] != "" && ids[p[1]] != "" {
				rs.PairsOK++
			}
		}
		if (rs.NodesBack == rs.NodesTotal && rs.PairsOK == rs.PairsTotal) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	rs.Complete = rs.RecordsOK == rs.RecordsTotal && rs.NodesBack == rs.NodesTotal && rs.PairsOK == rs.PairsTotal && rs.NodesTotal > 0
	return rs
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// compareRecords counts the records expected after restoring b that got
// holds identical: every node, auth key and counter of the backup and its
// policy, identical field by field; and every node whose registration
// was acknowledged before the backup began, with the endpoints last
// acknowledged for it before then (when no later report was sent before
// the backup ended, which may have replaced them).
func compareRecords(b *Backup, got *store.Exported, writes []drload.Record) (ok, total int, missing []string) {
	miss := func(format string, args ...any) {
		if len(missing) < 20 {
			missing = append(missing, fmt.Sprintf(format, args...))
		}
	}
	same := func(a, b any) bool {
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(b)
		return bytes.Equal(x, y)
	}
	gotNodes := map[api.NodeID]*store.Node{}
	for _, n := range got.Nodes {
		gotNodes[n.ID] = n
	}
	for _, n := range b.exp.Nodes {
		total++
		if g := gotNodes[n.ID]; g != nil && same(g, n) {
			ok++
		} else {
			miss("node %s: not restored identical", n.ID)
		}
	}
	gotKeys := map[string]*store.AuthKey{}
	for _, k := range got.AuthKeys {
		gotKeys[k.ID] = k
	}
	for _, k := range b.exp.AuthKeys {
		total++
		if g := gotKeys[k.ID]; g != nil && same(g, k) {
			ok++
		} else {
			miss("auth key %s: not restored identical", k.ID)
		}
	}
	for name, v := range b.exp.Counters {
		total++
		if got.Counters[name] == v {
			ok++
		} else {
			miss("counter %s: %d, want %d", name, got.Counters[name], v)
		}
	}
	if b.exp.Policy != nil {
		total++
		if same(got.Policy, b.exp.Policy) {
			ok++
		} else {
			miss("the policy: not restored identical")
		}
	}
	// The acknowledged writes the backup must hold.
	lastSent := map[api.NodeID]time.Time{}
	var lastPolicy time.Time
	for _, w := range writes {
		if w.Op == drload.OpEndpoints && w.At.Before(b.Done) && w.At.After(lastSent[w.Node]) {
			lastSent[w.Node] = w.At
		}
		if w.Op == drload.OpPolicy && w.At.Before(b.Done) && w.At.After(lastPolicy) {
			lastPolicy = w.At
		}
	}
	for _, w := range writes {
		if !w.OK || !w.Done.Before(b.Started) {
			continue
		}
		switch g := gotNodes[w.Node]; {
		case w.Op == drload.OpPolicy && lastPolicy.Equal(w.At):
			total++
			if got.Policy != nil && got.Policy.Text == w.Policy {
				ok++
			} else {
				miss("the policy set at %s: not the restored one", w.Done.Format(time.RFC3339Nano))
			}
		case w.Op == drload.OpRegister:
			total++
			if g != nil {
				ok++
			} else {
				miss("registration of %s acknowledged at %s: not in the restored store", w.Node, w.Done.Format(time.RFC3339Nano))
			}
		case w.Op == drload.OpEndpoints && lastSent[w.Node].Equal(w.At):
			total++
			if g != nil && containsAll(g.Endpoints, w.Endpoints) {
				ok++
			} else {
				miss("endpoints %v of %s acknowledged at %s: not in the restored store", w.Endpoints, w.Node, w.Done.Format(time.RFC3339Nano))
			}
		}
	}
	return ok, total, missing
}

// compute sets the figure, its interval and the fractions' means and
// minima from the restores.
func (c *ConfidenceResult) compute() {
	n := len(c.Restores)
	if n == 0 {
		return
	}
	frac := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	var r, cr, p []float64
	for _, rs := range c.Restores {
		if rs.Complete {
			c.Complete++
		}
		r = append(r, frac(rs.RecordsOK, rs.RecordsTotal))
		cr = append(cr, frac(rs.NodesBack, rs.NodesTotal))
		p = append(p, frac(rs.PairsOK, rs.PairsTotal))
	}
	c.Figure = float64(c.Complete) / float64(n)
	c.Lo, c.Hi = stats.ClopperPearson(c.Complete, n, 0.95)
	c.MeanRecords, c.MinRecords = stats.Mean(r), slices.Min(r)
	c.MeanCredentials, c.MinCredentials = stats.Mean(cr), slices.Min(cr)
	c.MeanTunnels, c.MinTunnels = stats.Mean(p), slices.Min(p)
}

// ScaleResult is the restore at scale: the restored backup grown to
// Nodes nodes, restored into a fresh etcd member and replica of the
// spare region after the drill.
type ScaleResult struct {
	Nodes int `json:"nodes"`
	Bytes int `json:"bytes"`
	// Took: the etcd member started, the export restored, the replica
	// serving (it loads every node before it answers /healthz); nil when
	// the restore failed.
	Took  *time.Duration `json:"took_ns"`
	Error string         `json:"error,omitempty"`
}

// grow returns e with synthetic nodes added, each a copy of a node of e
// with its own ID, keys, credential hash and mesh address, until it holds
// n nodes. The addresses come from 100.127.0.0/16 and up, where the
// drill's registrations (fewer than a thousand) never reach.
func grow(e *store.Exported, n int, rng *rand.Rand) (*store.Exported, error) {
	if len(e.Nodes) == 0 {
		return nil, fmt.Errorf("the backup holds no node to copy")
	}
	g := *e
	g.Nodes = slices.Clone(e.Nodes)
	tmpl := e.Nodes[len(e.Nodes)-1]
	for i := 0; len(g.Nodes) < n; i++ {
		c := tmpl.Clone()
		c.ID = api.NodeID(fmt.Sprintf("scale-%06d", i))
		c.Name = fmt.Sprintf("scale-%06d", i)
		fill := func(b []byte) {
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		}
		fill(c.NodeKey[:])
		fill(c.MachineKey[:])
		fill(c.CredentialHash[:])
		addr := netip.AddrFrom4([4]byte{100, byte(127 - i/65536), byte(i / 256 % 256), byte(i % 256)})
		c.Addresses = []netip.Prefix{netip.PrefixFrom(addr, 32)}
		c.Endpoints = nil
		g.Nodes = append(g.Nodes, c)
	}
	return &g, nil
}

// atScale restores the drill's restored backup grown to nodes nodes.
func (m *mesh) atScale(ctx context.Context, t containers.T, res *Result, nodes int) *ScaleResult {
	sr := &ScaleResult{Nodes: nodes}
	var b *Backup
	if res.Restore != nil {
		b = res.backup(res.Restore.Backup)
	}
	if b == nil {
		sr.Error = "no backup was restored to grow"
		return sr
	}
	e, err := grow(b.exp, nodes, rand.New(rand.NewPCG(res.Seed, 1)))
	if err == nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		if err = enc.Encode(e); err == nil {
			b = &Backup{Index: 0, Why: "at scale", data: buf.Bytes(), exp: e}
			sr.Bytes = buf.Len()
		}
	}
	if err != nil {
		sr.Error = err.Error()
		return sr
	}
	spare := m.s.spare()
	if err := m.clearSpare(ctx); err != nil {
		t.Fatalf("restore at scale: %v", err)
	}
	start := time.Now()
	if _, err := m.restoreSpare(ctx, t, b, etcdName(spare)+"-scale", false); err != nil {
		sr.Error = err.Error()
		return sr
	}
	took := time.Since(start)
	sr.Took = &took
	return sr
}
