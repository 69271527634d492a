package incident

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rustynet/rustynet/policies"
)

// Dir holds the drills, one YAML file each, relative to the repository root.
const Dir = "scenarios/incidents"

// MaxScenarioBytes bounds a drill file.
const MaxScenarioBytes = 64 << 10

// Fault kinds: what a drill breaks, each a real fault on a real mesh.
const (
	// KillController kills the controller's process (SIGKILL).
	KillController = "kill-controller"
	// DropTraffic adds iptables rules in one node's namespace that drop
	// its traffic: TCP to the controller's port, or UDP (the tunnel's).
	DropTraffic = "drop-traffic"
	// FillDisk fills the tmpfs the controller's data directory is on.
	FillDisk = "fill-disk"
	// ExpiringCertificate starts the controller on an operator's
	// certificate that expires within days.
	ExpiringCertificate = "expiring-certificate"
	// ThrottleController puts the controller's process under a CPU quota
	// (a cgroup's CFS quota, as systemd's CPUQuota= or a container's CPU
	// limit sets one) far below what its load needs.
	ThrottleController = "throttle-controller"
)

// FaultKinds lists every kind a drill may name.
var FaultKinds = []string{KillController, DropTraffic, FillDisk, ExpiringCertificate, ThrottleController}

// Where a runbook's scripted mitigation runs.
const (
	InObserver = "observer" // the host Prometheus runs in, beside the mesh
	InNode     = "node"     // the namespace of the node the fault hit
)

// Scenario is one drill, as scenarios/incidents/NAME.yaml declares it.
type Scenario struct {
	File, Digest string `yaml:"-"`

	Version int    `yaml:"version"`
	Name    string `yaml:"name"`
	Summary string `yaml:"summary"`
	Fault   Fault  `yaml:"fault"`
	// Load is a control-plane load driven through the drill (registrations
	// whose failures or slowness the SLIs see); absent for none.
	Load *Load `yaml:"load"`
	// Expect are the alerts the fault must raise, each delivered to its
	// receiver.
	Expect []Expectation `yaml:"expect"`
	// Quiet are alerts that may fire in Prometheus but must not be
	// delivered while the fault is in place (an inhibition under test);
	// after the mitigation they may follow, as a burn rate does.
	Quiet []string `yaml:"quiet"`
	// Recovered, when set, is a PromQL expression that returns a sample
	// once the fault is gone; the drill waits for it after the
	// mitigation, for alerts that stay firing by design (burn rates over
	// long windows).
	Recovered string     `yaml:"recovered"`
	Targets   Targets    `yaml:"targets"`
	Mitigate  Mitigation `yaml:"mitigation"`
}

// Fault is what a drill injects.
type Fault struct {
	Kind string `yaml:"kind"`
	// Node is the node a drop-traffic fault hits (1-based).
	Node int `yaml:"node"`
	// Traffic is what drop-traffic drops: "control" (TCP to the
	// controller's port) or "tunnel" (UDP: the tunnel's transport).
	Traffic string `yaml:"traffic"`
	// DiskBytes is the tmpfs fill-disk fills.
	DiskBytes int64 `yaml:"disk_bytes"`
	// ExpiresIn is how long the expiring certificate has left.
	ExpiresIn policies.Duration `yaml:"expires_in"`
	// CPUPercent is throttle-controller's quota, in percent of one CPU.
	CPUPercent float64 `yaml:"cpu_percent"`
}

// Load is a paced control-plane load (internal/meshload).
type Load struct {
	RegistrationsPerMinute float64 `yaml:"registrations_per_minute"`
	RemovalsPerMinute      float64 `yaml:"removals_per_minute"`
}

// Expectation is one alert a drill must raise.
type Expectation struct {
	Alert    string `yaml:"alert"`
	Receiver string `yaml:"receiver"`
	// Resolves says the alert must resolve (and its resolution be
	// delivered) after the mitigation. A burn-rate alert stays firing
	// while its long window holds the outage; it sets false, and the
	// drill's Recovered expression shows the fault gone instead.
	Resolves bool   `yaml:"resolves"`
	Why      string `yaml:"why_not_resolved"`
}

// Targets are the drill's timing targets, from injection.
type Targets struct {
	// Detect: injected until every expected alert is delivered.
	Detect policies.Duration `yaml:"detect"`
	// Mitigate: delivered until the mitigation script has succeeded.
	Mitigate policies.Duration `yaml:"mitigate"`
	// Resolve: mitigated until every resolving alert's resolution is
	// delivered and the Recovered expression holds.
	Resolve policies.Duration `yaml:"resolve"`
}

// Mitigation names the runbook whose scripted mitigation (its ```sh
// block) ends the fault, and where it runs.
type Mitigation struct {
	Runbook string `yaml:"runbook"`
	In      string `yaml:"in"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
var alertRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
var receiverRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// maxTarget bounds each timing target: a drill is minutes, not hours.
const maxTarget = 15 * time.Minute

// Parse reads and checks one drill. Every refusal names the file and, where
// it can, the line and field.
func Parse(file string, data []byte) (*Scenario, error) {
	bad := func(line int, format string, args ...any) error {
		return &policies.Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxScenarioBytes {
		return nil, bad(0, "%d bytes, at most %d allowed", len(data), MaxScenarioBytes)
	}
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, bad(0, "the drill is empty")
		}
		var pe *policies.Error
		if errors.As(err, &pe) {
			return nil, bad(pe.Line, "%s", pe.Msg)
		}
		return nil, bad(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, bad(0, "more than one YAML document")
	}
	s.File = file
	s.Digest = policies.Digest(data)
	if s.Version != 1 {
		return nil, bad(0, "version %d: this build reads version 1", s.Version)
	}
	if !nameRE.MatchString(s.Name) {
		return nil, bad(0, "name %q: want lower-case letters, digits and dashes", trunc(s.Name))
	}
	if base := strings.TrimSuffix(filepath.Base(file), ".yaml"); base != s.Name {
		return nil, bad(0, "name %q: the file must be named %s.yaml", s.Name, s.Name)
	}
	if strings.TrimSpace(s.Summary) == "" {
		return nil, bad(0, "summary: say what the drill breaks")
	}
	f := s.Fault
	switch f.Kind {
	case KillController:
	case DropTraffic:
		if f.Node < 1 || f.Node > 2 {
			return nil, bad(0, "fault.node: %d; the drill's mesh has nodes 1 and 2", f.Node)
		}
		if f.Traffic != "control" && f.Traffic != "tunnel" {
			return nil, bad(0, "fault.traffic: %q; want control or tunnel", trunc(f.Traffic))
		}
	case FillDisk:
		if f.DiskBytes < 8<<20 || f.DiskBytes > 1<<30 {
			return nil, bad(0, "fault.disk_bytes: %d; want 8 MiB to 1 GiB", f.DiskBytes)
		}
	case ExpiringCertificate:
		if f.ExpiresIn.D < time.Hour || f.ExpiresIn.D > 13*24*time.Hour {
			return nil, bad(f.ExpiresIn.Line, "fault.expires_in: %v; want an hour to 13 days (the alert fires under 14)", f.ExpiresIn.D)
		}
	case ThrottleController:
		if !(f.CPUPercent >= 1 && f.CPUPercent <= 50) {
			return nil, bad(0, "fault.cpu_percent: %g; want 1 to 50 (percent of one CPU; the kernel's smallest quota is 1 ms of its 100 ms period)", f.CPUPercent)
		}
	default:
		return nil, bad(0, "fault.kind: %q; want one of %s", trunc(f.Kind), strings.Join(FaultKinds, ", "))
	}
	if f.Kind != DropTraffic && (f.Node != 0 || f.Traffic != "") {
		return nil, bad(0, "fault.node and fault.traffic are for %s only", DropTraffic)
	}
	if f.Kind != FillDisk && f.DiskBytes != 0 {
		return nil, bad(0, "fault.disk_bytes is for %s only", FillDisk)
	}
	if f.Kind != ExpiringCertificate && f.ExpiresIn.D != 0 {
		return nil, bad(f.ExpiresIn.Line, "fault.expires_in is for %s only", ExpiringCertificate)
	}
	if f.Kind != ThrottleController && f.CPUPercent != 0 {
		return nil, bad(0, "fault.cpu_percent is for %s only", ThrottleController)
	}
	if l := s.Load; l != nil {
		if l.RegistrationsPerMinute <= 0 || l.RegistrationsPerMinute > 600 {
			return nil, bad(0, "load.registrations_per_minute: %g; want more than 0, at most 600", l.RegistrationsPerMinute)
		}
		if l.RemovalsPerMinute < 0 || l.RemovalsPerMinute > l.RegistrationsPerMinute {
			return nil, bad(0, "load.removals_per_minute: %g; want 0 to registrations_per_minute", l.RemovalsPerMinute)
		}
	}
	if len(s.Expect) == 0 {
		return nil, bad(0, "expect: a drill must expect at least one alert")
	}
	seen := map[string]bool{}
	resolving := false
	for i, e := range s.Expect {
		switch {
		case !alertRE.MatchString(e.Alert):
			return nil, bad(0, "expect[%d].alert: %q is not an alert name", i, trunc(e.Alert))
		case seen[e.Alert]:
			return nil, bad(0, "expect[%d].alert: %s expected twice", i, e.Alert)
		case !receiverRE.MatchString(e.Receiver):
			return nil, bad(0, "expect[%d].receiver: %q is not a receiver name", i, trunc(e.Receiver))
		case !e.Resolves && strings.TrimSpace(e.Why) == "":
			return nil, bad(0, "expect[%d]: an alert that does not resolve says why (why_not_resolved)", i)
		case e.Resolves && e.Why != "":
			return nil, bad(0, "expect[%d]: why_not_resolved on an alert that resolves", i)
		}
		seen[e.Alert] = true
		resolving = resolving || e.Resolves
	}
	if !resolving && s.Recovered == "" {
		return nil, bad(0, "recovered: no expected alert resolves, so the drill needs an expression that shows the fault gone")
	}
	for i, q := range s.Quiet {
		if !alertRE.MatchString(q) || seen[q] {
			return nil, bad(0, "quiet[%d]: %q is not an alert name, or is also expected", i, trunc(q))
		}
	}
	for _, t := range []struct {
		name string
		d    policies.Duration
	}{{"detect", s.Targets.Detect}, {"mitigate", s.Targets.Mitigate}, {"resolve", s.Targets.Resolve}} {
		if t.d.D <= 0 || t.d.D > maxTarget {
			return nil, bad(t.d.Line, "targets.%s: %v; want a positive duration of at most %v", t.name, t.d.D, maxTarget)
		}
	}
	if !alertRE.MatchString(s.Mitigate.Runbook) {
		return nil, bad(0, "mitigation.runbook: %q; name the runbook (its alert's name)", trunc(s.Mitigate.Runbook))
	}
	if s.Mitigate.In != InObserver && s.Mitigate.In != InNode {
		return nil, bad(0, "mitigation.in: %q; want %s or %s", trunc(s.Mitigate.In), InObserver, InNode)
	}
	if s.Mitigate.In == InNode && f.Kind != DropTraffic {
		return nil, bad(0, "mitigation.in: node is for a fault that hits a node (%s)", DropTraffic)
	}
	return &s, nil
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

// Coverage holds the drills to the rules: every alert a drill names
// exists, with a runbook that has a scripted mitigation where the drill
// runs one, every expected alert's receiver is the one Alertmanager's
// routing gives it (route: alert name to receiver), and every paging alert
// is expected by some drill. It returns every problem.
func Coverage(drills []*Scenario, alerts []AlertInfo, route map[string]string, runbookScript func(alert string) string) []string {
	byName := map[string]AlertInfo{}
	for _, a := range alerts {
		byName[a.Name] = a
	}
	var problems []string
	drilled := map[string]bool{}
	for _, d := range drills {
		for _, e := range d.Expect {
			a, ok := byName[e.Alert]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: expects alert %s, which no rule file defines", d.File, e.Alert))
				continue
			}
			drilled[a.Name] = true
			if want := route[a.Name]; e.Receiver != want {
				problems = append(problems, fmt.Sprintf("%s: expects %s at %s, but its severity routes it to %s", d.File, e.Alert, e.Receiver, want))
			}
		}
		for _, q := range d.Quiet {
			if _, ok := byName[q]; !ok {
				problems = append(problems, fmt.Sprintf("%s: quiet alert %s, which no rule file defines", d.File, q))
			}
		}
		if _, ok := byName[d.Mitigate.Runbook]; !ok {
			problems = append(problems, fmt.Sprintf("%s: mitigation runbook %s is no alert's", d.File, d.Mitigate.Runbook))
		} else if runbookScript(d.Mitigate.Runbook) == "" {
			problems = append(problems, fmt.Sprintf("%s: runbook %s has no scripted mitigation (a ```sh block under Mitigation)", d.File, d.Mitigate.Runbook))
		}
	}
	for _, a := range alerts {
		if slices.Contains(a.Severities, "page") && !drilled[a.Name] {
			problems = append(problems, fmt.Sprintf("paging alert %s has no drill in %s: every alert that wakes someone is rehearsed", a.Name, Dir))
		}
	}
	sort.Strings(problems)
	return problems
}

// AlertInfo is what coverage needs of an alert.
type AlertInfo struct {
	Name       string
	Severities []string
}
