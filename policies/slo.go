package policies

import (
	"fmt"
	"time"
)

// SLOPolicy is policies/slo.yaml: the slo gate's load profiles by channel
// and the limits that block a release.
type SLOPolicy struct {
	File, Digest       string
	Version            int                   `yaml:"version"`
	Profiles           map[string]SLOProfile `yaml:"profiles"`
	ScrapeInterval     Duration              `yaml:"scrape_interval"`
	EvaluationInterval Duration              `yaml:"evaluation_interval"`
	MaxBurnRate        float64               `yaml:"max_burn_rate"`
	MaxWindowBurnRate  float64               `yaml:"max_window_burn_rate"`
	MinEvents          float64               `yaml:"min_events"`
}

// SLOProfile is the load of one channel's slo run.
type SLOProfile struct {
	Duration               Duration `yaml:"duration"`
	Nodes                  int      `yaml:"nodes"`
	RegistrationsPerMinute float64  `yaml:"registrations_per_minute"`
	RemovalsPerMinute      float64  `yaml:"removals_per_minute"`
	ProbeInterval          Duration `yaml:"probe_interval"`
}

// SLOMinDuration is the shortest load a profile may set: the SLIs' shortest
// recording window is 5 minutes, and a shorter run would be judged on
// windows it does not fill.
const SLOMinDuration = 5 * time.Minute

// ParseSLO reads and checks an SLO policy.
func ParseSLO(file string, data []byte) (*SLOPolicy, error) {
	var p SLOPolicy
	if err := decode(file, data, &p); err != nil {
		return nil, err
	}
	p.File, p.Digest = file, Digest(data)
	if p.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", p.Version)}
	}
	for _, ch := range knownChannels {
		pr, ok := p.Profiles[ch]
		if !ok {
			return nil, &Error{File: file, Msg: fmt.Sprintf("profiles: no load profile for channel %s", ch)}
		}
		switch {
		case pr.Duration.D < SLOMinDuration:
			return nil, &Error{File: file, Line: pr.Duration.Line, Msg: fmt.Sprintf("profiles.%s.duration: %v is under %v, the SLIs' shortest window", ch, pr.Duration.D, SLOMinDuration)}
		case pr.Nodes < 2:
			return nil, &Error{File: file, Msg: fmt.Sprintf("profiles.%s.nodes: %d; at least 2, so nodes have peers to probe", ch, pr.Nodes)}
		case pr.RegistrationsPerMinute <= 0:
			return nil, &Error{File: file, Msg: fmt.Sprintf("profiles.%s.registrations_per_minute: want more than 0", ch)}
		case pr.RemovalsPerMinute < 0 || pr.RemovalsPerMinute > pr.RegistrationsPerMinute:
			return nil, &Error{File: file, Msg: fmt.Sprintf("profiles.%s.removals_per_minute: want 0 to registrations_per_minute", ch)}
		case pr.ProbeInterval.D <= 0:
			return nil, &Error{File: file, Line: pr.ProbeInterval.Line, Msg: fmt.Sprintf("profiles.%s.probe_interval: want a positive duration", ch)}
		}
	}
	for ch := range p.Profiles {
		if !isChannel(ch) {
			return nil, &Error{File: file, Msg: fmt.Sprintf("profiles: unknown channel %q (channels: %v)", ch, knownChannels)}
		}
	}
	switch {
	case p.ScrapeInterval.D <= 0 || p.EvaluationInterval.D <= 0:
		return nil, &Error{File: file, Msg: "scrape_interval and evaluation_interval: want positive durations"}
	case p.ScrapeInterval.D > time.Minute/4:
		return nil, &Error{File: file, Line: p.ScrapeInterval.Line, Msg: "scrape_interval: at most 15s, so a 1-minute rate has samples to work on"}
	case p.MaxBurnRate <= 0 || p.MaxBurnRate > 1:
		return nil, &Error{File: file, Msg: "max_burn_rate: want more than 0 and at most 1 (above 1 a release could miss its objectives)"}
	case p.MaxWindowBurnRate < p.MaxBurnRate:
		return nil, &Error{File: file, Msg: "max_window_burn_rate: want at least max_burn_rate"}
	case p.MinEvents < 1:
		return nil, &Error{File: file, Msg: "min_events: want at least 1"}
	}
	return &p, nil
}

// LoadSLO reads and checks an SLO policy file.
func LoadSLO(path string) (*SLOPolicy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSLO(path, data)
}
