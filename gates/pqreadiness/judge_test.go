package pqreadiness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/policies"
)

// good is what a run that meets every decision gate measured: the
// exchange and the handshakes five times each, a stream across three
// rotations with nothing lost, five paired throughput rounds, two waves
// of a 4-node fleet and a rollback that lost nothing.
func good() *Results {
	five := func(v float64) []float64 { return []float64{v, v * 1.1, v * 0.9, v * 1.05, v * 0.95} }
	res := &Results{
		ExchangeTime: five(0.002), ExchangeCPU: five(0.001), ExchangeBytes: five(2400),
		HandshakeTime:  map[string][]float64{"classical": five(0.0004), "psk": five(0.0004)},
		HandshakeCPU:   map[string][]float64{"classical": five(0.0002), "psk": five(0.0002)},
		HandshakeBytes: map[string][]float64{"classical": five(240), "psk": five(240)},
		Rotation:       Rotation{Period: 5 * time.Second, Window: 17500 * time.Millisecond, Rotations: 3, Sent: 1750},
		Classical:      []float64{2.0, 2.1, 1.9, 2.0, 2.05},
		Hybrid:         []float64{2.0, 2.1, 1.9, 2.0, 2.05},
		Rollback:       &Rollback{Nodes: 2, Sent: 600, Classical: 10, Of: 10},
	}
	for _, w := range []struct{ percent, capable int }{{0, 0}, {100, 4}} {
		wave := Wave{Percent: w.percent, Nodes: 4, Capable: w.capable}
		mode := localapi.PQClassical
		if w.capable == 4 {
			mode = localapi.PQPSK
		}
		for i := range 4 {
			for j := range 4 {
				if i != j {
					wave.Pairs = append(wave.Pairs, Pair{From: name(i), To: name(j), OK: true, Mode: mode, Want: mode})
				}
			}
		}
		res.Waves = append(res.Waves, wave)
	}
	return res
}

func name(i int) string { return "n" + string(rune('1'+i)) }

const review = `# Review
1. **Open (medium): one.** Text.
2. **Accepted (low): two
   across lines.** Text.
`

// TestDecide: each decision gate's rule, from a result that meets it and
// from one seeded fault each, and which gates block which channel.
func TestDecide(t *testing.T) {
	pol, err := policies.LoadPQ("../../" + PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, g := range pol.Gates {
		if g.Review != nil {
			os.MkdirAll(filepath.Dir(filepath.Join(root, g.Review.Value)), 0o755)
			if err := os.WriteFile(filepath.Join(root, g.Review.Value), []byte(review), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	states := func(res *Results, channel string) map[string]State {
		out := map[string]State{}
		for _, s := range Decide(pol, res, channel, root) {
			out[s.ID] = s
		}
		return out
	}
	for id, s := range states(good(), "ga") {
		if s.State != Met {
			t.Errorf("a good run: %s %s: %s", id, s.State, s.Why)
		}
	}
	for _, c := range []struct {
		name  string
		seed  func(*Results)
		gate  string
		state string
		why   string
	}{
		{"too few repetitions", func(r *Results) { r.ExchangeTime = r.ExchangeTime[:2] }, "G0", NotMet, "exchange_time has 2 repetitions, want at least 5"},
		{"spread", func(r *Results) { r.ExchangeTime = []float64{0.001, 0.001, 0.001, 0.001, 0.02} }, "G0", NotMet, "the exchange time spreads by"},
		{"incomplete", func(r *Results) { r.Problems = []string{"waves: boom"} }, "G0", NotMet, "did not run whole: waves: boom"},
		{"throughput cost", func(r *Results) { r.Hybrid = []float64{1.8, 1.9, 1.7, 1.8, 1.85} }, "G1", NotMet, "the throughput cost's 95% upper bound is"},
		{"slow handshake", func(r *Results) {
			for i := range r.HandshakeCPU["psk"] {
				r.HandshakeCPU["psk"][i] = 0.02
			}
		}, "G1", NotMet, "a handshake with the preshared key costs 20ms of CPU, above 10ms"},
		{"no rounds", func(r *Results) { r.Classical, r.Hybrid = nil, nil }, "G1", NotMeasured, "no paired throughput rounds"},
		{"slow exchange", func(r *Results) {
			for i := range r.ExchangeTime {
				r.ExchangeTime[i] = 0.5
			}
		}, "G1", NotMet, "an exchange takes 500ms, above 100ms"},
		{"no rotation", func(r *Results) { r.Rotation.Rotations = 0 }, "G2", NotMet, "the keys do not rotate"},
		{"loss", func(r *Results) { r.Rotation.Lost = 3 }, "G2", NotMet, "3 of 1750 packets lost across 3 rotations"},
		{"no stream", func(r *Results) { r.Rotation.Sent = 0 }, "G2", NotMet, "no stream ran"},
		{"a pair cut", func(r *Results) { r.Waves[1].Pairs[3].OK, r.Waves[1].Pairs[3].Error = false, "timeout" }, "G3", NotMet, "at 100%, n2 could not reach n1: timeout"},
		{"a pair classical", func(r *Results) { r.Waves[1].Pairs[0].Mode = localapi.PQClassical }, "G3", NotMet, "at 100%, n1 -> n2 is classical, want psk"},
		{"a pair missing", func(r *Results) { r.Waves[0].Pairs = r.Waves[0].Pairs[1:] }, "G3", NotMet, "at 0%, 11 pairs of nodes saw each other, want 12"},
		{"no wave", func(r *Results) { r.Waves = nil }, "G3", NotMet, "no wave ran"},
		{"rollback loss", func(r *Results) { r.Rollback.Lost = 1 }, "G3", NotMet, "the rollback of 2 nodes lost 1 of 600 probes"},
		{"rollback not classical", func(r *Results) { r.Rollback.Classical = 8 }, "G3", NotMet, "8 of the 10 pairs of rolled-back nodes are classical"},
	} {
		res := good()
		c.seed(res)
		s := states(res, "ga")[c.gate]
		if s.State != c.state || !strings.Contains(s.Why, c.why) {
			t.Errorf("%s: %s %s: %s; want %s containing %q", c.name, c.gate, s.State, s.Why, c.state, c.why)
		}
	}

	// The review: an open finding of high severity is not met; a review
	// that lists no finding in the form is refused.
	for _, g := range pol.Gates {
		if g.Review == nil {
			continue
		}
		path := filepath.Join(root, g.Review.Value)
		os.WriteFile(path, []byte(review+"3. **Open (high): the key leaks.** Text.\n"), 0o644)
		if s := states(good(), "ga")[g.ID.Value]; s.State != NotMet || !strings.Contains(s.Why, "1 open finding(s) of high severity") || !strings.Contains(s.Why, "the key leaks") {
			t.Errorf("an open high finding: %s %s: %s", g.ID.Value, s.State, s.Why)
		}
		os.WriteFile(path, []byte("# Review\nAll fine.\n"), 0o644)
		if s := states(good(), "ga")[g.ID.Value]; s.State != NotMet || !strings.Contains(s.Why, "lists no finding") {
			t.Errorf("a review without findings: %s %s: %s", g.ID.Value, s.State, s.Why)
		}
		os.WriteFile(path, []byte(review), 0o644)
	}

	// Which gates block: the policy's channels, and only when not met.
	for _, ch := range policies.Channels {
		blocking := map[string]bool{}
		for _, id := range pol.Blocking(ch) {
			blocking[id] = true
		}
		res := good()
		res.Rotation.Rotations = 0
		res.Classical, res.Hybrid = nil, nil
		for id, s := range states(res, ch) {
			if s.Blocking != blocking[id] {
				t.Errorf("%s: %s blocking %v, want %v", ch, id, s.Blocking, blocking[id])
			}
			if want := blocking[id] && (id == "G2" || id == "G1"); s.Blocks() != want {
				t.Errorf("%s: %s (%s) Blocks() = %v, want %v", ch, id, s.State, s.Blocks(), want)
			}
		}
	}
}
