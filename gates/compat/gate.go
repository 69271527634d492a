package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "compat"

// Owner owns the gate: the team that owns the control API and the store.
const Owner = "control-plane"

// Register adds the compat gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    Owner,
		Timeout:  30 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot, gates.NeedGo},
		Run:      run,
		Fields:   gates.FieldsOf(Details{}),
		// It builds two releases (the compiler takes both cores) and
		// judges a rolling upgrade's interruptions: it runs alone.
		Concurrent: false,
	})
}

// RollingNodes is how many nodes the rolling upgrade upgrades.
const RollingNodes = 3

// MaxNodeInterruption is the longest a node's own restart may interrupt
// its pairs' traffic in the rolling upgrade. The controller's restart may
// interrupt none.
const MaxNodeInterruption = 10 * time.Second

// Details is the gate's evidence: what was checked, from which releases,
// and what it showed.
type Details struct {
	Policy       string `json:"policy"`
	PolicyDigest string `json:"policy_sha256"`
	// AsOf is the time the support window was judged at.
	AsOf string `json:"as_of"`
	// Capability is this tree's capability version; Supported those the
	// window covers on AsOf; Served the oldest the controller serves.
	Capability int   `json:"capability"`
	Supported  []int `json:"supported_capabilities"`
	Served     int   `json:"min_served_capability"`
	// Releases are the earlier releases built, each from its commit.
	Releases []Release      `json:"releases"`
	Store    []StoreUpgrade `json:"store_upgrades"`
	Mixed    []Mixed        `json:"mixed_versions"`
	Rolling  *Rolling       `json:"rolling_upgrade,omitempty"`
	Problems []string       `json:"problems,omitempty"`
}

// Release is one earlier release the gate built.
type Release struct {
	Name       string `json:"name"`
	Commit     string `json:"commit"`
	Capability int    `json:"capability"`
}

func run(ctx context.Context, r *gates.Run) error {
	// The support window and the sunsets are judged at the run's time,
	// which a what-if run sets (rustynet-gate run --effective-time).
	now := r.At
	if now.IsZero() {
		now = time.Now()
	}
	pol, err := Load(r.Root, func(commit string) error {
		return exec.CommandContext(ctx, "git", "-C", r.Root, "cat-file", "-e", commit+"^{commit}").Run()
	})
	if err != nil {
		return err // could not run: the policy names what is wrong, with its line
	}
	ctl, daemon := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || daemon == "" {
		return errors.New("no binaries: the build gate did not run or failed")
	}
	// The API judged is the tree's under test, built from it: this
	// binary's own may be another's (a mutation run's gate is built
	// once, from the unmutated tree).
	a, err := treeAPI(ctx, r, now)
	if err != nil {
		return err
	}
	current := a.Capability
	d := Details{Policy: PolicyFile, PolicyDigest: pol.Digest, AsOf: now.UTC().Format(time.RFC3339), Capability: current,
		Supported: a.Supported, Served: a.Served}
	d.Problems = append(d.Problems, a.Problems...)

	rels := pol.SupportedReleases(now, current)
	if len(rels) == 0 {
		d.Problems = append(d.Problems, fmt.Sprintf("%s names no earlier release inside the support window on %s: nothing to check compatibility with", PolicyFile, day(now)))
		return finish(r, &d)
	}
	// Every release the checks need, built once: the supported ones, and
	// those the store upgrades from.
	storeRels := pol.StoreUpgradeReleases()
	built := map[string]Built{}
	for _, rel := range append(append([]policies.EarlierRelease{}, rels...), storeRels...) {
		if _, ok := built[rel.Name.Value]; ok {
			continue
		}
		fmt.Fprintf(r.Log, "== build release %s (%s, capability %d)\n", rel.Name.Value, rel.Commit.Value, rel.Capability.Value)
		b, err := BuildRelease(ctx, r.Root, filepath.Join(r.Work, "releases"), rel, r.Log)
		if err != nil {
			return err
		}
		built[rel.Name.Value] = b
		d.Releases = append(d.Releases, Release{Name: b.Release, Commit: b.Commit, Capability: b.Capability})
	}
	steps := 2*len(storeRels) + 2 + 1
	done := 0
	progress := func() {
		done++
		r.Progress(float64(done) / float64(steps))
	}

	for _, rel := range storeRels {
		fmt.Fprintf(r.Log, "== store upgrade from %s\n", rel.Name.Value)
		res, err := CheckStoreUpgrade(ctx, built[rel.Name.Value], ctl, r.Work, r.Log)
		if err != nil {
			return fmt.Errorf("store upgrade from %s: %w", rel.Name.Value, err)
		}
		d.Store = append(d.Store, *res)
		d.Problems = append(d.Problems, prefix("store upgrade from "+rel.Name.Value, JudgeStore(res))...)
		r.Measure(evidence.Measurement{Name: "store_upgrade_start:" + rel.Name.Value, Unit: "s",
			Method: fmt.Sprintf("%s's controller run on a fresh data dir, %d nodes registered through its API, stopped; this tree's controller started on that data dir: from its start to /healthz answering; one run", rel.Name.Value, upgradeNodes),
			Values: []float64{res.Start.Seconds()}})
		progress()
	}

	this := Binary{Release: "this tree", Path: daemon}
	newest := built[rels[len(rels)-1].Name.Value]
	meshes := []struct {
		name  string
		ctl   Binary
		nodes []Binary
	}{
		{"every supported release's node on this tree's controller", Binary{Release: "this tree", Path: ctl}, nil},
		{"this tree's nodes on the N-1 controller", Binary{Release: newest.Release, Path: newest.Controller},
			[]Binary{this, this, newest.Node()}},
	}
	meshes[0].nodes = []Binary{this}
	for _, rel := range rels {
		b := built[rel.Name.Value]
		meshes[0].nodes = append(meshes[0].nodes, b.Node())
	}
	for _, m := range meshes {
		fmt.Fprintf(r.Log, "== mixed versions: %s\n", m.name)
		res, err := CheckMixed(ctx, m.ctl, m.ctl.Path, m.nodes, r.Work, r.Log)
		if err != nil {
			return fmt.Errorf("mixed versions (%s): %w", m.name, err)
		}
		d.Mixed = append(d.Mixed, *res)
		d.Problems = append(d.Problems, prefix("mixed versions ("+m.name+")", JudgeMixed(res, len(m.nodes)))...)
		var ok float64
		for _, p := range res.Pairs {
			if p.OK {
				ok++
			}
		}
		want := len(m.nodes) * (len(m.nodes) - 1)
		r.Measure(evidence.Measurement{Name: "mixed_pairs_passing:controller=" + slug(res.Controller), Unit: "ratio",
			Method: fmt.Sprintf("%s: a controller of %s and nodes of %s on the WireGuard backend in network namespaces; every ordered pair of nodes (%d) opens a TCP connection over the mesh and both sides send %d KiB, checked; one run",
				m.name, res.Controller, strings.Join(res.Nodes, ", "), want, pairBytes>>10),
			Values: []float64{ok / float64(max(want, 1))}})
		progress()
	}

	fmt.Fprintf(r.Log, "== rolling upgrade from %s\n", newest.Release)
	roll, err := CheckRolling(ctx, newest, ctl, daemon, RollingNodes, r.Work, r.Log)
	if err != nil {
		return fmt.Errorf("rolling upgrade from %s: %w", newest.Release, err)
	}
	d.Rolling = roll
	d.Problems = append(d.Problems, prefix("rolling upgrade from "+newest.Release, JudgeRolling(roll, RollingNodes))...)
	method := fmt.Sprintf("rolling upgrade of a %s mesh (its controller and %d nodes, WireGuard backend, network namespaces) to this tree: the controller first, then each node, stopped and started on its state; every ordered pair probes over the mesh every %v (UDP, %v to answer); one run",
		newest.Release, RollingNodes, probeEvery, probeTimeout)
	for i, s := range roll.Steps {
		step := "controller"
		if i > 0 {
			step = fmt.Sprintf("node%d", i)
		}
		method := method + "; step " + s.What
		r.Measure(evidence.Measurement{Name: "rolling_interruption:" + step, Unit: "s", Method: method + "; the longest gap between answered probes of the pairs this step involves, from its start to the next step's",
			Values: []float64{s.Interruption.Seconds()}})
		r.Measure(evidence.Measurement{Name: "rolling_lost_probes:" + step, Unit: "count", Method: method + "; probes of the pairs this step involves, sent from its start to the next step's, not answered",
			Values: []float64{float64(s.Lost)}})
	}
	r.Measure(evidence.Measurement{Name: "rolling_lost_probes", Unit: "count", Method: method + fmt.Sprintf("; probes not answered, of %d sent", roll.Sent),
		Values: []float64{float64(roll.Lost)}})
	progress()
	return finish(r, &d)
}

// treeAPI runs gates/compat/apicheck, built from the tree under test.
func treeAPI(ctx context.Context, r *gates.Run, now time.Time) (API, error) {
	var out bytes.Buffer
	cmd := r.Command(ctx, "go", "run", "./gates/compat/apicheck", "-at", now.UTC().Format(time.RFC3339))
	cmd.Stdout = &out
	var a API
	if err := cmd.Run(); err != nil {
		return a, fmt.Errorf("go run ./gates/compat/apicheck: %w (the log has its output)", err)
	}
	if err := json.Unmarshal(out.Bytes(), &a); err != nil {
		return a, fmt.Errorf("gates/compat/apicheck printed no verdict: %w: %q", err, out.String())
	}
	fmt.Fprintf(r.Log, "capability %d, oldest served %d, supported on %s: %v\n", a.Capability, a.Served, day(now), a.Supported)
	return a, nil
}

func finish(r *gates.Run, d *Details) error {
	sort.Strings(d.Problems)
	if err := r.Details(d); err != nil {
		return err
	}
	if len(d.Problems) > 0 {
		return gates.Fail("%d problems; %s", len(d.Problems), strings.Join(d.Problems, "; "))
	}
	return nil
}

// slug is a release's name as a measurement name takes it ("this tree" is
// this-tree).
func slug(release string) string { return strings.ReplaceAll(release, " ", "-") }

func prefix(what string, problems []string) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = what + ": " + p
	}
	return out
}

// JudgeStore says what a store upgrade showed wrong: every node the
// earlier release registered kept, with its credential good and its
// netmap holding every other node.
func JudgeStore(res *StoreUpgrade) []string {
	out := append([]string{}, res.Problems...)
	if res.Nodes != upgradeNodes || res.Kept != res.Nodes || res.Credentials != res.Nodes || res.Peers != res.Nodes-1 {
		out = append(out, fmt.Sprintf("%d of %d nodes registered, %d kept, %d credentials accepted, %d peers in the first netmap: want all %d kept, every credential accepted, and the %d others in each netmap",
			res.Nodes, upgradeNodes, res.Kept, res.Credentials, res.Peers, upgradeNodes, upgradeNodes-1))
	}
	if t := res.TooOld; t.Status != http.StatusUpgradeRequired || !strings.Contains(t.Message, "upgrade") {
		out = append(out, fmt.Sprintf("a client of capability version %d (older than the oldest served) got %d %q: want 426 with what to upgrade to", t.Version, t.Status, t.Message))
	}
	if res.Start > 0 { // the new controller ran, so the downgrade was tried
		d := res.Downgrade
		switch {
		case d.SchemaAfter < d.SchemaBefore:
			out = append(out, fmt.Sprintf("this tree's controller left %s's data dir at schema version %d, below the %d it had", res.From, d.SchemaAfter, d.SchemaBefore))
		case d.SchemaAfter == d.SchemaBefore && !d.Served:
			out = append(out, fmt.Sprintf("%s's controller did not serve its data dir again after this tree's controller opened it (schema version %d unchanged, so a downgrade must work): %s", res.From, d.SchemaAfter, d.Message))
		case d.SchemaAfter > d.SchemaBefore && !d.Refused:
			out = append(out, fmt.Sprintf("%s's controller, started again on the data dir this tree's controller upgraded to schema %d, did not refuse it: %q", res.From, d.SchemaAfter, d.Message))
		case d.SchemaAfter > d.SchemaBefore && !namesBothVersions(d.Message, d.SchemaAfter):
			out = append(out, fmt.Sprintf("%s's controller refused the upgraded data dir with %q: want the refusal to name the data dir's schema version %d and its own", res.From, d.Message, d.SchemaAfter))
		}
	}
	return out
}

// namesBothVersions reports whether a downgrade's refusal names the data
// dir's schema version and an older one (the refusing build's).
func namesBothVersions(msg string, schema uint64) bool {
	found, older := false, false
	for _, f := range regexp.MustCompile(`\d+`).FindAllString(msg, -1) {
		v, err := strconv.ParseUint(f, 10, 64)
		found = found || (err == nil && v == schema)
		older = older || (err == nil && v < schema && v > 0)
	}
	return found && older
}

// JudgeMixed says what a mixed-version mesh of n nodes showed wrong: every
// ordered pair must have passed its data both ways.
func JudgeMixed(res *Mixed, n int) []string {
	out := append([]string{}, res.Problems...)
	if want := n * (n - 1); len(res.Pairs) != want && len(res.Problems) == 0 {
		out = append(out, fmt.Sprintf("%d pairs tried, want %d", len(res.Pairs), want))
	}
	return out
}

// JudgeRolling says what a rolling upgrade of n nodes showed wrong: the
// controller's restart loses no probe, and each node's interrupts its
// pairs for at most MaxNodeInterruption.
func JudgeRolling(res *Rolling, n int) []string {
	out := append([]string{}, res.Problems...)
	if len(res.Steps) != n+1 {
		return append(out, fmt.Sprintf("%d steps, want the controller and %d nodes", len(res.Steps), n))
	}
	for i, s := range res.Steps {
		if i == 0 && len(s.DeadBefore) == res.Nodes*(res.Nodes-1) {
			out = append(out, fmt.Sprintf("%s: no pair passed traffic before it", s.What))
		}
		if i == 0 && s.Lost > 0 {
			out = append(out, fmt.Sprintf("%s: %d probes lost (longest gap %v): the data plane must not depend on the controller", s.What, s.Lost, s.Interruption.Round(time.Millisecond)))
		}
		if s.Interruption > MaxNodeInterruption {
			out = append(out, fmt.Sprintf("%s: an interruption of %v, over %v", s.What, s.Interruption.Round(time.Millisecond), MaxNodeInterruption))
		}
	}
	return out
}
