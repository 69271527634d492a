// Package soak is the soak gate: on each backend, a mesh (a controller and
// two nodes in namespaces) carries steady, bounded, verified traffic for
// the channel's duration (policies/budgets.yaml, never under the floor in
// policies.SoakFloor: 10 minutes nightly, 2 hours beta, 24 hours GA) while
// every daemon's RSS, live heap, goroutines and file descriptors are
// sampled. It fails on growth beyond the set slopes (fitted after a
// warm-up; the memory slopes only in soaks of policies.MemorySlopeFrom or
// more), on too
// few samples after the warm-up or a sample that could not be read, on
// any lost or corrupted byte, on a stalled stream, or on a budget breach
// during the run. The samples go into the bundle, and verify re-checks a
// signed pass from their time span (recheck).
//
// RUSTYNET_SOAK=short runs the short soak of budgets.yaml instead
// (soak.short, nightly only): a soak short enough for a mutation run,
// which verify never takes for a channel's soak.
package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "soak"

// EnvVariant is the environment variable that selects a variant of the
// soak: "short" runs the short soak (soak.short in budgets.yaml) on the
// nightly channel; unset runs the channel's soak. Any other value is
// refused.
const EnvVariant = "RUSTYNET_SOAK"

// VariantShort is the short soak, for mutation runs.
const VariantShort = "short"

// Register adds the soak gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    "sre",
		Timeout:  25 * time.Hour,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot},
		Run:      run,
		Fields:   gates.FieldsOf(details{}),
		Recheck:  recheck,
		// A paced stream at a few percent of what the tunnel carries,
		// judged on live-heap, goroutine, descriptor (and, in long
		// soaks, RSS) slopes: a light neighbour
		// (the slo gate) cannot tip it.
		Concurrent: true,
	})
}

// MinRateShare is the share of the paced rate the stream must carry over
// the soak: the sender is paced far below what the tunnel carries (50
// Mbit/s against about 2.7 Gbit/s here), so anything short of it beyond
// the connection's start is the mesh failing to keep up.
const MinRateShare = 0.9

// backends are the backends every soak runs on, each in a mesh of its
// own, at the same time: one after the other, GA's two 24-hour soaks
// would outlast the gate's timeout (and gates.MaxTimeout), and at the
// paced rate both fit on two cores (rustynetd spends about 5 CPU seconds
// per GB on WireGuard and 45 on QUIC: 3% and 30% of a core at 50 Mbit/s).
var backends = []string{"wireguard", "quic"}

// daemons names the daemons of a soak's mesh: its controller and two
// nodes.
var daemons = []string{"controller", "node1", "node2"}

// config is what one run of the gate soaks, for how long, and the bounds
// it holds the daemons to.
type config struct {
	channel string
	variant string
	// duration is how long the soak runs; every how often it samples;
	// warmup how long before the slopes are fitted.
	duration, every, warmup time.Duration
	backends                []string
	bounds                  policies.Soak
}

// configure reads the settings of a channel's soak, or of a variant of it.
func configure(b *policies.Budgets, channel, variant string) (*config, error) {
	c := &config{channel: channel, variant: variant, backends: slices.Clone(backends), bounds: b.Soak}
	every, warmup := b.Soak.SampleEvery, b.Soak.Warmup
	switch variant {
	case "":
		d, err := b.SoakDuration(channel)
		if err != nil {
			return nil, fmt.Errorf("budgets: %w", err)
		}
		c.duration = d
	case VariantShort:
		if channel != policies.Nightly {
			return nil, fmt.Errorf("%s=%s: the short soak is for mutation runs on the nightly channel; the %s channel soaks for its full duration", EnvVariant, variant, channel)
		}
		s := b.Soak.Short
		if s == (policies.ShortSoak{}) {
			return nil, fmt.Errorf("%s=%s: %s has no soak.short", EnvVariant, variant, b.File)
		}
		d, err := time.ParseDuration(s.Duration)
		if err != nil {
			return nil, fmt.Errorf("budgets: soak.short.duration: %w", err)
		}
		c.duration, every, warmup = d, s.SampleEvery, s.Warmup
	default:
		return nil, fmt.Errorf("%s=%q: want %q or unset", EnvVariant, variant, VariantShort)
	}
	var err error
	if c.every, err = time.ParseDuration(every); err != nil || c.every <= 0 {
		return nil, fmt.Errorf("budgets: soak sample_every %q: want a positive duration", every)
	}
	if c.warmup, err = time.ParseDuration(warmup); err != nil || c.warmup < 0 {
		return nil, fmt.Errorf("budgets: soak warmup %q: want a duration of 0 or more", warmup)
	}
	// The first sample at or after the warm-up comes within one interval
	// of it; two more need two intervals before the end.
	if c.duration-c.warmup < (minSlopeSamples-1)*c.every {
		return nil, fmt.Errorf("budgets: a %v soak sampled every %v leaves %v after its %v warm-up, fewer than the %d samples a slope needs", c.duration, c.every, max(0, c.duration-c.warmup), c.warmup, minSlopeSamples)
	}
	return c, nil
}

func run(ctx context.Context, r *gates.Run) error {
	b, err := policies.LoadBudgets(filepath.Join(r.Root, "policies/budgets.yaml"))
	if err != nil {
		return fmt.Errorf("budgets: %w", err) // could not run
	}
	c, err := configure(b, r.Channel, os.Getenv(EnvVariant))
	if err != nil {
		return err
	}
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	env := testbed.MeshConfig{ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log}
	soaks := c.soakAll(ctx, env, r.Progress)
	d := details{Variant: c.variant, Duration: c.duration.String(), Floor: policies.SoakFloor(c.channel).String(),
		SampleEvery: c.every.String(), Warmup: c.warmup.String(), Backends: map[string]backendDetails{}}
	var errs []error
	for i, s := range soaks {
		backend := c.backends[i]
		if s.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", backend, s.err))
		}
		if s.o == nil {
			continue // its mesh could not be built
		}
		// What was sampled is evidence even of a soak that could not
		// finish.
		if err := r.ArtifactJSON(backend+"/samples.json", s.o.samples); err != nil {
			return err
		}
		if s.err != nil {
			continue
		}
		ms, problems := c.judge(s.o)
		for _, m := range ms {
			m.Name = backend + "/" + m.Name
			r.Measure(m)
		}
		for _, p := range problems {
			d.Problems = append(d.Problems, backend+": "+p)
		}
		bd := backendDetails{Samples: len(s.o.samples), BytesVerified: s.o.bytes}
		if n := len(s.o.samples); n > 0 {
			bd.FirstSample, bd.LastSample = s.o.samples[0].At, s.o.samples[n-1].At
		}
		d.Backends[backend] = bd
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // could not run
	}
	if err := r.Details(d); err != nil {
		return err
	}
	if len(d.Problems) > 0 {
		return gates.Fail("%s", strings.Join(d.Problems, "; "))
	}
	return nil
}

type backendSoak struct {
	o   *observed
	err error
}

// soakAll soaks every backend at once and waits for them all. One that
// cannot run stops the others: only it says why, and they say they were
// stopped with it.
func (c *config) soakAll(ctx context.Context, env testbed.MeshConfig, progress func(float64)) []backendSoak {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]backendSoak, len(c.backends))
	first := -1 // the first soak that could not run
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, backend := range c.backends {
		report := func(float64) {}
		if i == 0 {
			report = progress // they run for the same time
		}
		wg.Go(func() {
			o, err := c.soak(sctx, env, backend, report)
			mu.Lock()
			if err != nil && first < 0 && sctx.Err() == nil {
				first = i
				cancel()
			}
			out[i] = backendSoak{o, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	if first >= 0 && ctx.Err() == nil {
		for i := range out {
			if i != first && out[i].err != nil && errors.Is(out[i].err, context.Canceled) {
				out[i].err = fmt.Errorf("stopped when the %s soak could not run", c.backends[first])
			}
		}
	}
	return out
}
