package soak

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/testbed"
)

// sample is one observation of every daemon.
type sample struct {
	At      time.Time          `json:"at"`
	Elapsed float64            `json:"elapsed_s"`
	Bytes   int64              `json:"bytes_verified"`
	Daemons map[string]dsample `json:"daemons"`
}

type dsample struct {
	RSSMiB     float64 `json:"rss_mib"`
	Goroutines float64 `json:"goroutines"`
	FDs        float64 `json:"fds"`
	// HeapMiB is the Go heap in use (go_memstats_heap_inuse_bytes): RSS
	// also counts memory the runtime freed but has not returned yet, so
	// the two tell a leak from a heap that settles.
	HeapMiB float64 `json:"heap_inuse_mib"`
	// HeapLiveMiB is what the last GC found live (go_gc_heap_live_bytes):
	// the heap without its garbage, which a leak grows and a GC cycle
	// does not.
	HeapLiveMiB float64 `json:"heap_live_mib"`
	// ScrapeError says why its metrics could not be read; Goroutines,
	// HeapMiB and HeapLiveMiB are then not observed (zero here, left out of the series),
	// and the soak fails. RSSError and FDError say the same of its VmRSS
	// (/proc/PID/status) and its descriptors (/proc/PID/fd).
	ScrapeError string `json:"scrape_error,omitempty"`
	RSSError    string `json:"rss_error,omitempty"`
	FDError     string `json:"fd_error,omitempty"`
}

type watched struct {
	name string
	host *testbed.Host
	p    *daemon.Process
}

// observed is what one soak saw.
type observed struct {
	samples []sample
	// daemons are the daemons sampled, in order.
	daemons []string
	elapsed time.Duration
	bytes   int64
	// problems are what went wrong while it ran.
	problems []string
}

// soak builds the mesh, runs the stream through it for the duration and
// samples every daemon, from a first sample at the start to a last at or
// after the end. An error is a soak that could not run (with what it
// observed until ctx ended it, if it got that far).
func (c *config) soak(ctx context.Context, env testbed.MeshConfig, backend string, progress func(float64)) (*observed, error) {
	m, err := testbed.NewMesh(ctx, env, backend, len(daemons)-1, 1420)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	ds := []watched{{daemons[0], m.ControllerHost(), m.Controller()}}
	for i, nd := range m.Nodes() {
		ds = append(ds, watched{daemons[i+1], nd.Host(), nd.Process()})
	}
	o := &observed{}
	for _, d := range ds {
		o.daemons = append(o.daemons, d.name)
	}
	a, b := m.Nodes()[0], m.Nodes()[1]
	fmt.Fprintf(env.Log, "soak %s: %v at %.0f Mbit/s from %s to %s, sampling every %v, warm-up %v\n", backend, c.duration, c.bounds.RateMbps, a.Addr(), b.Addr(), c.every, c.warmup)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := startStream(sctx, a.Host(), b.Host(), b.Addr(), c.bounds.RateMbps)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(c.duration)
	lastBytes, lastProgress := int64(0), start
	next := start
	var stopped error
loop:
	for {
		now := time.Now()
		s := sample{At: now, Elapsed: now.Sub(start).Seconds(), Bytes: st.verified.Load(), Daemons: map[string]dsample{}}
		for _, d := range ds {
			if d.p.Exited() {
				o.problems = append(o.problems, d.name+" exited during the soak")
				break loop
			}
			obs := observe(ctx, d)
			s.Daemons[d.name] = obs
			if obs.RSSMiB > c.bounds.MaxRSS {
				o.problems = append(o.problems, fmt.Sprintf("%s RSS %.0f MiB at %v, over the %.0f MiB ceiling", d.name, obs.RSSMiB, time.Since(start).Round(time.Second), c.bounds.MaxRSS))
			}
		}
		o.samples = append(o.samples, s)
		if s.Bytes > lastBytes {
			lastBytes, lastProgress = s.Bytes, time.Now()
		} else if time.Since(lastProgress) > 30*time.Second {
			o.problems = append(o.problems, fmt.Sprintf("the stream stalled for %v at %v", time.Since(lastProgress).Round(time.Second), time.Since(start).Round(time.Second)))
			break
		}
		if e := st.err(); e != nil {
			o.problems = append(o.problems, e.Error())
			break
		}
		progress(time.Since(start).Seconds() / c.duration.Seconds())
		// The soak ends on a sample taken at or after its end, by the
		// monotonic clock and by the wall clock its timestamps (which
		// verify reads) are in.
		wall := now.Round(0).Sub(start.Round(0))
		if !now.Before(deadline) && wall >= c.duration {
			break
		}
		for !next.After(now) {
			next = next.Add(c.every) // a slow sample skips a beat, it does not bunch the next ones
		}
		if next.After(deadline) {
			next = deadline
		}
		wait := time.Until(next)
		if !now.Before(deadline) {
			wait = c.duration - wall // the wall clock is behind: wait it out
		}
		select {
		case <-ctx.Done():
			stopped = fmt.Errorf("the soak was stopped after %v of %v: %w", time.Since(start).Round(time.Second), c.duration, ctx.Err())
			break loop
		case <-time.After(wait):
		}
	}
	cancel()
	st.wait()
	if e := st.err(); e != nil && !strings.Contains(strings.Join(o.problems, ";"), e.Error()) {
		o.problems = append(o.problems, e.Error())
	}
	o.elapsed, o.bytes = time.Since(start), st.verified.Load()
	return o, stopped
}

// observe samples one daemon; what could not be read says why.
func observe(ctx context.Context, d watched) dsample {
	var obs dsample
	if rss, _, err := d.p.Memory(); err != nil {
		obs.RSSError = err.Error()
	} else {
		obs.RSSMiB = float64(rss) / (1 << 20)
	}
	if n, err := countFDs(d.p.Pid()); err != nil {
		obs.FDError = err.Error()
	} else {
		obs.FDs = float64(n)
	}
	if vs, err := testbed.ScrapeAll(ctx, d.host, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_heap_live_bytes"); err != nil {
		obs.ScrapeError = err.Error()
	} else {
		obs.Goroutines, obs.HeapMiB, obs.HeapLiveMiB = vs["go_goroutines"], vs["go_memstats_heap_inuse_bytes"]/(1<<20), vs["go_gc_heap_live_bytes"]/(1<<20)
	}
	return obs
}

// countFDs counts a process's open file descriptors.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}
