// Package soak is the soak gate: a mesh (a controller and two nodes in
// namespaces) carries steady, bounded, verified traffic for the channel's
// duration (policies/budgets.yaml: 10 minutes nightly, 24 hours for GA)
// while every daemon's RSS, goroutines and file descriptors are sampled.
// It fails on growth beyond the set slopes (fitted after a warm-up), on
// any lost or corrupted byte, on a stalled stream, or on a budget breach
// during the run. The samples go into the bundle.
package soak

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/matrix"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "soak"

// Register adds the soak gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    "sre",
		Timeout:  25 * time.Hour,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot},
		Run:      run,
	})
}

// MinRateShare is the share of the paced rate the stream must carry over
// the soak: the sender is paced far below what the tunnel carries (50
// Mbit/s against about 2.7 Gbit/s here), so anything short of it beyond
// the connection's start is the mesh failing to keep up.
const MinRateShare = 0.9

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
	// ScrapeError says why its metrics could not be read; Goroutines and
	// HeapMiB are then not observed (zero here, left out of the series).
	ScrapeError string `json:"scrape_error,omitempty"`
}

type watched struct {
	name string
	host *testbed.Host
	p    *daemon.Process
}

func run(ctx context.Context, r *gates.Run) error {
	b, err := policies.LoadBudgets(filepath.Join(r.Root, "policies/budgets.yaml"))
	if err != nil {
		return fmt.Errorf("budgets: %w", err) // could not run
	}
	dur, err := b.SoakDuration(r.Channel)
	if err != nil {
		return fmt.Errorf("budgets: %w", err)
	}
	every, err := time.ParseDuration(b.Soak.SampleEvery)
	if err != nil {
		return fmt.Errorf("budgets: soak sample_every: %w", err)
	}
	warmup, err := time.ParseDuration(b.Soak.Warmup)
	if err != nil {
		return fmt.Errorf("budgets: soak warmup: %w", err)
	}
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	m, err := matrix.NewMesh(ctx, matrix.Env{ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log}, "wireguard", 2, 1420)
	if err != nil {
		return err
	}
	defer m.Close()
	ds := []watched{{"controller", m.ControllerHost(), m.Controller()}}
	for i, nd := range m.Nodes() {
		ds = append(ds, watched{fmt.Sprintf("node%d", i+1), nd.Host(), nd.Process()})
	}
	a, bnode := m.Nodes()[0], m.Nodes()[1]
	fmt.Fprintf(r.Log, "soak: %v at %.0f Mbit/s from %s to %s, sampling every %v, warm-up %v\n", dur, b.Soak.RateMbps, a.Addr(), bnode.Addr(), every, warmup)

	sctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	st, err := startStream(sctx, a.Host(), bnode.Host(), bnode.Addr(), b.Soak.RateMbps)
	if err != nil {
		return err
	}
	var samples []sample
	var problems []string
	start := time.Now()
	lastBytes, lastProgress := int64(0), start
	tick := time.NewTicker(every)
	defer tick.Stop()
loop:
	for {
		s := sample{At: time.Now(), Elapsed: time.Since(start).Seconds(), Bytes: st.verified.Load(), Daemons: map[string]dsample{}}
		for _, d := range ds {
			if d.p.Exited() {
				problems = append(problems, d.name+" exited during the soak")
				break loop
			}
			rss, _, _ := d.p.Memory()
			obs := dsample{RSSMiB: float64(rss) / (1 << 20), FDs: float64(countFDs(d.p.Pid()))}
			if vs, err := matrix.ScrapeAll(ctx, d.host, "go_goroutines", "go_memstats_heap_inuse_bytes"); err == nil {
				obs.Goroutines, obs.HeapMiB = vs["go_goroutines"], vs["go_memstats_heap_inuse_bytes"]/(1<<20)
			} else {
				obs.ScrapeError = err.Error()
			}
			s.Daemons[d.name] = obs
			if s.Daemons[d.name].RSSMiB > b.Soak.MaxRSS {
				problems = append(problems, fmt.Sprintf("%s RSS %.0f MiB at %v, over the %.0f MiB ceiling", d.name, s.Daemons[d.name].RSSMiB, time.Since(start).Round(time.Second), b.Soak.MaxRSS))
			}
		}
		samples = append(samples, s)
		if s.Bytes > lastBytes {
			lastBytes, lastProgress = s.Bytes, time.Now()
		} else if time.Since(lastProgress) > 30*time.Second {
			problems = append(problems, fmt.Sprintf("the stream stalled for %v at %v", time.Since(lastProgress).Round(time.Second), time.Since(start).Round(time.Second)))
			break
		}
		if e := st.err(); e != nil {
			problems = append(problems, e.Error())
			break
		}
		r.Progress(time.Since(start).Seconds() / dur.Seconds())
		select {
		case <-sctx.Done():
			break loop
		case <-tick.C:
		}
	}
	cancel()
	st.wait()
	if e := st.err(); e != nil && !strings.Contains(strings.Join(problems, ";"), e.Error()) {
		problems = append(problems, e.Error())
	}
	total := st.verified.Load()
	if err := r.ArtifactJSON("samples.json", samples); err != nil {
		return err
	}
	r.Measure(evidence.Measurement{Name: "bytes_verified", Unit: "MB", Method: "bytes received through the tunnel and checked against the sender's pseudo-random stream", Values: []float64{float64(total) / 1e6}})
	if elapsed := time.Since(start).Seconds(); elapsed > 0 {
		rate := float64(total) * 8 / 1e6 / elapsed
		floor := MinRateShare * b.Soak.RateMbps
		m := gates.Summarize(evidence.Measurement{Name: "stream_rate", Unit: "Mbit/s", Method: "verified bytes over the soak's duration",
			Values: []float64{rate}, Budget: &evidence.Budget{Min: &floor, Source: fmt.Sprintf("policies/budgets.yaml soak.rate_mbps, %.0f%% of it", 100*MinRateShare)}})
		r.Measure(m)
		if !*m.WithinBudget {
			problems = append(problems, fmt.Sprintf("the stream carried %.1f Mbit/s, under %.0f%% of the %.0f Mbit/s it was paced at", rate, 100*MinRateShare, b.Soak.RateMbps))
		}
	}
	for _, d := range ds {
		var rss, gor, fds, heap, t []float64
		for _, s := range samples {
			ds := s.Daemons[d.name]
			g, h := ds.Goroutines, ds.HeapMiB
			if ds.ScrapeError != "" {
				g, h = math.NaN(), math.NaN() // not observed: slopeAfter skips them
			}
			rss, gor, fds, heap = append(rss, ds.RSSMiB), append(gor, g), append(fds, ds.FDs), append(heap, h)
			t = append(t, s.Elapsed)
		}
		method := fmt.Sprintf("sampled every %v over %v", every, dur)
		r.Measure(evidence.Measurement{Name: d.name + "_rss", Unit: "MiB", Method: "VmRSS, " + method, Values: rss})
		// The series carry only what was observed (a failed scrape is in
		// samples.json with its error).
		observed := func(xs []float64) []float64 {
			return slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
		}
		r.Measure(evidence.Measurement{Name: d.name + "_heap", Unit: "MiB", Method: "go_memstats_heap_inuse_bytes from its metrics, " + method, Values: observed(heap)})
		if slope, ok := slopeAfter(t, heap, warmup.Seconds()); ok {
			// Reported beside the RSS slope, not judged: the heap's GC
			// sawtooth makes its slope over minutes too noisy to bound.
			r.Measure(evidence.Measurement{Name: d.name + "_heap_slope", Unit: "MiB/h", Method: "least-squares slope of the heap in use after the warm-up (reported, not bounded)", Values: []float64{slope}})
		}
		r.Measure(evidence.Measurement{Name: d.name + "_goroutines", Unit: "goroutines", Method: "go_goroutines from its metrics, " + method, Values: observed(gor)})
		r.Measure(evidence.Measurement{Name: d.name + "_fds", Unit: "fds", Method: "entries of /proc/PID/fd, " + method, Values: fds})
		for _, g := range []struct {
			metric string
			ys     []float64
			max    float64
			unit   string
		}{{"rss", rss, b.Soak.MaxRSSSlope, "MiB/h"}, {"goroutines", gor, b.Soak.MaxGoroutineSlope, "goroutines/h"}, {"fds", fds, b.Soak.MaxFDSlope, "fds/h"}} {
			slope, ok := slopeAfter(t, g.ys, warmup.Seconds())
			if !ok {
				continue
			}
			mx := g.max
			m := gates.Summarize(evidence.Measurement{Name: d.name + "_" + g.metric + "_slope", Unit: g.unit,
				Method: "least-squares slope of the samples after the warm-up", Values: []float64{slope},
				Budget: &evidence.Budget{Max: &mx, Source: "policies/budgets.yaml soak"}})
			r.Measure(m)
			if !*m.WithinBudget {
				problems = append(problems, fmt.Sprintf("%s %s grows %.1f %s, over the %.1f allowed", d.name, g.metric, slope, g.unit, g.max))
			}
		}
	}
	if err := r.Details(map[string]any{"duration": dur.String(), "samples": len(samples), "bytes_verified": total, "problems": problems}); err != nil {
		return err
	}
	if total == 0 {
		problems = append(problems, "no byte made it through the tunnel")
	}
	if len(problems) > 0 {
		return gates.Fail("%s", strings.Join(problems, "; "))
	}
	return nil
}

// slopeAfter fits y = a + b*t (t in seconds) to the points after skip
// seconds and returns b per hour; it needs at least 3 points.
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
	if n < 3 {
		return 0, false
	}
	den := n*stt - st*st
	if den == 0 {
		return 0, false
	}
	return (n*sty - st*sy) / den * 3600, true
}

func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// stream sends a pseudo-random byte stream at a bounded rate over TCP and
// checks every byte on arrival.
type stream struct {
	verified atomic.Int64
	mu       sync.Mutex
	failure  error
	wg       sync.WaitGroup
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
}

func (s *stream) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

func (s *stream) wait() { s.wg.Wait() }

func startStream(ctx context.Context, from, to *testbed.Host, dst netip.Addr, mbps float64) (*stream, error) {
	ln, err := to.Listen("tcp", netip.AddrPortFrom(dst, 7400).String())
	if err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	s := &stream{}
	s.wg.Go(func() {
		defer ln.Close()
		go func() { <-ctx.Done(); ln.Close() }()
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("accept: %w", err))
			}
			return
		}
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		want := newByteStream(seed)
		buf, exp := make([]byte, 64<<10), make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				want.fill(exp[:n])
				for i := range n {
					if buf[i] != exp[i] {
						s.fail(fmt.Errorf("corrupted byte at offset %d of the stream", s.verified.Load()+int64(i)))
						return
					}
				}
				s.verified.Add(int64(n))
			}
			if err != nil {
				if ctx.Err() == nil && err != io.EOF {
					s.fail(fmt.Errorf("receive: %w", err))
				}
				return
			}
		}
	})
	s.wg.Go(func() {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := from.DialContext(dctx, "tcp", netip.AddrPortFrom(dst, 7400).String())
		cancel()
		if err != nil {
			s.fail(fmt.Errorf("dial: %w", err))
			return
		}
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		src := newByteStream(seed)
		const chunk = 32 << 10
		buf := make([]byte, chunk)
		interval := time.Duration(float64(chunk*8) / (mbps * 1e6) * float64(time.Second))
		next := time.Now()
		for ctx.Err() == nil {
			src.fill(buf)
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(buf); err != nil {
				if ctx.Err() == nil {
					s.fail(fmt.Errorf("send: %w", err))
				}
				return
			}
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	})
	return s, nil
}

// byteStream is a deterministic byte stream from a seed: both ends make
// one and compare, byte for byte, whatever sizes they read and write in.
type byteStream struct {
	r    *rand.Rand
	left []byte // bytes of the last word not handed out yet
}

func newByteStream(seed uint64) *byteStream {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return &byteStream{r: rand.New(rand.NewChaCha8(key))}
}

// fill writes the next len(b) bytes of the stream into b.
func (s *byteStream) fill(b []byte) {
	i := copy(b, s.left)
	s.left = s.left[i:]
	for i < len(b) {
		v := s.r.Uint64()
		var w [8]byte
		for j := range 8 {
			w[j] = byte(v >> (8 * j))
		}
		n := copy(b[i:], w[:])
		i += n
		if n < 8 {
			s.left = append(s.left[:0], w[n:]...)
		}
	}
}
