// Package gates is the release gate engine: a registry of gate specs in the
// manner of roachtest's TestSpec (name, owner, timeout, the channels that
// require it, what it needs from the machine, and Run), a runner that
// executes the gates a policy asks for and writes a signed evidence
// bundle, and Evaluate, which computes a verdict from gate statuses and
// the release policy (for the runner, and again for verify, which never
// trusts a stored verdict).
//
// Gates register explicitly (each gate package has a Register(*Registry)),
// and specs are validated when registered, before anything runs.
package gates

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// Need is something a gate needs from the machine.
type Need string

// Needs a gate may declare.
const (
	NeedRoot       Need = "root"       // namespaces, TUN devices, routes
	NeedDocker     Need = "docker"     // a Docker engine
	NeedPrometheus Need = "prometheus" // the prometheus, promtool and prometheus-alertmanager binaries
	NeedIperf3     Need = "iperf3"
	NeedWG         Need = "wg" // wireguard-tools
	NeedGo         Need = "go" // the Go toolchain
)

var knownNeeds = []Need{NeedRoot, NeedDocker, NeedPrometheus, NeedIperf3, NeedWG, NeedGo}

// Owners gates may name: the team that answers when a gate fails.
var Owners = []string{"release-eng", "control-plane", "data-plane", "security", "sre"}

// Channels a gate may be required by: the release channels
// (policies.Channels).
var Channels = policies.Channels

// MaxTimeout caps a gate's timeout: the GA soak runs 24 hours.
const MaxTimeout = 26 * time.Hour

// Spec describes a gate.
type Spec struct {
	// Name is lowercase words joined by dashes; parameters go in the name
	// after slashes (perf-budget/backend=quic).
	Name    string
	Owner   string
	Timeout time.Duration
	// Channels lists the channels that require the gate by default (the
	// release policy decides; a spec's list is checked against it).
	Channels []string
	Needs    []Need
	// Run does the work. It returns nil when the gate passes, a *Failure
	// when it ran and the release is not fit (the gate failed), and any
	// other error when it could not do its work.
	Run func(ctx context.Context, r *Run) error
	// Concurrent marks a gate whose load is light and steady and whose
	// checks a light neighbour cannot tip (no tight throughput or latency
	// figure): consecutive Concurrent gates of a channel run at the same
	// time. A gate that measures speed (perf-budget, conformance) never is.
	Concurrent bool
	// Recheck, if set, is what verify checks of a signed pass from the
	// evidence the gate signed (its measurements, details and
	// artifacts), so that a pass the evidence does not bear out blocks
	// even if a runner signed it. An error says why it does not hold.
	Recheck func(st *evidence.GateStatement, channel string) error
	// Fields lists the top-level keys of the details the gate signs (its
	// r.Details): what a launch checklist item may name as the evidence
	// that proves it (policies/launch-checklist.yaml, details.KEY).
	Fields []string
}

// FieldsOf lists the JSON names of a details struct's fields, for
// Spec.Fields: the keys the gate's signed details hold.
func FieldsOf(details any) []string {
	t := reflect.TypeOf(details)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// Failure is a gate that ran and found the release not fit.
type Failure struct{ Reason string }

func (f *Failure) Error() string { return f.Reason }

// Fail returns a *Failure.
func Fail(format string, a ...any) error { return &Failure{Reason: fmt.Sprintf(format, a...)} }

var specNameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*(/[a-z0-9]+=[a-z0-9.-]+)*$`)

// Validate checks a spec.
func (s *Spec) Validate() error {
	switch {
	case !specNameRE.MatchString(s.Name):
		return fmt.Errorf("gate name %q: want lowercase words joined by dashes, then /key=value parameters", s.Name)
	case !slices.Contains(Owners, s.Owner):
		return fmt.Errorf("gate %s: owner %q is not one of %v", s.Name, s.Owner, Owners)
	case s.Timeout <= 0 || s.Timeout > MaxTimeout:
		return fmt.Errorf("gate %s: timeout %v: want more than 0 and at most %v", s.Name, s.Timeout, MaxTimeout)
	case s.Run == nil:
		return fmt.Errorf("gate %s: no Run", s.Name)
	}
	for _, c := range s.Channels {
		if !slices.Contains(Channels, c) {
			return fmt.Errorf("gate %s: channel %q is not one of %v", s.Name, c, Channels)
		}
	}
	for _, n := range s.Needs {
		if !slices.Contains(knownNeeds, n) {
			return fmt.Errorf("gate %s: need %q is not one of %v", s.Name, n, knownNeeds)
		}
	}
	return nil
}

// Registry holds gate specs. The zero value is empty and ready to use.
type Registry struct {
	specs map[string]Spec
}

// Register validates and adds a spec. It panics on an invalid or duplicate
// spec: registration happens before anything runs, and a bad spec is a
// programming error.
func (r *Registry) Register(s Spec) {
	if err := s.Validate(); err != nil {
		panic("gates: " + err.Error())
	}
	if _, dup := r.specs[s.Name]; dup {
		panic(fmt.Sprintf("gates: %s registered twice", s.Name))
	}
	if r.specs == nil {
		r.specs = map[string]Spec{}
	}
	r.specs[s.Name] = s
}

// Get returns the spec registered as name.
func (r *Registry) Get(name string) (Spec, bool) {
	s, ok := r.specs[name]
	return s, ok
}

// Has reports whether name is registered.
func (r *Registry) Has(name string) bool {
	_, ok := r.specs[name]
	return ok
}

// EvidenceFields says whether a gate is registered and which detail keys
// its evidence holds: what a launch checklist may name.
func (r *Registry) EvidenceFields(name string) ([]string, bool) {
	s, ok := r.specs[name]
	return s.Fields, ok
}

// Names lists the registered gates, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.specs))
	for n := range r.specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownGate is returned for a gate name not in the registry.
var ErrUnknownGate = errors.New("unknown gate")

// ErrDirtyTree is returned for a beta or GA run of a tree with
// uncommitted changes.
var ErrDirtyTree = errors.New("dirty tree")
