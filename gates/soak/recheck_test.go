package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/policies"
)

// signedSoak signs a bundle of one channel whose soak passed having
// recorded what soaked (backend → the span of its samples) under the
// soak's own Recheck, and verifies it: it returns the verdict verify
// gives and why the soak was re-checked, if it was.
func signedSoak(t *testing.T, channel, variant string, duration time.Duration, spans map[string]time.Duration) (*gates.Verdict, string) {
	t.Helper()
	var real gates.Registry
	Register(&real)
	spec, ok := real.Get(Name)
	if !ok {
		t.Fatal("the soak gate is not registered")
	}
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	spec.Needs = nil
	spec.Run = func(ctx context.Context, r *gates.Run) error {
		// What the gate records (TestSoakGate checks that the real
		// gate's details hold up under Recheck too).
		backends := map[string]any{}
		for backend, span := range spans {
			backends[backend] = map[string]any{"first_sample": start, "last_sample": start.Add(span), "samples": int(span/(10*time.Second)) + 1}
			for _, daemon := range []string{"controller", "node1", "node2"} {
				for _, metric := range slopeMetrics {
					mx := 1000.0
					r.Measure(evidence.Measurement{Name: backend + "/" + daemon + "_" + metric + "_slope", Unit: "/h", Method: "test",
						Values: []float64{1}, Budget: &evidence.Budget{Max: &mx}})
				}
			}
		}
		return r.Details(map[string]any{"variant": variant, "duration": duration.String(), "sample_every": "10s", "warmup": "4m0s", "backends": backends})
	}
	var reg gates.Registry
	reg.Register(spec)
	pol, err := policies.ParseRelease("release.yaml", []byte("version: 1\nchannels:\n  "+channel+":\n    gates: [soak]\n"), reg.Has)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	evidence.Keygen(keys, evidence.ECDSAP256)
	signer, err := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := evidence.LoadVerifier(filepath.Join(keys, evidence.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	o, err := gates.Execute(context.Background(), gates.Options{Registry: &reg, Policy: pol, Channel: channel, Out: out, Signer: signer,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	v, err := gates.VerifyBundle(out, verifier, gates.VerifyOptions{Registry: &reg})
	if err != nil {
		t.Fatal(err)
	}
	// The runner applies the recheck as verify does: the verdict it
	// signed and the one verify computes agree.
	if o.Verdict.Passed != v.Verdict.Passed || v.Recorded.Passed != v.Verdict.Passed {
		t.Fatalf("run's verdict passed=%v, the recorded one %v, verify's %v: they disagree", o.Verdict.Passed, v.Recorded.Passed, v.Verdict.Passed)
	}
	return v.Verdict, v.Rechecked[Name]
}

// TestRecheckSpan: run and verify hold a signed soak pass to the
// channel's floor in code, from the time span of the samples the gate
// signed: a soak that "passed" on a 10-minute run cannot pass GA (it did:
// nothing re-checked it).
func TestRecheckSpan(t *testing.T) {
	both := func(d time.Duration) map[string]time.Duration {
		return map[string]time.Duration{"wireguard": d, "quic": d}
	}
	for _, c := range []struct {
		channel, variant string
		duration         time.Duration
		spans            map[string]time.Duration
		want             string // why verify blocks, or "" for a pass
	}{
		{"ga", "", 24 * time.Hour, both(24 * time.Hour), ""},
		{"ga", "", 24 * time.Hour, both(10 * time.Minute), "the wireguard soak's samples span 10m0s (2026-12-01T00:00:00Z to 2026-12-01T00:10:00Z), under the 24h0m0s the ga channel needs"},
		{"ga", "", 10 * time.Minute, both(10 * time.Minute), "under the 24h0m0s the ga channel needs"},
		{"beta", "", 2 * time.Hour, both(2 * time.Hour), ""},
		{"beta", "", 2 * time.Hour, both(2*time.Hour - time.Second), "span 1h59m59s"},
		{"nightly", "", 10 * time.Minute, both(10 * time.Minute), ""},
		// The policy asked for 15 minutes: a soak that stopped at 10 did
		// not do what it signed.
		{"nightly", "", 15 * time.Minute, both(10 * time.Minute), "under the 15m0s the nightly channel needs"},
		{"nightly", VariantShort, 6 * time.Minute, both(6 * time.Minute), "a short soak (RUSTYNET_SOAK=short) is no channel's soak"},
		{"ga", "", 24 * time.Hour, nil, "the soak recorded no backend's samples"},
		// Beta and GA soak both backends.
		{"ga", "", 24 * time.Hour, map[string]time.Duration{"wireguard": 24 * time.Hour}, "the soak recorded no samples of the quic backend"},
		{"beta", "", 2 * time.Hour, map[string]time.Duration{"wireguard": 2 * time.Hour, "quic": time.Hour}, "the quic soak's samples span 1h0m0s"},
	} {
		t.Run(fmt.Sprintf("%s/%s%v/%v,%v", c.channel, c.variant, c.duration, c.spans["wireguard"], c.spans["quic"]), func(t *testing.T) {
			v, why := signedSoak(t, c.channel, c.variant, c.duration, c.spans)
			switch {
			case c.want == "" && (!v.Passed || why != ""):
				t.Errorf("verify: passed=%v, re-checked %q; want the soak's pass to hold", v.Passed, why)
			case c.want != "" && (v.Passed || !strings.Contains(why, c.want) || !strings.Contains(v.Gates[0].Reason, c.want)):
				t.Errorf("verify: passed=%v, re-checked %q (%s); want a block saying %q", v.Passed, why, v.Gates[0].Reason, c.want)
			}
		})
	}
}

// TestRecheckRSSSlope: verify holds the memory slopes (RSS, live heap) to
// their bounds in soaks of policies.MemorySlopeFrom or more (beta, GA); in
// a nightly soak they are reported, and goroutines and descriptors held.
func TestRecheckRSSSlope(t *testing.T) {
	statement := func(channel string, duration time.Duration, bounded map[string]bool) *evidence.GateStatement {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		st := &evidence.GateStatement{}
		soaked := map[string]any{}
		for _, backend := range backends {
			soaked[backend] = map[string]any{"first_sample": start, "last_sample": start.Add(duration), "samples": 100}
			for _, daemon := range daemons {
				for _, metric := range slopeMetrics {
					m := evidence.Measurement{Name: backend + "/" + daemon + "_" + metric + "_slope", Unit: "/h", Method: "test", Values: []float64{1}, Mean: 1}
					if bounded[metric] {
						mx, within := 1000.0, true
						m.Budget, m.WithinBudget = &evidence.Budget{Max: &mx}, &within
					}
					st.Result.Measurements = append(st.Result.Measurements, m)
				}
			}
		}
		st.Result.Details, _ = json.Marshal(map[string]any{"duration": duration.String(), "sample_every": "10s", "warmup": "4m0s", "backends": soaked})
		return st
	}
	all := map[string]bool{"rss": true, "heap_live": true, "goroutines": true, "fds": true}
	noRSS := map[string]bool{"heap_live": true, "goroutines": true, "fds": true}
	noLive := map[string]bool{"rss": true, "goroutines": true, "fds": true}
	for _, c := range []struct {
		channel  string
		duration time.Duration
		bounded  map[string]bool
		want     string
	}{
		{policies.Nightly, 10 * time.Minute, all, ""},
		{policies.Nightly, 10 * time.Minute, noRSS, ""},
		{policies.Nightly, 10 * time.Minute, noLive, ""},
		{policies.Nightly, 10 * time.Minute, map[string]bool{"goroutines": true}, "wireguard/controller_fds_slope (1.0) is not within its bound"},
		{policies.Beta, 2 * time.Hour, noLive, "wireguard/controller_heap_live_slope (1.0) is not within its bound"},
		{policies.Beta, 2 * time.Hour, all, ""},
		{policies.Beta, 2 * time.Hour, noRSS, "wireguard/controller_rss_slope (1.0) is not within its bound"},
		{policies.GA, 24 * time.Hour, noRSS, "wireguard/controller_rss_slope (1.0) is not within its bound"},
	} {
		err := recheck(statement(c.channel, c.duration, c.bounded), c.channel)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s soak of %v, bounded %v: %v, want it to hold", c.channel, c.duration, c.bounded, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s soak of %v, bounded %v: %v, want %q", c.channel, c.duration, c.bounded, err, c.want)
		}
	}
}
