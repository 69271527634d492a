// Package pqreadiness is the pq-readiness gate: the post-quantum
// transition's experiment (node/pq's hybrid preshared keys on the WireGuard
// path against classical WireGuard) and its decision gates G0 to G4
// (policies/pq.yaml), decided from what the experiment measured.
package pqreadiness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "pq-readiness"

// Owner owns the gate.
const Owner = "security"

// PolicyFile is the decision gates' policy.
const PolicyFile = "policies/pq.yaml"

// Register adds the gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    Owner,
		Timeout:  20 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot, gates.NeedGo, gates.NeedIperf3},
		Run:      run,
		Fields:   gates.FieldsOf(Details{}),
	})
}

// Details is the gate's evidence: everything measured and every decision
// gate's state.
type Details struct {
	Channel      string   `json:"channel"`
	Policy       string   `json:"policy"`
	PolicyDigest string   `json:"policy_digest"`
	Results      *Results `json:"results"`
	Decision     []State  `json:"decision_gates"`
}

func run(ctx context.Context, r *gates.Run) error {
	pol, err := policies.LoadPQ(filepath.Join(r.Root, PolicyFile))
	if err != nil {
		return err // could not run
	}
	env := Env{Mesh: testbed.MeshConfig{ControllerBin: r.Binaries["rustynet-controller"], DaemonBin: r.Binaries["rustynetd"], Work: r.Work, Log: r.Log},
		Log: r.Log, Full: slices.Contains([]string{"beta", "ga"}, r.Channel)}
	if env.Mesh.ControllerBin == "" || env.Mesh.DaemonBin == "" {
		return fmt.Errorf("no rustynet-controller or rustynetd binary: the build gate did not run or failed")
	}
	res := &Results{HandshakeTime: map[string][]float64{}, HandshakeCPU: map[string][]float64{}, HandshakeBytes: map[string][]float64{}}
	if err := benchmarks(ctx, r, res); err != nil {
		return err
	}
	r.Progress(0.2)
	if err := runPair(ctx, env, pol.Experiment, res); err != nil {
		res.Problems = append(res.Problems, "pair: "+err.Error())
	}
	r.Progress(map[bool]float64{true: 0.7, false: 0.5}[env.Full])
	if err := runWaves(ctx, env, pol.Experiment, res); err != nil {
		res.Problems = append(res.Problems, "waves: "+err.Error())
	}
	measure(r, pol.Experiment, res)
	states := Decide(pol, res, r.Channel, r.Root)
	if err := r.Details(&Details{Channel: r.Channel, Policy: PolicyFile, PolicyDigest: pol.Digest, Results: res, Decision: states}); err != nil {
		return err
	}
	var blocked []string
	for _, s := range states {
		fmt.Fprintf(r.Log, "%s (%s, owner %s): %s: %s\n", s.ID, s.Name, s.Owner, s.State, s.Why)
		if s.Blocks() {
			blocked = append(blocked, fmt.Sprintf("%s (%s) %s: %s", s.ID, s.Name, s.State, s.Why))
		}
	}
	if len(blocked) > 0 {
		return gates.Fail("%s", strings.Join(blocked, "; "))
	}
	return nil
}

// measure records every figure with its method.
func measure(r *gates.Run, exp policies.PQExperiment, res *Results) {
	bench := "in one process over loopback (both sides), go test -bench, one value per -count"
	r.Measure(evidence.Measurement{Name: "exchange_time", Unit: "s", Method: "node/pq BenchmarkExchange: one ML-KEM-768 preshared-key exchange " + bench, Values: res.ExchangeTime})
	r.Measure(evidence.Measurement{Name: "exchange_cpu", Unit: "s", Method: "node/pq BenchmarkExchange: process CPU (getrusage) per exchange " + bench, Values: res.ExchangeCPU})
	r.Measure(evidence.Measurement{Name: "exchange_bytes", Unit: "bytes", Method: "node/pq BenchmarkExchange: the exchange's messages per exchange (TCP and IP headers not included)", Values: res.ExchangeBytes})
	for _, mode := range []string{"classical", "psk"} {
		m := "node/backend/wireguard BenchmarkHandshake/" + mode + ": a WireGuard handshake started by Rehandshake between two backends, a fresh pair each (wireguard-go sends one initiation per peer every 5 s), " + bench
		r.Measure(evidence.Measurement{Name: "handshake_time:" + mode, Unit: "s", Method: m, Values: res.HandshakeTime[mode]})
		r.Measure(evidence.Measurement{Name: "handshake_cpu:" + mode, Unit: "s", Method: m + "; process CPU (getrusage) per handshake", Values: res.HandshakeCPU[mode]})
		r.Measure(evidence.Measurement{Name: "handshake_bytes:" + mode, Unit: "bytes", Method: m + "; UDP payload bytes both ways per handshake (the backend's counters)", Values: res.HandshakeBytes[mode]})
	}
	rot := res.Rotation
	stream := fmt.Sprintf("two WireGuard nodes in network namespaces under pq: prefer, keys rotated every %v; a numbered UDP datagram each way every %v, echoed, for %v", exp.Period.D, streamEvery, rot.Window)
	r.Measure(evidence.Measurement{Name: "rotation_lost", Unit: "packets", Method: stream + fmt.Sprintf("; datagrams not echoed within 1 s, of %d sent", rot.Sent), Values: []float64{float64(rot.Lost)}})
	r.Measure(evidence.Measurement{Name: "rotations", Unit: "count", Method: stream + "; distinct preshared keys the status showed, less one", Values: []float64{float64(rot.Rotations)}})
	if len(res.Classical) > 0 {
		m := fmt.Sprintf("iperf3 TCP, 3 s, between two WireGuard nodes in network namespaces, %d paired rounds on one mesh whose policy toggles pq between off and prefer (classical first in odd rounds, hybrid first in even ones)", len(res.Classical))
		r.Measure(evidence.Measurement{Name: "throughput:classical", Unit: "Gbit/s", Method: m, Values: res.Classical})
		r.Measure(evidence.Measurement{Name: "throughput:hybrid", Unit: "Gbit/s", Method: m, Values: res.Hybrid})
		var costs []float64
		for i, c := range res.Classical {
			if c > 0 && i < len(res.Hybrid) {
				costs = append(costs, 1-res.Hybrid[i]/c)
			}
		}
		r.Measure(evidence.Measurement{Name: "throughput_cost", Unit: "ratio", Method: m + "; 1 - hybrid/classical, per round", Values: costs})
	}
	if res.IdleBytes != nil {
		m := fmt.Sprintf("bytes through one node's link (both ways) while its pair idles %v, in each mode", exp.IdleWindow.D)
		r.Measure(evidence.Measurement{Name: "idle_bytes:classical", Unit: "bytes", Method: m, Values: []float64{res.IdleBytes["classical"]}})
		r.Measure(evidence.Measurement{Name: "idle_bytes:hybrid", Unit: "bytes", Method: m, Values: []float64{res.IdleBytes["hybrid"]}})
		r.Measure(evidence.Measurement{Name: "rotation_bytes", Unit: "bytes", Method: m + "; their difference per rotation (the exchange over the tunnel and the handshake after it)", Values: []float64{res.RotationBytes}})
	}
	for _, w := range res.Waves {
		ok := 0
		for _, p := range w.Pairs {
			if p.OK {
				ok++
			}
		}
		r.Measure(evidence.Measurement{Name: fmt.Sprintf("wave_pairs_connected:%d", w.Percent), Unit: "ratio",
			Method: fmt.Sprintf("a fleet of %d WireGuard nodes in network namespaces under pq: prefer, %d of them restarted with the exchange (--pq); every ordered pair pings once through the tunnel (the local API's ping, 3 s); the pairs by mode reached: %v", w.Nodes, w.Capable, w.Modes),
			Values: []float64{float64(ok) / float64(max(len(w.Pairs), 1))}})
	}
	if rb := res.Rollback; rb != nil {
		r.Measure(evidence.Measurement{Name: "rollback_lost", Unit: "packets", Method: fmt.Sprintf("the last wave (%d nodes) rolled back to pq: off by policy, a numbered UDP datagram every %v between every ordered pair, echoed; datagrams not echoed within 1 s, of %d sent", rb.Nodes, streamEvery, rb.Sent),
			Values: []float64{float64(rb.Lost)}})
	}
}

// benchLine reads one line of go test -bench: the benchmark's name (the
// GOMAXPROCS suffix taken off) and its metrics by unit.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// benchmarks runs the exchange's and the handshake's benchmarks in the
// tree under test.
func benchmarks(ctx context.Context, r *gates.Run, res *Results) error {
	count := 5
	var out bytes.Buffer
	cmd := r.Command(ctx, "go", "test", "-run", "^$", "-bench", "^Benchmark(Exchange|Handshake)$", "-benchtime", "20x",
		"-count", strconv.Itoa(count), "./node/pq", "./node/backend/wireguard")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test -bench: %w (the log has its output)", err)
	}
	r.Log.Write(out.Bytes())
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		metrics := map[string]float64{}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metrics[f[i+1]] = v
			}
		}
		switch name := m[1]; {
		case name == "BenchmarkExchange":
			res.ExchangeTime = append(res.ExchangeTime, metrics["ns/op"]/1e9)
			res.ExchangeCPU = append(res.ExchangeCPU, metrics["cpu-ns/op"]/1e9)
			res.ExchangeBytes = append(res.ExchangeBytes, metrics["msg-bytes/op"])
		case strings.HasPrefix(name, "BenchmarkHandshake/"):
			mode := strings.TrimPrefix(name, "BenchmarkHandshake/")
			res.HandshakeTime[mode] = append(res.HandshakeTime[mode], metrics["handshake-ns/op"]/1e9)
			res.HandshakeCPU[mode] = append(res.HandshakeCPU[mode], metrics["cpu-ns/op"]/1e9)
			res.HandshakeBytes[mode] = append(res.HandshakeBytes[mode], metrics["wire-bytes/op"])
		}
	}
	return nil
}
