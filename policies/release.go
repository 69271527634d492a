package policies

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Release is release.yaml: which gates each channel requires, and the
// waivers in force.
type Release struct {
	Version  int                `yaml:"version"`
	Channels map[string]Channel `yaml:"channels"`
	Waivers  []Waiver           `yaml:"waivers"`

	// File and Digest identify the policy as loaded.
	File   string `yaml:"-"`
	Digest string `yaml:"-"`
	Raw    []byte `yaml:"-"`
}

// Channel is a release channel: nightly, beta or ga.
type Channel struct {
	Description string `yaml:"description"`
	Gates       []Str  `yaml:"gates"`
}

// Waiver lets a channel pass although a gate did not, until it expires.
type Waiver struct {
	Gate     Str   `yaml:"gate"`
	Channels []Str `yaml:"channels"` // empty: every channel
	Owner    Str   `yaml:"owner"`
	Reason   Str   `yaml:"reason"`
	Ticket   Str   `yaml:"ticket"`
	Expires  Time  `yaml:"expires"`
	Line     int   `yaml:"-"`
}

// The release channels, from the least to the most demanding. This is
// the one list of them: the gates, the budgets and the soak floors use
// these.
const (
	Nightly = "nightly"
	Beta    = "beta"
	GA      = "ga"
)

// Channels lists the channels a release policy may define, in order.
var Channels = []string{Nightly, Beta, GA}

var knownChannels = Channels

// ParseRelease decodes and checks release.yaml. known reports whether a
// gate name is registered; every gate named must be.
func ParseRelease(file string, data []byte, known func(string) bool) (*Release, error) {
	var r Release
	if err := decode(file, data, &r); err != nil {
		return nil, err
	}
	r.File, r.Digest, r.Raw = file, Digest(data), data
	if r.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", r.Version)}
	}
	if len(r.Channels) == 0 {
		return nil, &Error{File: file, Line: 1, Msg: "no channels"}
	}
	for _, name := range r.ChannelNames() {
		if !slices.Contains(knownChannels, name) {
			return nil, &Error{File: file, Msg: fmt.Sprintf("channel %q: want one of %v", trunc(name), knownChannels)}
		}
		ch := r.Channels[name]
		if len(ch.Gates) == 0 {
			return nil, &Error{File: file, Msg: fmt.Sprintf("channel %s requires no gate", name)}
		}
		seen := map[string]bool{}
		for _, g := range ch.Gates {
			if !nameRE.MatchString(g.Value) {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("gate %q: not a gate name", trunc(g.Value))}
			}
			if known != nil && !known(g.Value) {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("channel %s names gate %q, which is not registered", name, g.Value)}
			}
			if seen[g.Value] {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("channel %s names gate %s twice", name, g.Value)}
			}
			seen[g.Value] = true
		}
	}
	for _, w := range r.Waivers {
		line := w.Gate.Line
		if w.Gate.Value == "" {
			return nil, &Error{File: file, Line: line, Msg: "waiver names no gate"}
		}
		if known != nil && !known(w.Gate.Value) {
			return nil, &Error{File: file, Line: line, Msg: fmt.Sprintf("waiver for gate %q, which is not registered", w.Gate.Value)}
		}
		for _, c := range w.Channels {
			if _, ok := r.Channels[c.Value]; !ok {
				return nil, &Error{File: file, Line: c.Line, Msg: fmt.Sprintf("waiver names channel %q, which the policy does not define", c.Value)}
			}
		}
		if err := checkOwned(file, line, w.Owner, w.Reason, w.Expires); err != nil {
			return nil, err
		}
		if w.Ticket.Value == "" {
			return nil, &Error{File: file, Line: line, Msg: "waiver has no ticket"}
		}
	}
	return &r, nil
}

// LoadRelease reads and checks a release policy file.
func LoadRelease(path string, known func(string) bool) (*Release, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseRelease(path, data, known)
}

// ChannelNames lists the channels, sorted.
func (r *Release) ChannelNames() []string {
	names := make([]string, 0, len(r.Channels))
	for n := range r.Channels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Gates lists the gates a channel requires, or an error naming the
// channels there are.
func (r *Release) Gates(channel string) ([]string, error) {
	ch, ok := r.Channels[channel]
	if !ok {
		return nil, fmt.Errorf("channel %q: the policy defines %v", channel, r.ChannelNames())
	}
	out := make([]string, len(ch.Gates))
	for i, g := range ch.Gates {
		out[i] = g.Value
	}
	return out, nil
}

// CheckHorizon refuses a policy with a waiver that expires more than
// MaxHorizon after now. The runner checks it at the start of a run, and
// verify against the time the bundle was made.
func (r *Release) CheckHorizon(now time.Time) error {
	for _, w := range r.Waivers {
		if err := checkHorizon(r.File, "the waiver for gate "+w.Gate.Value, w.Expires, now); err != nil {
			return err
		}
	}
	return nil
}

// Waiver returns the waiver for gate on channel in force at t, if any, and
// any that matched but had expired (an expired waiver blocks, and says so).
func (r *Release) Waiver(gate, channel string, t time.Time) (active, expired *Waiver) {
	for i := range r.Waivers {
		w := &r.Waivers[i]
		if w.Gate.Value != gate {
			continue
		}
		if len(w.Channels) > 0 && !slices.ContainsFunc(w.Channels, func(c Str) bool { return c.Value == channel }) {
			continue
		}
		if t.Before(w.Expires.Time) {
			return w, nil
		}
		expired = w
	}
	return nil, expired
}
