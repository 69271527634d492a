package soak

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/policies"
)

// TestSoakGate runs the gate for real, briefly: a controller and two nodes
// in namespaces, the built binaries, and the short soak
// (RUSTYNET_SOAK=short) cut to 15 s of verified traffic. A soak this
// short sees only start-up growth, so its slopes are opened up (the shipped
// ones are set from full-length soaks, see budgets.yaml): it passes, with
// every sample and measurement in the bundle, and fails, saying why, under
// an RSS ceiling no daemon can keep.
func TestSoakGate(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	if err := testbed.BuildDaemons(dir); err != nil {
		t.Fatal(err)
	}
	bins := map[string]string{"rustynet-controller": filepath.Join(dir, "rustynet-controller"), "rustynetd": filepath.Join(dir, "rustynetd")}
	shipped, err := os.ReadFile("../../policies/budgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The short soak (RUSTYNET_SOAK=short), shortened further.
	t.Setenv(EnvVariant, VariantShort)
	head, tail, ok := strings.Cut(string(shipped), "\nsoak:\n")
	r := regexp.MustCompile(`(?m)^(\s+)(max_rss_mib_per_hour|max_heap_live_mib_per_hour|max_goroutines_per_hour|max_fds_per_hour): \S+$`)
	n := 0
	tail = r.ReplaceAllStringFunc(tail, func(line string) string {
		n++
		m := r.FindStringSubmatch(line)
		return m[1] + m[2] + ": 100000"
	})
	shortRE := regexp.MustCompile(`(?m)^  short:\n    duration: \S+\n    sample_every: \S+\n    warmup: \S+$`)
	if shortRE.MatchString(tail) {
		n++
		tail = shortRE.ReplaceAllString(tail, "  short:\n    duration: 15s\n    sample_every: 1s\n    warmup: 5s")
	}
	short := head + "\nsoak:\n" + tail
	if !ok || n != 5 || !strings.Contains(short, "max_rss_mib: 256") {
		t.Fatalf("policies/budgets.yaml's soak settings changed (%d of 5 found): update what this test shortens", n)
	}

	// Every goroutine the gate starts has ended when it returns.
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines after the soaks, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
	})
	res, out, verifier := execute(t, "nightly", short, bins)
	if res.Status != evidence.StatusPass {
		t.Fatalf("soak with the shipped bounds: %s: %s", res.Status, res.Reason)
	}
	var d details
	if err := json.Unmarshal(res.Details, &d); err != nil {
		t.Fatalf("details %s: %v", res.Details, err)
	}
	if d.Variant != VariantShort || d.Duration != "15s" {
		t.Errorf("details say variant %q, duration %s; want the short soak, 15s", d.Variant, d.Duration)
	}
	names := map[string]bool{}
	for _, m := range res.Measurements {
		names[m.Name] = true
	}
	for _, backend := range backends {
		samples := readSamples(t, res, out, backend+"/samples.json")
		if len(samples) < 12 {
			t.Errorf("%s: %d samples in 15 s at one a second", backend, len(samples))
		}
		first, last := samples[0], samples[len(samples)-1]
		for _, d := range daemons {
			if s := last.Daemons[d]; s.RSSMiB <= 0 || s.Goroutines <= 0 || s.FDs <= 0 || s.HeapMiB <= 0 || s.HeapLiveMiB <= 0 {
				t.Errorf("%s: last sample of %s: %+v; want RSS, goroutines, fds, heap and live heap observed", backend, d, s)
			}
		}
		if last.Bytes <= 0 {
			t.Errorf("%s: no byte was verified", backend)
		}
		// The soak ends on a sample at or after its end, and signs the
		// span of its samples.
		bd := d.Backends[backend]
		if !bd.FirstSample.Equal(first.At) || !bd.LastSample.Equal(last.At) || bd.Samples != len(samples) {
			t.Errorf("%s: details %+v; want the first and last of the %d samples (%v, %v)", backend, bd, len(samples), first.At, last.At)
		}
		if span := last.At.Sub(first.At); span < 15*time.Second {
			t.Errorf("%s: the samples span %v of a 15 s soak", backend, span)
		}
		for _, n := range []string{"bytes_verified", "stream_rate", "sample_span", "node1_rss_slope", "node1_heap_live_slope", "node2_goroutines_slope", "controller_fds_slope", "node2_heap", "node2_heap_live"} {
			if !names[backend+"/"+n] {
				t.Errorf("no measurement %s/%s among %v", backend, n, names)
			}
		}
	}
	// The short soak passed, and verify says it is no channel's soak.
	var reg gates.Registry
	reg.Register(gates.Spec{Name: gates.BuildGate, Owner: "release-eng", Timeout: time.Minute, Run: func(context.Context, *gates.Run) error { return nil }})
	Register(&reg)
	v, err := gates.VerifyBundle(out, verifier, gates.VerifyOptions{Registry: &reg})
	if err != nil {
		t.Fatal(err)
	}
	if why := v.Rechecked[Name]; v.Verdict.Passed || !strings.Contains(why, "a short soak (RUSTYNET_SOAK=short) is no channel's soak") {
		t.Errorf("verify of the short soak: passed=%v, re-checked %q; want it blocked as no channel's soak", v.Verdict.Passed, why)
	}

	res, _, _ = execute(t, "nightly", strings.Replace(short, "max_rss_mib: 256", "max_rss_mib: 1", 1), bins)
	if res.Status != evidence.StatusFail || !strings.Contains(res.Reason, "over the 1 MiB ceiling") {
		t.Errorf("soak under a 1 MiB RSS ceiling: %s: %s; want a failure naming the ceiling", res.Status, res.Reason)
	}
}

// execute runs the build gate (a stand-in reporting bins) and the soak
// gate on channel under budgets, signing the bundle; it returns the soak's
// result, the bundle and the key that verifies it.
func execute(t *testing.T, channel, budgets string, bins map[string]string) (evidence.GateResult, string, *evidence.Verifier) {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "policies"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "policies", "budgets.yaml"), []byte(budgets), 0o644); err != nil {
		t.Fatal(err)
	}
	var reg gates.Registry
	reg.Register(gates.Spec{Name: gates.BuildGate, Owner: "release-eng", Timeout: time.Minute, Run: func(ctx context.Context, r *gates.Run) error {
		r.Built(bins)
		return nil
	}})
	Register(&reg)
	pol, err := policies.ParseRelease("release.yaml", []byte("version: 1\nchannels:\n  "+channel+":\n    gates: [build, soak]\n"), reg.Has)
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
	o, err := gates.Execute(context.Background(), gates.Options{Registry: &reg, Policy: pol, Channel: channel, Out: out, Root: root,
		Signer: signer, Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range o.Results {
		if r.Gate == Name {
			return r, out, verifier
		}
	}
	t.Fatalf("no result of %s among %+v", Name, o.Results)
	return evidence.GateResult{}, "", nil
}

// readSamples reads a samples artifact of the soak in a bundle.
func readSamples(t *testing.T, res evidence.GateResult, bundle, file string) []sample {
	t.Helper()
	var samples []sample
	data, err := os.ReadFile(filepath.Join(bundle, "artifacts", Name, file))
	if err != nil {
		t.Fatalf("%s: %s: no samples: %v", res.Status, res.Reason, err)
	}
	if err := json.Unmarshal(data, &samples); err != nil {
		t.Fatal(err)
	}
	return samples
}

// TestSoakUnderFloor: a budgets.yaml that sets a channel's soak under its
// floor in code is refused: the gate could not run (an error, with the
// floor), never a pass.
func TestSoakUnderFloor(t *testing.T) {
	require.Root(t)
	shipped, err := os.ReadFile("../../policies/budgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Stand-ins the build gate can digest; the soak must refuse before it
	// starts them.
	bins := map[string]string{}
	for _, b := range []string{"rustynet-controller", "rustynetd"} {
		bins[b] = filepath.Join(t.TempDir(), b)
		if err := os.WriteFile(bins[b], []byte("#!/bin/false\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ channel, from, to, want string }{
		{"ga", "    ga: 24h\n", "    ga: 1h\n", `soak.duration.ga: "1h" is under the ga channel's floor of 24h0m0s`},
		{"beta", "    beta: 2h\n", "    beta: 30m\n", `soak.duration.beta: "30m" is under the beta channel's floor of 2h0m0s`},
	} {
		if !strings.Contains(string(shipped), c.from) {
			t.Fatalf("policies/budgets.yaml has no %q: update this test", c.from)
		}
		res, _, _ := execute(t, c.channel, strings.Replace(string(shipped), c.from, c.to, 1), bins)
		if res.Status != evidence.StatusError || !strings.Contains(res.Reason, c.want) {
			t.Errorf("%s soak under budgets saying %q: %s: %s; want an error saying %q", c.channel, strings.TrimSpace(c.to), res.Status, res.Reason, c.want)
		}
	}
}
