package policies

import (
	"fmt"
	"slices"
	"strings"
)

// PQ is policies/pq.yaml: the post-quantum experiment the pq-readiness gate
// runs, the decision gates G0 to G4 it decides from its evidence, and which
// of them block which channel.
type PQ struct {
	File, Digest string
	Version      int              `yaml:"version"`
	Experiment   PQExperiment     `yaml:"experiment"`
	Gates        []DecisionGate   `yaml:"decision_gates"`
	Channels     map[string][]Str `yaml:"channels"`
}

// PQExperiment is what one run of the experiment does.
type PQExperiment struct {
	Period           Duration `yaml:"period"`
	IdleWindow       Duration `yaml:"idle_window"`
	ThroughputRounds Int      `yaml:"throughput_rounds"`
	Fleet            Int      `yaml:"fleet"`
	Waves            []Int    `yaml:"waves"`
}

// Decision gate rules.
const (
	RuleReproduces   = "reproduces"
	RuleCost         = "cost"
	RuleRotationLoss = "rotation-loss"
	RuleWaves        = "waves"
	RuleReview       = "review"
)

var pqRules = []string{RuleReproduces, RuleCost, RuleRotationLoss, RuleWaves, RuleReview}

// DecisionGate is one gate of the transition: its rule and that rule's
// thresholds (those of other rules must be unset).
type DecisionGate struct {
	ID    Str `yaml:"id"`
	Name  Str `yaml:"name"`
	Owner Str `yaml:"owner"`
	Rule  Str `yaml:"rule"`
	// reproduces
	MinRepetitions *Int     `yaml:"min_repetitions"`
	MaxSpread      *float64 `yaml:"max_spread"`
	// cost
	MaxThroughputCost *float64  `yaml:"max_throughput_cost"`
	MaxExchangeTime   *Duration `yaml:"max_exchange_time"`
	MaxExchangeCPU    *Duration `yaml:"max_exchange_cpu"`
	// A WireGuard handshake with the preshared key: its mean time and
	// CPU.
	MaxHandshakeTime *Duration `yaml:"max_handshake_time"`
	MaxHandshakeCPU  *Duration `yaml:"max_handshake_cpu"`
	// rotation-loss
	MaxLost *Int `yaml:"max_lost"`
	// review
	Review *Str `yaml:"review"`
}

// ParsePQ reads and checks a post-quantum policy. Every refusal names the
// line.
func ParsePQ(file string, data []byte) (*PQ, error) {
	var p PQ
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
	e := p.Experiment
	switch {
	case e.Period.D < 1e9:
		return nil, bad(e.Period.Line, "experiment.period %v: want at least 1s", e.Period.D)
	case e.IdleWindow.D < 3*e.Period.D:
		return nil, bad(e.IdleWindow.Line, "experiment.idle_window %v: want at least 3 periods (%v), so that rotations are counted", e.IdleWindow.D, 3*e.Period.D)
	case e.ThroughputRounds.Value < 2:
		return nil, bad(e.ThroughputRounds.Line, "experiment.throughput_rounds %d: want at least 2 (a spread needs two)", e.ThroughputRounds.Value)
	case e.Fleet.Value < 4:
		return nil, bad(e.Fleet.Line, "experiment.fleet %d: want at least 4 nodes (a wave of 25%% must hold one)", e.Fleet.Value)
	case len(e.Waves) < 2:
		return nil, bad(0, "experiment.waves: want at least 2 waves, from 0 to 100 percent")
	}
	for i, w := range e.Waves {
		switch {
		case w.Value < 0 || w.Value > 100:
			return nil, bad(w.Line, "experiment.waves: %d is not a percentage", w.Value)
		case i > 0 && w.Value <= e.Waves[i-1].Value:
			return nil, bad(w.Line, "experiment.waves: %d after %d: waves only go up", w.Value, e.Waves[i-1].Value)
		}
	}
	if e.Waves[0].Value != 0 || e.Waves[len(e.Waves)-1].Value != 100 {
		return nil, bad(e.Waves[0].Line, "experiment.waves: want the first wave 0 and the last 100")
	}
	ids := map[string]bool{}
	for _, g := range p.Gates {
		if g.ID.Value == "" || g.Name.Value == "" || g.Owner.Value == "" {
			return nil, bad(g.ID.Line, "decision gate %q: id, name and owner are required", trunc(g.ID.Value))
		}
		if ids[g.ID.Value] {
			return nil, bad(g.ID.Line, "decision gate %s twice", g.ID.Value)
		}
		ids[g.ID.Value] = true
		if !slices.Contains(pqRules, g.Rule.Value) {
			return nil, bad(g.Rule.Line, "decision gate %s: rule %q: want one of %s", g.ID.Value, trunc(g.Rule.Value), strings.Join(pqRules, ", "))
		}
		if err := g.checkThresholds(); err != "" {
			return nil, bad(g.Rule.Line, "decision gate %s: %s", g.ID.Value, err)
		}
	}
	for ch, gs := range p.Channels {
		if !isChannel(ch) {
			return nil, bad(0, "channels: %q is not a channel (%s)", trunc(ch), strings.Join(knownChannels, ", "))
		}
		for _, g := range gs {
			if !ids[g.Value] {
				return nil, bad(g.Line, "channels.%s: %q is not a decision gate of this policy", ch, trunc(g.Value))
			}
		}
	}
	return &p, nil
}

// checkThresholds says what is wrong with the gate's thresholds for its
// rule: every one the rule needs set, none of another rule's.
func (g *DecisionGate) checkThresholds() string {
	set := map[string]bool{
		"min_repetitions": g.MinRepetitions != nil, "max_spread": g.MaxSpread != nil,
		"max_throughput_cost": g.MaxThroughputCost != nil, "max_exchange_time": g.MaxExchangeTime != nil, "max_exchange_cpu": g.MaxExchangeCPU != nil,
		"max_handshake_time": g.MaxHandshakeTime != nil, "max_handshake_cpu": g.MaxHandshakeCPU != nil,
		"max_lost": g.MaxLost != nil, "review": g.Review != nil,
	}
	need := map[string][]string{
		RuleReproduces:   {"min_repetitions", "max_spread"},
		RuleCost:         {"max_throughput_cost", "max_exchange_time", "max_exchange_cpu", "max_handshake_time", "max_handshake_cpu"},
		RuleRotationLoss: {"max_lost"},
		RuleWaves:        nil,
		RuleReview:       {"review"},
	}[g.Rule.Value]
	for _, k := range need {
		if !set[k] {
			return fmt.Sprintf("rule %s needs %s", g.Rule.Value, k)
		}
	}
	for k, v := range set {
		if v && !slices.Contains(need, k) {
			return fmt.Sprintf("%s does not belong to rule %s", k, g.Rule.Value)
		}
	}
	return ""
}

// Blocking lists the decision gates that block channel.
func (p *PQ) Blocking(channel string) []string {
	var out []string
	for _, g := range p.Channels[channel] {
		out = append(out, g.Value)
	}
	return out
}

// LoadPQ reads the post-quantum policy at path.
func LoadPQ(path string) (*PQ, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePQ(path, data)
}
