package soak

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// details is what the gate signs beside its measurements: how it ran, and
// the first and last sample of each backend's soak, whose span verify
// holds to the channel's floor.
type details struct {
	// Variant is "" for the channel's soak, or the variant that ran
	// (RUSTYNET_SOAK).
	Variant     string                    `json:"variant,omitempty"`
	Duration    string                    `json:"duration"`
	Floor       string                    `json:"floor"`
	SampleEvery string                    `json:"sample_every"`
	Warmup      string                    `json:"warmup"`
	Backends    map[string]backendDetails `json:"backends"`
	Problems    []string                  `json:"problems,omitempty"`
}

type backendDetails struct {
	FirstSample   time.Time `json:"first_sample"`
	LastSample    time.Time `json:"last_sample"`
	Samples       int       `json:"samples"`
	BytesVerified int64     `json:"bytes_verified"`
}

// slopeMetrics are the slopes every daemon of a soak is held to (the
// memory slopes in soaks of policies.MemorySlopeFrom or longer:
// judgesSlope).
var slopeMetrics = []string{"rss", "heap_live", "goroutines", "fds"}

// recheck is what verify checks of a signed soak pass: that it is the
// channel's soak (not a variant), and that for every backend the channel
// soaks (every one: backends) its samples span at least the channel's floor in code
// (policies.SoakFloor) and the duration the gate was set to run, with
// every daemon's slopes measured and within their bounds.
func recheck(st *evidence.GateStatement, channel string) error {
	var d details
	if len(st.Result.Details) == 0 {
		return errors.New("the soak signed no details: nothing says how long it sampled")
	}
	if err := json.Unmarshal(st.Result.Details, &d); err != nil {
		return fmt.Errorf("the soak's details: %w", err)
	}
	if d.Variant != "" {
		return fmt.Errorf("a %s soak (%s=%s) is no channel's soak", d.Variant, EnvVariant, d.Variant)
	}
	need := policies.SoakFloor(channel)
	dur, err := time.ParseDuration(d.Duration)
	if err != nil {
		return fmt.Errorf("the soak's details: duration %q: %w", d.Duration, err)
	}
	need = max(need, dur)
	if len(d.Backends) == 0 {
		return errors.New("the soak recorded no backend's samples")
	}
	measured := map[string]evidence.Measurement{}
	for _, m := range st.Result.Measurements {
		measured[m.Name] = m
	}
	for _, backend := range backends {
		bd, ok := d.Backends[backend]
		if !ok {
			return fmt.Errorf("the soak recorded no samples of the %s backend, which the %s channel soaks", backend, channel)
		}
		if span := bd.LastSample.Sub(bd.FirstSample); span < need {
			return fmt.Errorf("the %s soak's samples span %v (%s to %s), under the %v the %s channel needs", backend, span,
				bd.FirstSample.UTC().Format(time.RFC3339), bd.LastSample.UTC().Format(time.RFC3339), need, channel)
		}
		for _, daemon := range daemons {
			for _, metric := range slopeMetrics {
				if !judgesSlope(metric, need) {
					continue
				}
				name := backend + "/" + daemon + "_" + metric + "_slope"
				m, ok := measured[name]
				switch {
				case !ok:
					return fmt.Errorf("the soak measured no %s", name)
				case m.WithinBudget == nil || !*m.WithinBudget:
					return fmt.Errorf("the soak's %s (%.1f) is not within its bound", name, m.Mean)
				}
			}
		}
	}
	return nil
}
