// Package dr is the disaster-recovery gate: it runs the failover and
// restore drills of scenarios/dr/, each a topology of regions (an etcd
// member, a controller replica and nodes each, in containers), a workload
// whose acknowledged writes are logged, and faults at stated times, and
// holds what it measures to the targets of policies/resilience.yaml.
package dr

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rustynet/rustynet/policies"
)

// Dir holds the drills, one YAML file each, relative to the repository root.
const Dir = "scenarios/dr"

// PolicyFile is the gate's policy, relative to the repository root.
const PolicyFile = "policies/resilience.yaml"

// NightlyMaxDuration bounds the nightly channel's drill.
const NightlyMaxDuration = 3 * time.Minute

// MaxScenarioBytes bounds a drill file.
const MaxScenarioBytes = 64 << 10

// Fault kinds: what a drill breaks.
const (
	// LoseRegion kills every container of a region at once (SIGKILL): its
	// etcd member, its controller replica and its nodes.
	LoseRegion = "lose-region"
	// PartitionRegion cuts a region off from the others for a while: its
	// containers keep running and reach only each other.
	PartitionRegion = "partition-region"
	// KillEtcdLeader kills (SIGKILL) whichever etcd member leads when the
	// fault comes, and starts it again after a while.
	KillEtcdLeader = "kill-etcd-leader"
	// KillController kills (SIGKILL) a region's controller replica, and
	// starts it again after a while.
	KillController = "kill-controller"
	// RestoreFromBackup loses the whole control plane (every etcd member
	// and every controller replica, the nodes keep running) and restores
	// the newest backup into the spare region, whose replica the nodes
	// then reach with the credentials they hold.
	RestoreFromBackup = "restore-from-backup"
)

// FaultKinds lists every kind a drill may name.
var FaultKinds = []string{LoseRegion, PartitionRegion, KillEtcdLeader, KillController, RestoreFromBackup}

// Bounds of a drill, so that a typo cannot start an hour of containers.
const (
	MinRegions     = 3
	MaxRegions     = 5
	MaxNodes       = 8 // per region
	MaxLatency     = 200 * time.Millisecond
	MaxDuration    = 30 * time.Minute
	MinProbeEvery  = 50 * time.Millisecond
	MaxPerMinute   = 600 // any workload rate
	MinBackupEvery = 5 * time.Second
)

// Scenario is one drill, as scenarios/dr/NAME.yaml declares it.
type Scenario struct {
	File, Digest string `yaml:"-"`

	Version  int               `yaml:"version"`
	Name     string            `yaml:"name"`
	Summary  string            `yaml:"summary"`
	Duration policies.Duration `yaml:"duration"`
	Topology Topology          `yaml:"topology"`
	Workload Workload          `yaml:"workload"`
	Faults   []Fault           `yaml:"faults"`
	// Confidence, when set, measures restore confidence: backups taken at
	// random moments of the workload, each restored into the spare region
	// after the drill's faults, and checked against the acknowledged
	// writes, the nodes' credentials and the tunnels.
	Confidence *Confidence `yaml:"restore_confidence"`
	// AtScale, when set, restores a backup grown to Nodes nodes into
	// the spare region after the drill, and times it against the
	// restore target.
	AtScale *AtScale `yaml:"restore_at_scale"`
}

// AtScale is the size of the state a drill restores at scale.
type AtScale struct {
	Nodes int `yaml:"nodes"`
}

// Bounds of AtScale.Nodes.
const (
	MinScaleNodes = 1000
	MaxScaleNodes = 100000
)

// Confidence is how many backups a drill restores to measure restore
// confidence (documents/resilience/restore-confidence.md).
type Confidence struct {
	Backups int `yaml:"backups"`
}

// Bounds of Confidence.Backups: the figure's interval needs at least 20.
const (
	MinConfidenceBackups = 20
	MaxConfidenceBackups = 100
)

// Topology is the drill's regions and the path between them.
type Topology struct {
	Regions []Region `yaml:"regions"`
	// Latency is added one way on every path between two regions.
	Latency policies.Duration `yaml:"latency"`
}

// Region is one region: an etcd member, a controller replica and Nodes
// nodes. A spare region starts empty: a restore brings the control plane
// up there.
type Region struct {
	Name  policies.Str `yaml:"name"`
	Nodes int          `yaml:"nodes"`
	Spare bool         `yaml:"spare"`
}

// Workload is the load the drill runs throughout, through every live
// region's replica in turn. Every write the controller acknowledges is
// logged by the load client.
type Workload struct {
	RegistrationsPerMinute float64 `yaml:"registrations_per_minute"`
	PolicyChangesPerMinute float64 `yaml:"policy_changes_per_minute"`
	NetmapChangesPerMinute float64 `yaml:"netmap_changes_per_minute"`
	// ProbeEvery is how often every node probes every other node through
	// the tunnel.
	ProbeEvery policies.Duration `yaml:"probe_every"`
	// BackupEvery is how often a backup is taken (restore-from-backup
	// drills restore the newest).
	BackupEvery policies.Duration `yaml:"backup_every"`
}

// Fault is one fault of the drill.
type Fault struct {
	At     policies.Duration `yaml:"at"`
	Kind   policies.Str      `yaml:"kind"`
	Region policies.Str      `yaml:"region"`
	// For is how long a partition lasts, or a killed process stays down.
	For policies.Duration `yaml:"for"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
var regionRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// Parse reads and checks one drill. Every refusal names the file and, where
// the drill has one, the line.
func Parse(file string, data []byte) (*Scenario, error) {
	bad := func(line int, format string, args ...any) error {
		return &policies.Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxScenarioBytes {
		return nil, bad(0, "%d bytes, at most %d allowed", len(data), MaxScenarioBytes)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, bad(0, "the drill is empty")
	}
	var s Scenario
	if err := policies.Decode(file, data, &s); err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, bad(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	at := func(path ...any) int { return lineAt(&root, path...) }
	s.File, s.Digest = file, policies.Digest(data)
	if s.Version != 1 {
		return nil, bad(at("version"), "version %d: this build reads version 1", s.Version)
	}
	if !nameRE.MatchString(s.Name) {
		return nil, bad(at("name"), "name %q: want lower-case letters, digits and dashes", trunc(s.Name))
	}
	if base := strings.TrimSuffix(filepath.Base(file), ".yaml"); base != s.Name {
		return nil, bad(at("name"), "name %q: the file must be named %s.yaml", s.Name, s.Name)
	}
	if strings.TrimSpace(s.Summary) == "" {
		return nil, bad(at("summary"), "summary: say what the drill breaks")
	}
	if d := s.Duration.D; d <= 0 || d > MaxDuration {
		return nil, bad(s.Duration.Line, "duration: %v; want a positive duration of at most %v", d, MaxDuration)
	}

	// Topology.
	t := s.Topology
	regions := map[string]*Region{}
	live, spares := 0, 0
	for i := range t.Regions {
		r := &t.Regions[i]
		line := at("topology", "regions", i)
		switch {
		case !regionRE.MatchString(r.Name.Value):
			return nil, bad(line, "topology.regions[%d].name %q: want a lower-case letter, then up to 11 letters and digits", i, trunc(r.Name.Value))
		case regions[r.Name.Value] != nil:
			return nil, bad(r.Name.Line, "region %s is declared twice", r.Name.Value)
		case r.Spare && r.Nodes != 0:
			return nil, bad(line, "region %s: a spare region starts empty; it has no nodes", r.Name.Value)
		case !r.Spare && (r.Nodes < 1 || r.Nodes > MaxNodes):
			return nil, bad(line, "region %s: nodes %d; want 1 to %d", r.Name.Value, r.Nodes, MaxNodes)
		}
		regions[r.Name.Value] = r
		if r.Spare {
			spares++
		} else {
			live++
		}
	}
	if live < MinRegions || live > MaxRegions {
		return nil, bad(at("topology", "regions"), "topology.regions: %d regions that are not spare; want %d to %d (an etcd member in each, a majority survives the loss of one)", live, MinRegions, MaxRegions)
	}
	if spares > 1 {
		return nil, bad(at("topology", "regions"), "topology.regions: %d spare regions; want at most one", spares)
	}
	if d := t.Latency.D; d < 0 || d > MaxLatency {
		return nil, bad(t.Latency.Line, "topology.latency: %v; want 0 to %v, one way", d, MaxLatency)
	}

	// Workload.
	w := s.Workload
	for _, r := range []struct {
		name string
		v    float64
	}{{"registrations_per_minute", w.RegistrationsPerMinute}, {"policy_changes_per_minute", w.PolicyChangesPerMinute}, {"netmap_changes_per_minute", w.NetmapChangesPerMinute}} {
		if !(r.v >= 0 && r.v <= MaxPerMinute) {
			return nil, bad(at("workload", r.name), "workload.%s: %g; want 0 to %d", r.name, r.v, MaxPerMinute)
		}
	}
	if w.RegistrationsPerMinute+w.PolicyChangesPerMinute+w.NetmapChangesPerMinute == 0 {
		return nil, bad(at("workload"), "workload: no writes; a drill measures what happens to acknowledged writes")
	}
	if d := w.ProbeEvery.D; d < MinProbeEvery || d > 10*time.Second {
		return nil, bad(orLine(w.ProbeEvery.Line, at("workload")), "workload.probe_every: %v; want %v to 10s", d, MinProbeEvery)
	}
	if d := w.BackupEvery.D; d != 0 && (d < MinBackupEvery || d >= s.Duration.D) {
		return nil, bad(w.BackupEvery.Line, "workload.backup_every: %v; want %v or more, and less than the drill's duration", d, MinBackupEvery)
	}

	// Faults.
	if len(s.Faults) == 0 {
		return nil, bad(at("faults"), "faults: a drill injects at least one")
	}
	restores := 0
	for i := range s.Faults {
		f := &s.Faults[i]
		line := at("faults", i)
		if i > 0 && f.At.D < s.Faults[i-1].At.D {
			return nil, bad(f.At.Line, "faults[%d].at: %v is before the fault above it; list faults in time order", i, f.At.D)
		}
		if f.At.D <= 0 || f.At.D >= s.Duration.D {
			return nil, bad(orLine(f.At.Line, line), "faults[%d].at: %v; want a time after the start and before the end (%v)", i, f.At.D, s.Duration.D)
		}
		kind := f.Kind.Value
		if !slices.Contains(FaultKinds, kind) {
			return nil, bad(orLine(f.Kind.Line, line), "faults[%d].kind: %q; want one of %s", i, trunc(kind), strings.Join(FaultKinds, ", "))
		}
		needsRegion := kind == LoseRegion || kind == PartitionRegion || kind == KillController
		switch r := regions[f.Region.Value]; {
		case needsRegion && f.Region.Value == "":
			return nil, bad(line, "faults[%d]: %s needs a region", i, kind)
		case !needsRegion && f.Region.Value != "":
			return nil, bad(f.Region.Line, "faults[%d].region: %s takes no region", i, kind)
		case needsRegion && r == nil:
			return nil, bad(f.Region.Line, "faults[%d].region: %q is not a region of the topology", i, trunc(f.Region.Value))
		case needsRegion && r.Spare:
			return nil, bad(f.Region.Line, "faults[%d].region: %s is the spare region; nothing runs there to break", i, f.Region.Value)
		}
		switch kind {
		case PartitionRegion, KillEtcdLeader, KillController:
			if f.For.D <= 0 || f.At.D+f.For.D >= s.Duration.D {
				return nil, bad(orLine(f.For.Line, line), "faults[%d].for: %v; %s needs how long it lasts, ending before the drill does", i, f.For.D, kind)
			}
		default:
			if f.For.D != 0 {
				return nil, bad(f.For.Line, "faults[%d].for: %s is not undone; it takes no duration", i, kind)
			}
		}
		if kind == RestoreFromBackup {
			restores++
			if spares == 0 {
				return nil, bad(line, "faults[%d]: %s restores into the spare region; the topology has none", i, kind)
			}
			if w.BackupEvery.D == 0 || w.BackupEvery.D >= f.At.D {
				return nil, bad(line, "faults[%d]: %s needs a backup taken before it (workload.backup_every, under %v)", i, kind, f.At.D)
			}
		}
	}
	if restores > 1 {
		return nil, bad(at("faults"), "faults: %d restores; a drill restores at most once", restores)
	}
	if c := s.Confidence; c != nil {
		if c.Backups < MinConfidenceBackups || c.Backups > MaxConfidenceBackups {
			return nil, bad(at("restore_confidence", "backups"), "restore_confidence.backups: %d; want %d to %d", c.Backups, MinConfidenceBackups, MaxConfidenceBackups)
		}
		if spares == 0 {
			return nil, bad(at("restore_confidence"), "restore_confidence: backups are restored into the spare region; the topology has none")
		}
	}
	if a := s.AtScale; a != nil {
		if a.Nodes < MinScaleNodes || a.Nodes > MaxScaleNodes {
			return nil, bad(at("restore_at_scale", "nodes"), "restore_at_scale.nodes: %d; want %d to %d", a.Nodes, MinScaleNodes, MaxScaleNodes)
		}
		if restores == 0 {
			return nil, bad(at("restore_at_scale"), "restore_at_scale: it grows the backup a %s fault restored; this drill has none", RestoreFromBackup)
		}
	}
	if spares > 0 && restores == 0 && s.Confidence == nil {
		return nil, bad(at("topology", "regions"), "topology.regions: a spare region is for a %s fault or restore_confidence; this drill has neither", RestoreFromBackup)
	}
	return &s, nil
}

// Live returns the regions that are not spare, in the file's order.
func (s *Scenario) Live() []Region {
	var out []Region
	for _, r := range s.Topology.Regions {
		if !r.Spare {
			out = append(out, r)
		}
	}
	return out
}

// lineAt returns the line of the element at path under a document (map
// keys as strings, the line of the key; sequence indexes as ints, the line
// the element starts on), or of the deepest element found on the way; 0
// when the document is empty.
func lineAt(doc *yaml.Node, path ...any) int {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return 0
		}
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next, line = n.Content[i+1], n.Content[i].Line
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

func orLine(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// LoadAll reads every drill in root/Dir, sorted by name. A directory with
// none is an error: the gate would prove nothing.
func LoadAll(root string) ([]*Scenario, error) {
	return policies.LoadDir(root, Dir, Parse)
}
