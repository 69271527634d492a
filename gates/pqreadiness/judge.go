package pqreadiness

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/policies"
)

// Results is what one run of the experiment measured.
type Results struct {
	// Exchange is the post-quantum exchange alone, both sides in one
	// process over loopback TCP (node/pq's BenchmarkExchange, one value
	// per -count): wall time and CPU per exchange, and bytes of its
	// messages (TCP and IP headers not included).
	ExchangeTime  []float64 `json:"exchange_time_s"`
	ExchangeCPU   []float64 `json:"exchange_cpu_s"`
	ExchangeBytes []float64 `json:"exchange_bytes"`
	// Handshake is a WireGuard handshake between two backends in one
	// process over loopback UDP, started by Rehandshake, classical and
	// with a preshared key (the wireguard backend's BenchmarkHandshake):
	// wall time, CPU and bytes on the wire (UDP payloads) per handshake.
	HandshakeTime  map[string][]float64 `json:"handshake_time_s"`
	HandshakeCPU   map[string][]float64 `json:"handshake_cpu_s"`
	HandshakeBytes map[string][]float64 `json:"handshake_bytes"`
	// Rotation: a UDP stream between two nodes of a mesh in prefer mode
	// across several rotations.
	Rotation Rotation `json:"rotation"`
	// Throughput: paired iperf3 rounds on one mesh whose policy toggles
	// between off (classical) and prefer (hybrid); empty on channels
	// that do not run them.
	Classical []float64 `json:"classical_gbit_s,omitempty"`
	Hybrid    []float64 `json:"hybrid_gbit_s,omitempty"`
	// IdleBytes: bytes through a node's link while its mesh idles, in
	// each mode, over the same window; RotationBytes is their difference
	// per rotation.
	IdleBytes     map[string]float64 `json:"idle_bytes,omitempty"`
	RotationBytes float64            `json:"rotation_bytes,omitempty"`
	Waves         []Wave             `json:"waves"`
	Rollback      *Rollback          `json:"rollback"`
	Problems      []string           `json:"problems,omitempty"`
}

// Rotation is the stream across rotations.
type Rotation struct {
	Period    time.Duration `json:"period_ns"`
	Window    time.Duration `json:"window_ns"`
	Rotations int           `json:"rotations"`
	Sent      int           `json:"sent"`
	Lost      int           `json:"lost"`
}

// Wave is one step of the migration: how many nodes of the fleet ran the
// exchange, and what every ordered pair reached.
type Wave struct {
	Percent int            `json:"percent"`
	Nodes   int            `json:"nodes"`
	Capable int            `json:"capable"`
	Pairs   []Pair         `json:"pairs"`
	Modes   map[string]int `json:"modes"`
	// Problem: the pairs did not all reach the mode they want within
	// the settle timeout.
	Problem string `json:"problem,omitempty"`
}

// Pair is one ordered pair at a wave: the mode it reached and the one it
// wants (the preshared key when both nodes are capable, else classical),
// and whether a ping went through the tunnel.
type Pair struct {
	From  string `json:"from"`
	To    string `json:"to"`
	OK    bool   `json:"ok"`
	Mode  string `json:"mode"`
	Want  string `json:"want"`
	Error string `json:"error,omitempty"`
}

// Rollback is a wave rolled back to classical by policy under a stream
// between every pair.
type Rollback struct {
	Nodes int `json:"nodes"` // rolled back
	Sent  int `json:"sent"`
	Lost  int `json:"lost"`
	// Classical: the pairs involving a rolled-back node that reached
	// classical; Of: how many there are.
	Classical int `json:"classical"`
	Of        int `json:"of"`
}

// A decision gate's state.
const (
	Met         = "met"
	NotMet      = "not met"
	NotMeasured = "not measured" // this channel's run does not measure it
)

// State is a decision gate's state in one run: Met, NotMet or
// NotMeasured, why, and whether it blocks the run's channel (a blocking
// gate that is not met, or not measured, blocks).
type State struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	State    string `json:"state"`
	Why      string `json:"why"`
	Blocking bool   `json:"blocking"`
}

// Blocks says whether the state blocks the run's channel.
func (s State) Blocks() bool { return s.Blocking && s.State != Met }

// Decide judges every decision gate of pol from res, for channel.
func Decide(pol *policies.PQ, res *Results, channel, root string) []State {
	blocking := map[string]bool{}
	for _, g := range pol.Blocking(channel) {
		blocking[g] = true
	}
	var out []State
	for _, g := range pol.Gates {
		state, why := judge(&g, res, root)
		out = append(out, State{ID: g.ID.Value, Name: g.Name.Value, Owner: g.Owner.Value, State: state, Why: why, Blocking: blocking[g.ID.Value]})
	}
	return out
}

// judge decides one decision gate from res: its state and why.
func judge(g *policies.DecisionGate, res *Results, root string) (string, string) {
	switch g.Rule.Value {
	case policies.RuleReproduces:
		min := g.MinRepetitions.Value
		for name, vs := range map[string][]float64{"exchange_time": res.ExchangeTime, "exchange_cpu": res.ExchangeCPU,
			"handshake_time:classical": res.HandshakeTime["classical"], "handshake_time:psk": res.HandshakeTime["psk"]} {
			if len(vs) < min {
				return NotMet, fmt.Sprintf("%s has %d repetitions, want at least %d", name, len(vs), min)
			}
		}
		if cv := stats.Stddev(res.ExchangeTime) / stats.Mean(res.ExchangeTime); !(cv <= *g.MaxSpread) {
			return NotMet, fmt.Sprintf("the exchange time spreads by %.2f of its mean, more than %.2f", cv, *g.MaxSpread)
		}
		if len(res.Problems) > 0 {
			return NotMet, "the experiment did not run whole: " + strings.Join(res.Problems, "; ")
		}
		return Met, fmt.Sprintf("every figure has at least %d repetitions; the exchange time spreads by %.2f of its mean", min, stats.Stddev(res.ExchangeTime)/stats.Mean(res.ExchangeTime))
	case policies.RuleCost:
		if len(res.Classical) < 2 || len(res.Classical) != len(res.Hybrid) {
			return NotMeasured, "no paired throughput rounds in this run (beta and GA runs measure them)"
		}
		costs := make([]float64, len(res.Classical))
		for i := range costs {
			costs[i] = 1 - res.Hybrid[i]/res.Classical[i]
		}
		upper := stats.Mean(costs) + tQuantile95(len(costs)-1)*stats.Stddev(costs)/math.Sqrt(float64(len(costs)))
		t, c := stats.Mean(res.ExchangeTime), stats.Mean(res.ExchangeCPU)
		var fails []string
		if !(upper <= *g.MaxThroughputCost) {
			fails = append(fails, fmt.Sprintf("the throughput cost's 95%% upper bound is %.3f (mean %.3f over %d paired rounds), above %.3f", upper, stats.Mean(costs), len(costs), *g.MaxThroughputCost))
		}
		if !(t <= g.MaxExchangeTime.D.Seconds()) {
			fails = append(fails, fmt.Sprintf("an exchange takes %v, above %v", time.Duration(t*1e9).Round(time.Microsecond), g.MaxExchangeTime.D))
		}
		if !(c <= g.MaxExchangeCPU.D.Seconds()) {
			fails = append(fails, fmt.Sprintf("an exchange costs %v of CPU, above %v", time.Duration(c*1e9).Round(time.Microsecond), g.MaxExchangeCPU.D))
		}
		ht, hc := stats.Mean(res.HandshakeTime["psk"]), stats.Mean(res.HandshakeCPU["psk"])
		if !(ht <= g.MaxHandshakeTime.D.Seconds()) {
			fails = append(fails, fmt.Sprintf("a handshake with the preshared key takes %v, above %v", time.Duration(ht*1e9).Round(time.Microsecond), g.MaxHandshakeTime.D))
		}
		if !(hc <= g.MaxHandshakeCPU.D.Seconds()) {
			fails = append(fails, fmt.Sprintf("a handshake with the preshared key costs %v of CPU, above %v", time.Duration(hc*1e9).Round(time.Microsecond), g.MaxHandshakeCPU.D))
		}
		if len(fails) > 0 {
			return NotMet, strings.Join(fails, "; ")
		}
		us := func(s float64) time.Duration { return time.Duration(s * 1e9).Round(time.Microsecond) }
		return Met, fmt.Sprintf("throughput cost %.3f (95%% upper bound %.3f); an exchange takes %v and %v of CPU; a handshake with the preshared key %v and %v of CPU",
			stats.Mean(costs), upper, us(t), us(c), us(ht), us(hc))
	case policies.RuleRotationLoss:
		r := res.Rotation
		// A window of several periods must see rotations: none means the
		// keys do not rotate, and a loss figure over no rotation proves
		// nothing.
		if r.Sent == 0 || r.Period <= 0 {
			return NotMet, "no stream ran across the rotations"
		}
		want := int(r.Window/r.Period) - 1
		switch {
		case r.Rotations < want:
			return NotMet, fmt.Sprintf("%d rotations in %v with a period of %v, want at least %d: the keys do not rotate", r.Rotations, r.Window, r.Period, want)
		case r.Lost > g.MaxLost.Value:
			return NotMet, fmt.Sprintf("%d of %d packets lost across %d rotations, at most %d allowed", r.Lost, r.Sent, r.Rotations, g.MaxLost.Value)
		}
		return Met, fmt.Sprintf("%d of %d packets lost across %d rotations", r.Lost, r.Sent, r.Rotations)
	case policies.RuleWaves:
		if len(res.Waves) == 0 {
			return NotMet, "no wave ran"
		}
		for _, w := range res.Waves {
			if w.Problem != "" {
				return NotMet, fmt.Sprintf("at %d%%: %s", w.Percent, w.Problem)
			}
			if want := w.Nodes * (w.Nodes - 1); len(w.Pairs) != want {
				return NotMet, fmt.Sprintf("at %d%%, %d pairs of nodes saw each other, want %d", w.Percent, len(w.Pairs), want)
			}
			for _, p := range w.Pairs {
				if !p.OK {
					return NotMet, fmt.Sprintf("at %d%%, %s could not reach %s: %s", w.Percent, p.From, p.To, p.Error)
				}
				if p.Mode != p.Want {
					return NotMet, fmt.Sprintf("at %d%%, %s -> %s is %s, want %s", w.Percent, p.From, p.To, p.Mode, p.Want)
				}
			}
		}
		rb := res.Rollback
		switch {
		case rb == nil:
			return NotMet, "no rollback ran"
		case rb.Lost > 0:
			return NotMet, fmt.Sprintf("the rollback of %d nodes lost %d of %d probes", rb.Nodes, rb.Lost, rb.Sent)
		case rb.Classical != rb.Of:
			return NotMet, fmt.Sprintf("after the rollback, %d of the %d pairs of rolled-back nodes are classical", rb.Classical, rb.Of)
		}
		return Met, fmt.Sprintf("every pair connected at each of %d waves; the rollback of %d nodes lost none of %d probes", len(res.Waves), rb.Nodes, rb.Sent)
	case policies.RuleReview:
		high, err := openHigh(filepath.Join(root, g.Review.Value))
		if err != nil {
			return NotMet, err.Error()
		}
		if len(high) > 0 {
			return NotMet, fmt.Sprintf("%d open finding(s) of high severity in %s: %s", len(high), g.Review.Value, strings.Join(high, "; "))
		}
		return Met, "no open finding of high severity in " + g.Review.Value
	}
	return NotMet, "unknown rule " + g.Rule.Value
}

// findingRE reads a review's findings: "N. **State (severity): title.**".
var findingRE = regexp.MustCompile(`(?m)^\d+\. \*\*(Open|Accepted|Closed) \((high|medium|low)\): ([^*]+)\*\*`)

// openHigh lists the open findings of high severity in the review at
// path. A review that lists no finding in that form is refused: the
// gate would prove nothing.
func openHigh(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ms := findingRE.FindAllStringSubmatch(string(data), -1)
	if len(ms) == 0 {
		return nil, fmt.Errorf("%s lists no finding in the form \"N. **Open (high): title.**\"", path)
	}
	var out []string
	for _, m := range ms {
		if m[1] == "Open" && m[2] == "high" {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(m[3]), "."))
		}
	}
	return out, nil
}

// tQuantile95 is the one-sided 95% quantile of Student's t with df
// degrees of freedom (df from 1; 1.645 beyond 30).
func tQuantile95(df int) float64 {
	table := []float64{6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
		1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
		1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697}
	if df < 1 {
		return math.Inf(1)
	}
	if df > len(table) {
		return 1.645
	}
	return table[df-1]
}
