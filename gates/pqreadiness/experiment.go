package pqreadiness

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/policies"
)

// Policies the experiment sets on its meshes' controllers.
const (
	allowAll     = "acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\n"
	policyOff    = allowAll
	policyPrefer = allowAll + "pq:\n  - nodes: [\"*\"]\n    mode: prefer\n"
	streamEvery  = 20 * time.Millisecond
	echoTimeout  = time.Second
	// settleTimeout: how long the pairs have to reach the modes they
	// want after a change (a restart, a policy): a failed exchange is
	// retried after 5 s, so this allows two retries.
	settleTimeout = 15 * time.Second
)

// Env is what the experiment runs with.
type Env struct {
	Mesh testbed.MeshConfig
	Log  io.Writer
	// Full runs the throughput rounds and the idle windows as well.
	Full bool
}

// runPair measures, on a mesh of two WireGuard nodes: the stream across
// rotations, and with Full the paired throughput rounds and the bytes an
// idle pair sends per rotation.
func runPair(ctx context.Context, env Env, exp policies.PQExperiment, res *Results) error {
	cfg := env.Mesh
	cfg.NodeArgs = append(slices.Clone(cfg.NodeArgs), "--pq-period", exp.Period.D.String())
	m, err := testbed.NewMesh(ctx, cfg, "wireguard", 2, 1420)
	if err != nil {
		return err
	}
	defer m.Close()
	a, b := m.Nodes()[0], m.Nodes()[1]
	if err := m.SetPolicy(ctx, policyPrefer); err != nil {
		return err
	}
	if err := waitModes(ctx, m, env.Log, every(localapi.PQPSK)); err != nil {
		return fmt.Errorf("prefer: %w", err)
	}

	// Across rotations: a stream both ways, and the keys it sees.
	window := 3*exp.Period.D + exp.Period.D/2
	res.Rotation = Rotation{Period: exp.Period.D, Window: window}
	keys := map[string]bool{}
	sctx, stop := context.WithTimeout(ctx, window)
	var wg sync.WaitGroup
	var sent, lost int
	var mu sync.Mutex
	for _, dir := range [][2]*testbed.MeshNode{{a, b}, {b, a}} {
		wg.Go(func() {
			s, l, err := stream(sctx, dir[0], dir[1], 41000)
			mu.Lock()
			defer mu.Unlock()
			sent, lost = sent+s, lost+l
			if err != nil {
				res.Problems = append(res.Problems, "rotation stream: "+err.Error())
			}
		})
	}
	for sctx.Err() == nil {
		if st, err := localapi.NewClient(a.Dir()).Status(ctx); err == nil {
			for _, p := range st.Peers {
				if p.PQKey != "" {
					keys[p.PQKey] = true
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	stop()
	wg.Wait()
	res.Rotation.Sent, res.Rotation.Lost, res.Rotation.Rotations = sent, lost, max(len(keys)-1, 0)
	fmt.Fprintf(env.Log, "rotation: %d keys seen in %v (period %v), %d of %d probes lost\n", len(keys), window, exp.Period.D, lost, sent)
	if !env.Full {
		return nil
	}

	// Paired throughput rounds on this one mesh, the order of the two
	// modes alternating from round to round so that neither always runs
	// on a warmer machine.
	type round struct {
		name, policy string
		want         string
		into         *[]float64
	}
	classical := round{"classical", policyOff, localapi.PQClassical, &res.Classical}
	hybrid := round{"hybrid", policyPrefer, localapi.PQPSK, &res.Hybrid}
	for i := range exp.ThroughputRounds.Value {
		order := []round{classical, hybrid}
		if i%2 == 1 {
			order = []round{hybrid, classical}
		}
		for _, mode := range order {
			if err := m.SetPolicy(ctx, mode.policy); err != nil {
				return err
			}
			if err := waitModes(ctx, m, env.Log, every(mode.want)); err != nil {
				return fmt.Errorf("round %d, %s: %w", i+1, mode.name, err)
			}
			r, err := testbed.Iperf3(ctx, b.Host(), a.Host(), b.Addr(), 3*time.Second)
			if err != nil {
				return fmt.Errorf("round %d, %s: iperf3: %w", i+1, mode.name, err)
			}
			*mode.into = append(*mode.into, r.GbitPerSecond())
			fmt.Fprintf(env.Log, "round %d %s: %.3f Gbit/s\n", i+1, mode.name, r.GbitPerSecond())
		}
	}

	// Idle: the bytes through a's link over the same window, classical
	// and then hybrid; the difference per rotation is the exchange and
	// its handshake on the wire.
	res.IdleBytes = map[string]float64{}
	rotations := 0
	for _, mode := range []struct {
		name, policy, want string
	}{{"classical", policyOff, localapi.PQClassical}, {"hybrid", policyPrefer, localapi.PQPSK}} {
		if err := m.SetPolicy(ctx, mode.policy); err != nil {
			return err
		}
		if err := waitModes(ctx, m, env.Log, every(mode.want)); err != nil {
			return fmt.Errorf("idle, %s: %w", mode.name, err)
		}
		keys := map[string]bool{}
		before, err := a.Host().LinkBytes()
		if err != nil {
			return err
		}
		for end := time.Now().Add(exp.IdleWindow.D); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if st, err := localapi.NewClient(a.Dir()).Status(ctx); err == nil {
				for _, p := range st.Peers {
					if p.PQKey != "" {
						keys[p.PQKey] = true
					}
				}
			}
		}
		after, err := a.Host().LinkBytes()
		if err != nil {
			return err
		}
		res.IdleBytes[mode.name] = float64(after - before)
		if mode.name == "hybrid" {
			rotations = max(len(keys)-1, 0)
		}
	}
	if rotations > 0 {
		res.RotationBytes = (res.IdleBytes["hybrid"] - res.IdleBytes["classical"]) / float64(rotations)
	}
	return nil
}

// runWaves migrates a fleet to the exchange in waves and rolls the last
// wave back. The fleet runs under pq: prefer with every node started
// without the exchange (--pq=false); each wave restarts nodes with it, as
// an upgrade would. At every wave, each pair of two capable nodes must
// reach the preshared key, every other pair classical WireGuard, and every
// ordered pair must ping through the tunnel. The rollback then sets the
// last wave's nodes to pq: off by policy under a stream between every
// ordered pair.
func runWaves(ctx context.Context, env Env, exp policies.PQExperiment, res *Results) error {
	cfg := env.Mesh
	cfg.NodeArgs = append(slices.Clone(cfg.NodeArgs), "--pq-period", exp.Period.D.String(), "--pq=false")
	n := exp.Fleet.Value
	m, err := testbed.NewMesh(ctx, cfg, "wireguard", n, 1420)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.SetPolicy(ctx, policyPrefer); err != nil {
		return err
	}
	nodes := m.Nodes()
	// The testbed names node i (from 0) n(i+1).
	index := func(name string) int {
		var i int
		if _, err := fmt.Sscanf(name, "n%d", &i); err != nil {
			return -1
		}
		return i - 1
	}
	capable := 0
	wantAt := func(self string, p localapi.Peer) string {
		if a, b := index(self), index(p.Name); a >= 0 && b >= 0 && a < capable && b < capable {
			return localapi.PQPSK
		}
		return localapi.PQClassical
	}
	for _, w := range exp.Waves {
		want := w.Value * n / 100
		for ; capable < want; capable++ {
			if err := m.RestartNode(ctx, capable, "--pq=true"); err != nil {
				return fmt.Errorf("wave %d%%: %w", w.Value, err)
			}
		}
		if err := m.WaitPeers(ctx); err != nil {
			return fmt.Errorf("wave %d%%: %w", w.Value, err)
		}
		wave := Wave{Percent: w.Value, Nodes: n, Capable: capable, Modes: map[string]int{}}
		if err := waitModes(ctx, m, env.Log, wantAt); err != nil {
			wave.Problem = err.Error()
		}
		for _, from := range nodes {
			st, err := localapi.NewClient(from.Dir()).Status(ctx)
			if err != nil {
				return err
			}
			for _, p := range st.Peers {
				pair := Pair{From: st.Self.Name, To: p.Name, Mode: p.PQ, Want: wantAt(st.Self.Name, p)}
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := localapi.NewClient(from.Dir()).Ping(pctx, string(p.ID), 3*time.Second)
				cancel()
				pair.OK = err == nil
				if err != nil {
					pair.Error = err.Error()
				}
				wave.Pairs = append(wave.Pairs, pair)
				wave.Modes[p.PQ]++
			}
		}
		fmt.Fprintf(env.Log, "wave %d%%: %d of %d nodes capable, pairs by mode %v\n", w.Value, capable, n, wave.Modes)
		res.Waves = append(res.Waves, wave)
	}

	// Roll back the last wave's nodes (those made capable after the
	// wave before it) by policy, under a stream between every pair.
	last := exp.Waves[len(exp.Waves)-2].Value * n / 100
	var sel []string
	back := map[string]bool{}
	for _, nd := range nodes[last:] {
		st, err := localapi.NewClient(nd.Dir()).Status(ctx)
		if err != nil {
			return err
		}
		sel = append(sel, fmt.Sprintf("%q", "id:"+string(st.Self.ID)))
		back[st.Self.Name] = true
	}
	rb := &Rollback{Nodes: len(sel)}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	port := 42000
	for i, from := range nodes {
		for j, to := range nodes {
			if i == j {
				continue
			}
			port++
			port := port
			wg.Go(func() {
				s, l, err := stream(sctx, from, to, port)
				mu.Lock()
				defer mu.Unlock()
				rb.Sent, rb.Lost = rb.Sent+s, rb.Lost+l
				if err != nil {
					res.Problems = append(res.Problems, "rollback stream: "+err.Error())
				}
			})
		}
	}
	time.Sleep(time.Second)
	policy := allowAll + "pq:\n  - nodes: [" + strings.Join(sel, ", ") + "]\n    mode: off\n  - nodes: [\"*\"]\n    mode: prefer\n"
	err = m.SetPolicy(ctx, policy)
	if err == nil {
		err = waitModes(ctx, m, env.Log, func(self string, p localapi.Peer) string {
			if back[self] || back[p.Name] {
				return localapi.PQClassical
			}
			return localapi.PQPSK
		})
	}
	time.Sleep(2 * exp.Period.D) // rotations and handshakes after it
	stop()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	for _, nd := range nodes {
		st, err := localapi.NewClient(nd.Dir()).Status(ctx)
		if err != nil {
			return err
		}
		for _, p := range st.Peers {
			if back[st.Self.Name] || back[p.Name] {
				rb.Of++
				if p.PQ == localapi.PQClassical {
					rb.Classical++
				}
			}
		}
	}
	fmt.Fprintf(env.Log, "rollback of %d nodes: %d of %d probes lost; %d of %d pairs classical\n", rb.Nodes, rb.Lost, rb.Sent, rb.Classical, rb.Of)
	res.Rollback = rb
	return nil
}

// waitModes waits until every node's every peer is in the mode want
// says for the pair (the node's name, the peer's). When they do not
// settle, the error says which pairs, and the daemons' logs go to log.
func waitModes(ctx context.Context, m *testbed.Mesh, log io.Writer, want func(self string, p localapi.Peer) string) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		var bad []string
		for _, nd := range m.Nodes() {
			st, err := localapi.NewClient(nd.Dir()).Status(ctx)
			if err != nil {
				return err
			}
			for _, p := range st.Peers {
				if w := want(st.Self.Name, p); p.PQ != w {
					bad = append(bad, fmt.Sprintf("%s -> %s: %s, want %s (%s)", st.Self.Name, p.Name, p.PQ, w, p.PQReason))
				}
			}
		}
		if len(bad) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, nd := range m.Nodes() {
				fmt.Fprintf(log, "== log of the daemon in %s\n%s\n", nd.Dir(), nd.Process().Logs())
			}
			return fmt.Errorf("pairs not settled within %v: %s", settleTimeout, strings.Join(bad[:min(len(bad), 5)], "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// every is a want for waitModes: every pair in mode.
func every(mode string) func(string, localapi.Peer) string {
	return func(string, localapi.Peer) string { return mode }
}

// stream sends a numbered UDP datagram from from to an echo on to's mesh
// address every streamEvery until ctx ends, and counts those whose echo
// did not come back within echoTimeout of being sent. WireGuard queues
// what it sends while a handshake is under way, so a stall shows as late
// echoes: they count as lost.
func stream(ctx context.Context, from, to *testbed.MeshNode, port int) (sent, lost int, err error) {
	at := netip.AddrPortFrom(to.Addr(), uint16(port))
	pc, err := to.Host().ListenPacket("udp", at.String())
	if err != nil {
		return 0, 0, err
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], addr)
		}
	}()
	conn, err := from.Host().DialContext(context.WithoutCancel(ctx), "udp", at.String())
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	var mu sync.Mutex
	var sentAt []time.Time // by sequence number less one
	onTime := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		seen := map[uint64]bool{}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			if n != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			mu.Lock()
			if seq >= 1 && seq <= uint64(len(sentAt)) && !seen[seq] && now.Sub(sentAt[seq-1]) <= echoTimeout {
				seen[seq] = true
				onTime++
			}
			mu.Unlock()
		}
	}()
	t := time.NewTicker(streamEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		mu.Lock()
		sentAt = append(sentAt, time.Now())
		seq := uint64(len(sentAt))
		mu.Unlock()
		if _, err := conn.Write(binary.BigEndian.AppendUint64(nil, seq)); err == nil {
			sent++
		} else {
			mu.Lock()
			sentAt[seq-1] = time.Time{} // never on time: not sent
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	time.Sleep(echoTimeout) // the last echoes
	conn.SetReadDeadline(time.Unix(1, 0))
	<-done
	mu.Lock()
	defer mu.Unlock()
	return sent, sent - onTime, nil
}
