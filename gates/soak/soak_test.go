package soak

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// TestByteStreamSplits: however a stream is cut, both ends agree.
func TestByteStreamSplits(t *testing.T) {
	whole := make([]byte, 1000)
	newByteStream(42).fill(whole)
	s := newByteStream(42)
	var got []byte
	for _, n := range []int{1, 7, 8, 3, 100, 5, 876} {
		b := make([]byte, n)
		s.fill(b)
		got = append(got, b...)
	}
	if !bytes.Equal(got, whole) {
		t.Error("a stream read in odd pieces differs from the stream read whole")
	}
	other := make([]byte, 1000)
	newByteStream(43).fill(other)
	if bytes.Equal(other, whole) {
		t.Error("two seeds give the same stream")
	}
}

func TestSlopeAfter(t *testing.T) {
	ts := []float64{0, 60, 120, 180, 240, 300}
	ys := []float64{100, 500, 10, 11, 12, 13} // warm-up noise, then +1 a minute
	s, ok := slopeAfter(ts, ys, 100)
	if !ok || math.Abs(s-60) > 1e-9 {
		t.Errorf("slopeAfter = %v, %v; want 60 per hour", s, ok)
	}
	if _, ok := slopeAfter(ts[:2], ys[:2], 0); ok {
		t.Error("a slope from two points")
	}
}

// TestConfigure: the channel's soak unless RUSTYNET_SOAK=short asks for
// the short one, which only the nightly channel runs; any other value is
// refused, and so are settings that leave too few samples for a slope.
// Every soak runs on both backends.
func TestConfigure(t *testing.T) {
	b, err := policies.LoadBudgets("../../policies/budgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tooShort := *b
	tooShort.Soak.Short = policies.ShortSoak{Duration: "1m", SampleEvery: "10s", Warmup: "45s"}
	for _, c := range []struct {
		b                *policies.Budgets
		channel, variant string
		want             time.Duration
		err              string
	}{
		{b, "nightly", "", 10 * time.Minute, ""},
		{b, "ga", "", 24 * time.Hour, ""},
		{b, "nightly", VariantShort, 0, ""},
		{b, "beta", VariantShort, 0, "the beta channel soaks for its full duration"},
		{b, "ga", VariantShort, 0, "the ga channel soaks for its full duration"},
		{b, "nightly", "quick", 0, `RUSTYNET_SOAK="quick": want "short" or unset`},
		// A soak that cannot take 3 samples after its warm-up could not
		// fit a slope: refused before it starts.
		{&tooShort, "nightly", VariantShort, 0, "a 1m0s soak sampled every 10s leaves 15s after its 45s warm-up, fewer than the 3 samples a slope needs"},
	} {
		cfg, err := configure(c.b, c.channel, c.variant)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("configure(%s, %q) = %v, want an error saying %q", c.channel, c.variant, err, c.err)
			}
		case err != nil:
			t.Errorf("configure(%s, %q) = %v", c.channel, c.variant, err)
		case !slices.Equal(cfg.backends, []string{"wireguard", "quic"}):
			t.Errorf("configure(%s, %q) soaks %v; want both backends", c.channel, c.variant, cfg.backends)
		case c.variant == VariantShort:
			if short, _ := time.ParseDuration(b.Soak.Short.Duration); cfg.duration != short || cfg.duration >= 10*time.Minute {
				t.Errorf("configure(%s, short) runs %v; want soak.short.duration (%v), shorter than the nightly soak", c.channel, cfg.duration, short)
			}
			if cfg.bounds.MaxRSSSlope != b.Soak.MaxRSSSlope || cfg.bounds.MaxHeapLiveSlope != b.Soak.MaxHeapLiveSlope || cfg.bounds.MaxRSS != b.Soak.MaxRSS {
				t.Errorf("configure(%s, short) bounds RSS at %v/h, the live heap at %v/h, RSS at %v MiB; want the soak's", c.channel, cfg.bounds.MaxRSSSlope, cfg.bounds.MaxHeapLiveSlope, cfg.bounds.MaxRSS)
			}
			if cfg.bounds.MaxGoroutineSlope != b.Soak.MaxGoroutineSlope || cfg.bounds.MaxFDSlope != b.Soak.MaxFDSlope {
				t.Errorf("configure(%s, short) bounds goroutines at %v/h and fds at %v/h; want the soak's", c.channel, cfg.bounds.MaxGoroutineSlope, cfg.bounds.MaxFDSlope)
			}
		case cfg.duration != c.want:
			t.Errorf("configure(%s, %q) runs %v, want %v", c.channel, c.variant, cfg.duration, c.want)
		}
	}
}
