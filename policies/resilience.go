package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Resilience is policies/resilience.yaml: which disaster-recovery drills
// (scenarios/dr/) each channel runs, and the recovery targets each drill
// is held to on each channel. The dr gate blocks on a missed target.
type Resilience struct {
	File, Digest string
	Version      int `yaml:"version"`
	// Channels maps a channel to the drills it runs, by name.
	Channels map[string][]Str `yaml:"channels"`
	Targets  []DRTarget       `yaml:"targets"`
}

// DRTarget is the targets of one drill on some channels. An unset target
// is not judged; at least one is set.
type DRTarget struct {
	Drill    Str   `yaml:"drill"`
	Channels []Str `yaml:"channels"`
	// ControlPlaneRTO: from the fault to the first write accepted through
	// a surviving region.
	ControlPlaneRTO *Duration `yaml:"control_plane_rto"`
	// PropagationRTO: from the fault to the moment a change made after it
	// has reached every surviving node.
	PropagationRTO *Duration `yaml:"propagation_rto"`
	// MaxProbeGap: the longest gap in answered probes between two nodes
	// outside the failed region, beyond the probe interval (the data
	// plane's interruption).
	MaxProbeGap *Duration `yaml:"max_probe_gap"`
	// MaxLostProbes: probes between two nodes outside the failed region
	// that went unanswered (0: the data plane never dropped one).
	MaxLostProbes *int `yaml:"max_lost_probes"`
	// MaxLostWrites: acknowledged writes missing after the drill (the RPO
	// in writes).
	MaxLostWrites *int `yaml:"max_lost_writes"`
	// MaxBackupAge: the age of the backup a restore used (the RPO in time).
	MaxBackupAge *Duration `yaml:"max_backup_age"`
	// TimeToRestore: from the restore's start to the first write accepted
	// by the restored control plane.
	TimeToRestore *Duration `yaml:"time_to_restore"`
	// MinRestoreConfidence: the restore-confidence figure, 0 to 1
	// (documents/resilience/restore-confidence.md): the fraction of the
	// restores that brought back every acknowledged record, every node on
	// its own credentials and every tunnel. Its interval is reported.
	MinRestoreConfidence *float64 `yaml:"min_restore_confidence"`
	// Basis says where the targets come from.
	Basis Str `yaml:"basis"`
}

// ParseResilience reads and checks a resilience policy. drills are the
// names of the drills in scenarios/dr/: every name the policy uses must be
// one, and every drill must be run by some channel.
func ParseResilience(file string, data []byte, drills []string) (*Resilience, error) {
	var p Resilience
	if err := decode(file, data, &p); err != nil {
		return nil, err
	}
	p.File, p.Digest = file, Digest(data)
	bad := func(line int, format string, args ...any) error {
		return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if p.Version != 1 {
		return nil, bad(1, "version %d: this build reads version 1", p.Version)
	}
	known := func(s Str, where string) error {
		if !slices.Contains(drills, s.Value) {
			return bad(s.Line, "%s: %q is not a drill in scenarios/dr (%s)", where, trunc(s.Value), strings.Join(drills, ", "))
		}
		return nil
	}
	run := map[string]bool{}
	for ch, ds := range p.Channels {
		if !isChannel(ch) {
			return nil, bad(0, "channels: %q is not a channel (%s)", trunc(ch), strings.Join(knownChannels, ", "))
		}
		seen := map[string]bool{}
		for _, d := range ds {
			if err := known(d, "channels."+ch); err != nil {
				return nil, err
			}
			if seen[d.Value] {
				return nil, bad(d.Line, "channels.%s: %s is listed twice", ch, d.Value)
			}
			seen[d.Value] = true
			run[d.Value] = true
		}
	}
	for _, ch := range knownChannels {
		if len(p.Channels[ch]) == 0 {
			return nil, bad(0, "channels: %s runs no drill; every channel requires dr", ch)
		}
	}
	for _, d := range drills {
		if !run[d] {
			return nil, bad(0, "channels: no channel runs the drill %s", d)
		}
	}
	judged := map[string]bool{} // drill/channel
	for i, t := range p.Targets {
		if err := known(t.Drill, fmt.Sprintf("targets[%d].drill", i)); err != nil {
			return nil, err
		}
		if strings.TrimSpace(t.Basis.Value) == "" {
			return nil, bad(t.Drill.Line, "targets[%d] (%s): basis: say where the targets come from", i, t.Drill.Value)
		}
		if len(t.Channels) == 0 {
			return nil, bad(t.Drill.Line, "targets[%d] (%s): channels: name the channels these targets hold on", i, t.Drill.Value)
		}
		for _, ch := range t.Channels {
			if !isChannel(ch.Value) {
				return nil, bad(ch.Line, "targets[%d].channels: %q is not a channel", i, trunc(ch.Value))
			}
			if !slices.ContainsFunc(p.Channels[ch.Value], func(s Str) bool { return s.Value == t.Drill.Value }) {
				return nil, bad(ch.Line, "targets[%d]: channel %s does not run %s", i, ch.Value, t.Drill.Value)
			}
			k := t.Drill.Value + "/" + ch.Value
			if judged[k] {
				return nil, bad(ch.Line, "targets[%d]: %s already has targets on %s", i, t.Drill.Value, ch.Value)
			}
			judged[k] = true
		}
		set := 0
		for _, d := range []struct {
			name string
			v    *Duration
			max  time.Duration
		}{{"control_plane_rto", t.ControlPlaneRTO, 10 * time.Minute}, {"propagation_rto", t.PropagationRTO, 10 * time.Minute},
			{"max_probe_gap", t.MaxProbeGap, 10 * time.Minute}, {"max_backup_age", t.MaxBackupAge, 24 * time.Hour}, {"time_to_restore", t.TimeToRestore, time.Hour}} {
			if d.v == nil {
				continue
			}
			set++
			if d.v.D < 0 || d.v.D > d.max {
				return nil, bad(d.v.Line, "targets[%d].%s: %v; want 0 to %v", i, d.name, d.v.D, d.max)
			}
		}
		for _, c := range []struct {
			name string
			v    *int
		}{{"max_lost_writes", t.MaxLostWrites}, {"max_lost_probes", t.MaxLostProbes}} {
			if c.v == nil {
				continue
			}
			set++
			if *c.v < 0 {
				return nil, bad(t.Drill.Line, "targets[%d].%s: %d; want 0 or more", i, c.name, *c.v)
			}
		}
		if c := t.MinRestoreConfidence; c != nil {
			set++
			if !(*c > 0 && *c <= 1) {
				return nil, bad(t.Drill.Line, "targets[%d].min_restore_confidence: %g; want more than 0, at most 1", i, *c)
			}
		}
		if set == 0 {
			return nil, bad(t.Drill.Line, "targets[%d] (%s): no target set", i, t.Drill.Value)
		}
	}
	for ch, ds := range p.Channels {
		for _, d := range ds {
			if !judged[d.Value+"/"+ch] {
				return nil, bad(d.Line, "channels.%s: %s has no targets on %s; a drill that is run is judged", ch, d.Value, ch)
			}
		}
	}
	return &p, nil
}

// LoadResilience reads and checks a resilience policy file.
func LoadResilience(path string, drills []string) (*Resilience, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseResilience(path, data, drills)
}

// Drills returns the drills a channel runs, in the policy's order.
func (p *Resilience) Drills(channel string) []string {
	var out []string
	for _, d := range p.Channels[channel] {
		out = append(out, d.Value)
	}
	return out
}

// Target returns a drill's targets on a channel, or nil.
func (p *Resilience) Target(drill, channel string) *DRTarget {
	for i, t := range p.Targets {
		if t.Drill.Value == drill && slices.ContainsFunc(t.Channels, func(s Str) bool { return s.Value == channel }) {
			return &p.Targets[i]
		}
	}
	return nil
}
