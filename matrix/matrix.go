// Package matrix is the release benchmark matrix: YAML files in this
// directory describe suites of measurements, each a kind (throughput,
// handshake, reconnect, route-apply, netmap-propagation) and axes whose
// product gives the cells; Run measures each cell on the namespace testbed
// with repetitions and spread. A cell's name carries its parameters
// (throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk), and the
// collected cells are golden-tested.
package matrix

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kinds of measurement and the axes each takes.
var Kinds = map[string][]string{
	"throughput":         {"backend", "mtu", "peers", "traffic"},
	"handshake":          {"backend"},
	"reconnect":          {"backend"},
	"route-apply":        {"routes"},
	"netmap-propagation": {"nodes", "store"},
}

// Optional axes and their defaults: a suite may leave one out, and a cell
// at the default value is named without it (netmap-propagation/nodes=1000
// is the controller on bbolt, as it was before the store axis).
var optionalAxes = map[string]string{"store": "bolt"}

// Values an axis may take (numbers are checked for range instead).
var axisValues = map[string][]string{
	"backend": {"wireguard", "quic"},
	"traffic": {"tcp-bulk", "udp-small", "request-response"},
	// bolt: one controller on its bbolt file; etcd3: 3 controller
	// replicas over a 3-member etcd cluster (fsync on).
	"store": {"bolt", "etcd3"},
}

var numRange = map[string][2]int{
	"mtu":    {1280, 9000},
	"peers":  {2, 16},
	"routes": {1, 10000},
	"nodes":  {2, 20000},
}

// File is one matrix file.
type File struct {
	Version     int    `yaml:"version"`
	Name        string `yaml:"name"`
	Repetitions int    `yaml:"repetitions"`
	// PairedRounds, when set, runs the cells of PairedKinds in that many
	// rounds alternating a baseline's binaries with the candidate's
	// (RunPaired); each round takes Repetitions/PairedRounds repetitions
	// (at least one) on either side.
	PairedRounds int     `yaml:"paired_rounds"`
	Suites       []Suite `yaml:"suites"`
}

// Suite is one kind of measurement over the product of its axes.
type Suite struct {
	Kind string `yaml:"kind"`
	// Duration of each timed run (throughput).
	Duration string              `yaml:"duration"`
	Axes     map[string][]string `yaml:"axes"`
	// Repetitions overrides the file's, up to MaxSuiteRepetitions.
	Repetitions int `yaml:"repetitions"`
}

// MaxSuiteRepetitions bounds a suite's repetitions. It is higher than a
// file's (100) for the cells that judge a 99th percentile: of 100 values
// the nearest-rank p99 is the second slowest, so two stalls of the
// machine anywhere in the cell decide it; of 1,000 it is the tenth.
const MaxSuiteRepetitions = 1000

// Cell is one point of the matrix.
type Cell struct {
	Kind        string
	Params      map[string]string
	Repetitions int
	Duration    time.Duration
}

// Name is the cell's name: kind, then key=value for every axis in the
// kind's order.
func (c Cell) Name() string {
	var b strings.Builder
	b.WriteString(c.Kind)
	for _, a := range Kinds[c.Kind] {
		if v, ok := c.Params[a]; ok {
			fmt.Fprintf(&b, "/%s=%s", a, v)
		}
	}
	return b.String()
}

// Error is a refused matrix file.
type Error struct {
	File string
	Msg  string
}

func (e *Error) Error() string { return e.File + ": " + e.Msg }

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Parse reads and checks a matrix file and expands its cells.
func Parse(file string, data []byte) (*File, []Cell, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, &Error{file, "empty"}
		}
		return nil, nil, &Error{file, strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if f.Version != 1 {
		return nil, nil, &Error{file, fmt.Sprintf("version %d: this build reads version 1", f.Version)}
	}
	if !nameRE.MatchString(f.Name) {
		return nil, nil, &Error{file, fmt.Sprintf("name %q: want a lowercase name", f.Name)}
	}
	if f.Repetitions < 1 || f.Repetitions > 100 {
		return nil, nil, &Error{file, fmt.Sprintf("repetitions %d: want 1 to 100", f.Repetitions)}
	}
	if f.PairedRounds < 0 || f.PairedRounds > 20 {
		return nil, nil, &Error{file, fmt.Sprintf("paired_rounds %d: want 0 (no pairing) to 20", f.PairedRounds)}
	}
	var cells []Cell
	seen := map[string]bool{}
	for i, s := range f.Suites {
		axes, ok := Kinds[s.Kind]
		if !ok {
			return nil, nil, &Error{file, fmt.Sprintf("suite %d: kind %q: want one of %v", i+1, s.Kind, kindNames())}
		}
		reps := f.Repetitions
		if s.Repetitions != 0 {
			if s.Repetitions < 1 || s.Repetitions > MaxSuiteRepetitions {
				return nil, nil, &Error{file, fmt.Sprintf("suite %d: repetitions %d: want 1 to %d (or none, for the file's)", i+1, s.Repetitions, MaxSuiteRepetitions)}
			}
			reps = s.Repetitions
		}
		var dur time.Duration
		if s.Duration != "" {
			d, err := time.ParseDuration(s.Duration)
			if err != nil || d < time.Second || d > time.Hour {
				return nil, nil, &Error{file, fmt.Sprintf("suite %d: duration %q: want 1s to 1h", i+1, s.Duration)}
			}
			dur = d
		} else if s.Kind == "throughput" {
			return nil, nil, &Error{file, fmt.Sprintf("suite %d: throughput needs a duration", i+1)}
		}
		for a, vs := range s.Axes {
			if !slices.Contains(axes, a) {
				return nil, nil, &Error{file, fmt.Sprintf("suite %d (%s): axis %q: this kind takes %v", i+1, s.Kind, a, axes)}
			}
			if len(vs) == 0 {
				return nil, nil, &Error{file, fmt.Sprintf("suite %d: axis %s has no values", i+1, a)}
			}
			for _, v := range vs {
				if err := checkValue(a, v); err != nil {
					return nil, nil, &Error{file, fmt.Sprintf("suite %d: %v", i+1, err)}
				}
			}
		}
		for _, a := range axes {
			if _, optional := optionalAxes[a]; optional {
				continue
			}
			if _, ok := s.Axes[a]; !ok {
				return nil, nil, &Error{file, fmt.Sprintf("suite %d (%s): axis %s is missing", i+1, s.Kind, a)}
			}
		}
		for _, params := range product(axes, s.Axes) {
			c := Cell{Kind: s.Kind, Params: params, Repetitions: reps, Duration: dur}
			if seen[c.Name()] {
				return nil, nil, &Error{file, fmt.Sprintf("cell %s appears twice", c.Name())}
			}
			seen[c.Name()] = true
			cells = append(cells, c)
		}
	}
	if len(cells) == 0 {
		return nil, nil, &Error{file, "no cells"}
	}
	return &f, cells, nil
}

// Load reads a matrix file.
func Load(path string) (*File, []Cell, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(path, data)
}

func kindNames() []string {
	out := make([]string, 0, len(Kinds))
	for k := range Kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkValue(axis, v string) error {
	if allowed, ok := axisValues[axis]; ok {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("axis %s: value %q: want one of %v", axis, v, allowed)
		}
		return nil
	}
	r := numRange[axis]
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v || n < r[0] || n > r[1] {
		return fmt.Errorf("axis %s: value %q: want a number from %d to %d", axis, v, r[0], r[1])
	}
	return nil
}

// product expands axes (in order) into every combination.
// An optional axis left out, or at its default, is not among a cell's
// parameters.
func product(order []string, axes map[string][]string) []map[string]string {
	out := []map[string]string{{}}
	for _, a := range order {
		vs, ok := axes[a]
		if !ok {
			continue // an optional axis left out
		}
		var next []map[string]string
		for _, partial := range out {
			for _, v := range vs {
				m := map[string]string{}
				for k, x := range partial {
					m[k] = x
				}
				if d, optional := optionalAxes[a]; !optional || v != d {
					m[a] = v
				}
				next = append(next, m)
			}
		}
		out = next
	}
	return out
}

// Param is the cell's value of axis a, or the axis's default.
func (c Cell) Param(a string) string {
	if v, ok := c.Params[a]; ok {
		return v
	}
	return optionalAxes[a]
}
