package soak

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// judge turns what a soak observed into its measurements and the
// problems that fail it (those seen while it ran among them).
func (c *config) judge(o *observed) ([]evidence.Measurement, []string) {
	var ms []evidence.Measurement
	problems := slices.Clone(o.problems)
	b := c.bounds
	ms = append(ms, evidence.Measurement{Name: "bytes_verified", Unit: "MB", Method: "bytes received through the tunnel and checked against the sender's pseudo-random stream", Values: []float64{float64(o.bytes) / 1e6}})
	if elapsed := o.elapsed.Seconds(); elapsed > 0 {
		rate := float64(o.bytes) * 8 / 1e6 / elapsed
		floor := MinRateShare * b.RateMbps
		m := gates.Summarize(evidence.Measurement{Name: "stream_rate", Unit: "Mbit/s", Method: "verified bytes over the soak's duration",
			Values: []float64{rate}, Budget: &evidence.Budget{Min: &floor, Source: fmt.Sprintf("policies/budgets.yaml soak.rate_mbps, %.0f%% of it", 100*MinRateShare)}})
		ms = append(ms, m)
		if !*m.WithinBudget {
			problems = append(problems, fmt.Sprintf("the stream carried %.1f Mbit/s, under %.0f%% of the %.0f Mbit/s it was paced at", rate, 100*MinRateShare, b.RateMbps))
		}
	}
	if n := len(o.samples); n > 0 {
		span := o.samples[n-1].At.Sub(o.samples[0].At)
		ms = append(ms, evidence.Measurement{Name: "sample_span", Unit: "s", Method: "the last sample's timestamp less the first's", Values: []float64{span.Seconds()}})
	}
	for _, name := range o.daemons {
		// A sample that could not be read leaves a hole in its series:
		// the soak fails, saying which source and why.
		for _, src := range []struct {
			what string
			err  func(dsample) string
		}{
			{"its metrics", func(d dsample) string { return d.ScrapeError }},
			{"its RSS", func(d dsample) string { return d.RSSError }},
			{"its file descriptors", func(d dsample) string { return d.FDError }},
		} {
			n, first := 0, ""
			for _, s := range o.samples {
				if e := src.err(s.Daemons[name]); e != "" {
					if n == 0 {
						first = fmt.Sprintf("%v: %s", seconds(s.Elapsed).Round(time.Second), e)
					}
					n++
				}
			}
			if n > 0 {
				problems = append(problems, fmt.Sprintf("%s: %s could not be read in %d of %d samples (first at %s)", name, src.what, n, len(o.samples), first))
			}
		}
		var rss, gor, fds, heap, live, t []float64
		for _, s := range o.samples {
			ds := s.Daemons[name]
			// What was not observed is NaN: left out of the series and
			// of the slopes.
			r, g, f, h, l := ds.RSSMiB, ds.Goroutines, ds.FDs, ds.HeapMiB, ds.HeapLiveMiB
			if ds.ScrapeError != "" {
				g, h, l = math.NaN(), math.NaN(), math.NaN()
			}
			if ds.RSSError != "" {
				r = math.NaN()
			}
			if ds.FDError != "" {
				f = math.NaN()
			}
			rss, gor, fds, heap, live = append(rss, r), append(gor, g), append(fds, f), append(heap, h), append(live, l)
			t = append(t, s.Elapsed)
		}
		method := fmt.Sprintf("sampled every %v over %v", c.every, c.duration)
		// The series carry only what was observed (a sample that could
		// not be read is in samples.json with its error).
		observed := func(xs []float64) []float64 {
			return slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
		}
		ms = append(ms, evidence.Measurement{Name: name + "_rss", Unit: "MiB", Method: "VmRSS, " + method, Values: observed(rss)})
		ms = append(ms, evidence.Measurement{Name: name + "_heap", Unit: "MiB", Method: "go_memstats_heap_inuse_bytes from its metrics, " + method, Values: observed(heap)})
		if slope, ok := slopeAfter(t, heap, c.warmup.Seconds()); ok {
			// Reported beside the RSS slope, not judged: the heap's GC
			// sawtooth makes its slope over minutes too noisy to bound.
			ms = append(ms, evidence.Measurement{Name: name + "_heap_slope", Unit: "MiB/h", Method: "least-squares slope of the heap in use after the warm-up (reported, not bounded)", Values: []float64{slope}})
		}
		ms = append(ms, evidence.Measurement{Name: name + "_heap_live", Unit: "MiB", Method: "go_gc_heap_live_bytes (what the last GC kept) from its metrics, " + method, Values: observed(live)})
		ms = append(ms, evidence.Measurement{Name: name + "_goroutines", Unit: "goroutines", Method: "go_goroutines from its metrics, " + method, Values: observed(gor)})
		ms = append(ms, evidence.Measurement{Name: name + "_fds", Unit: "fds", Method: "entries of /proc/PID/fd, " + method, Values: observed(fds)})
		for _, g := range []struct {
			metric string
			ys     []float64
			max    float64
			unit   string
		}{{"rss", rss, b.MaxRSSSlope, "MiB/h"}, {"heap_live", live, b.MaxHeapLiveSlope, "MiB/h"}, {"goroutines", gor, b.MaxGoroutineSlope, "goroutines/h"}, {"fds", fds, b.MaxFDSlope, "fds/h"}} {
			slope, ok := slopeAfter(t, g.ys, c.warmup.Seconds())
			if !ok {
				// Too few samples to fit a slope is a soak that did not
				// show the daemon does not grow: it fails.
				problems = append(problems, fmt.Sprintf("%s %s: %d samples after the %v warm-up, %d needed for a slope", name, g.metric, pointsAfter(t, g.ys, c.warmup.Seconds()), c.warmup, minSlopeSamples))
				continue
			}
			if !judgesSlope(g.metric, c.duration) {
				ms = append(ms, evidence.Measurement{Name: name + "_" + g.metric + "_slope", Unit: g.unit,
					Method: fmt.Sprintf("least-squares slope of the samples after the warm-up (reported, not bounded: a soak under %v judges memory by the RSS ceiling, policies.MemorySlopeFrom)", policies.MemorySlopeFrom),
					Values: []float64{slope}})
				continue
			}
			mx := g.max
			m := gates.Summarize(evidence.Measurement{Name: name + "_" + g.metric + "_slope", Unit: g.unit,
				Method: "least-squares slope of the samples after the warm-up", Values: []float64{slope},
				Budget: &evidence.Budget{Max: &mx, Source: "policies/budgets.yaml soak"}})
			ms = append(ms, m)
			if !*m.WithinBudget {
				problems = append(problems, fmt.Sprintf("%s %s grows %.1f %s, over the %.1f allowed", name, g.metric, slope, g.unit, g.max))
			}
		}
	}
	if o.bytes == 0 {
		problems = append(problems, "no byte made it through the tunnel")
	}
	return ms, problems
}

// judgesSlope reports whether a soak of duration holds metric's slope to
// its bound: goroutines' and descriptors' always, the memory slopes (RSS,
// live heap) from policies.MemorySlopeFrom.
func judgesSlope(metric string, duration time.Duration) bool {
	return (metric != "rss" && metric != "heap_live") || duration >= policies.MemorySlopeFrom
}

// minSlopeSamples is the fewest samples after the warm-up a slope is
// fitted to.
const minSlopeSamples = 3

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// pointsAfter counts the observed points at or after skip seconds.
func pointsAfter(t, y []float64, skip float64) int {
	n := 0
	for i := range t {
		if t[i] >= skip && !math.IsNaN(y[i]) {
			n++
		}
	}
	return n
}

// slopeAfter fits y = a + b*t (t in seconds) to the points after skip
// seconds (NaN ones left out) and returns b per hour; it needs at least
// minSlopeSamples points.
func slopeAfter(t, y []float64, skip float64) (float64, bool) {
	var n, st, sy, stt, sty float64
	for i := range t {
		if t[i] < skip || math.IsNaN(y[i]) {
			continue
		}
		n++
		st += t[i]
		sy += y[i]
		stt += t[i] * t[i]
		sty += t[i] * y[i]
	}
	if n < minSlopeSamples {
		return 0, false
	}
	den := n*stt - st*st
	if den == 0 {
		return 0, false
	}
	return (n*sty - st*sy) / den * 3600, true
}
