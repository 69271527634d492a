package compat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/internal/testbed"
)

// Rolling is a rolling upgrade under traffic, from one release to this
// tree's: the controller first, then the nodes one by one, while every
// ordered pair of nodes exchanges a probe every probeEvery.
type Rolling struct {
	From  string        `json:"from"`
	Nodes int           `json:"nodes"`
	Steps []RollingStep `json:"steps"`
	// Probes sent in all, and lost (no answer within probeTimeout).
	Sent     int      `json:"probes_sent"`
	Lost     int      `json:"probes_lost"`
	Problems []string `json:"problems,omitempty"`
}

// RollingStep is one restart: of the controller, or of one node.
type RollingStep struct {
	What string `json:"what"`
	// Took: from stopping the old daemon to the new one serving (the
	// controller answering /healthz; a node running with every peer).
	Took time.Duration `json:"took_ns"`
	// Interruption: the longest time, from this step's start to the next
	// one's, between two answered probes of one pair that involves the
	// node (for the controller, of any pair): 0 when none was missed.
	Interruption time.Duration `json:"interruption_ns"`
	// Lost: probes of those pairs sent in that time and not answered;
	// LostBy: how many of them each pair lost ("n1->n2").
	Lost   int            `json:"probes_lost"`
	LostBy map[string]int `json:"lost_by_pair,omitempty"`
	// DeadBefore are the pairs involved that had no answered probe in
	// the half second before the step: they are not held against it.
	DeadBefore []string `json:"pairs_dead_before,omitempty"`
}

const (
	probeEvery   = 20 * time.Millisecond
	probeTimeout = time.Second
	probePort    = 7999
	// settle is how long traffic runs before the first step and after
	// each one.
	settle = 2 * time.Second
)

// CheckRolling upgrades a mesh of nodes of rel, on rel's controller, to
// this tree's controller and daemon (cur), in the supported order, while
// the nodes probe each other, and measures each step.
func CheckRolling(ctx context.Context, rel Built, curController, curDaemon string, nodes int, work string, log io.Writer) (*Rolling, error) {
	res := &Rolling{From: rel.Release, Nodes: nodes}
	tb, err := testbed.Create(ctx, testbed.Options{Hosts: 1 + nodes})
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	dir, err := os.MkdirTemp(work, "rolling-")
	if err != nil {
		return nil, err
	}
	h0 := tb.Hosts[0]
	listen := netip.AddrPortFrom(h0.Addr, 8443).String()
	ctlArgs := []string{"serve", "--data-dir", dir, "--listen", listen, "--metrics-listen", "127.0.0.1:9469"}
	ctl, err := startIn(ctx, h0, rel.Controller, log, ctlArgs...)
	if err != nil {
		return nil, err
	}
	defer func() { ctl.stop() }()
	caFile := filepath.Join(dir, "tls", "ca.pem")
	if err := waitHealthy(ctx, h0, "https://"+listen, caFile, ctl.exited); err != nil {
		return nil, fmt.Errorf("%s's controller: %w", rel.Release, err)
	}
	out, err := exec.CommandContext(ctx, rel.Controller, "authkey", "create", "--data-dir", dir, "--reusable").Output()
	if err != nil {
		return nil, fmt.Errorf("authkey create: %w", err)
	}
	key := strings.TrimSpace(string(out))
	type node struct {
		h    *testbed.Host
		args []string
		p    *proc
		*member
	}
	ns := make([]*node, nodes)
	ms := make([]*member, nodes)
	for i := range ns {
		state := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		n := &node{h: tb.Hosts[1+i], member: &member{name: state, state: state}}
		ms[i] = n.member
		n.args = []string{"--state-dir", n.state, "--controller", "https://" + listen, "--controller-ca", caFile,
			"--auth-key", key, "--backend", "wireguard", "--interface", fmt.Sprintf("rnr%d", i+1), "--hostname", fmt.Sprintf("n%d", i+1),
			"--metrics-listen", "127.0.0.1:9470"}
		if n.p, err = startIn(ctx, n.h, rel.Daemon, log, n.args...); err != nil {
			return nil, err
		}
		defer func() { n.p.stop() }()
		ns[i] = n
	}
	if err := waitMesh(ctx, ms, 60*time.Second); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("%s's mesh: %v", rel.Release, err))
		return res, nil
	}

	// Probes between every ordered pair, from a socket bound to no
	// address in the sender's namespace to an echo on every address of
	// the receiver's: both survive the daemon's restart.
	pctx, stopProbes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var probes []probe
	for i, a := range ns {
		ln, err := a.h.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", probePort))
		if err != nil {
			stopProbes()
			return nil, err
		}
		defer ln.Close()
		wg.Go(func() { echo(pctx, ln) })
		for j, b := range ns {
			if i == j {
				continue
			}
			wg.Go(func() {
				got := probePair(pctx, a.h, netip.AddrPortFrom(b.addr, probePort), i, j)
				mu.Lock()
				probes = append(probes, got...)
				mu.Unlock()
			})
		}
	}
	type window struct {
		what     string
		node     int // -1: the controller
		from, to time.Time
	}
	var windows []window
	step := func(what string, nodeIdx int, restart func() error) {
		time.Sleep(settle)
		w := window{what: what, node: nodeIdx, from: time.Now()}
		start := time.Now()
		err := restart()
		res.Steps = append(res.Steps, RollingStep{What: what, Took: time.Since(start)})
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("%s: %v", what, err))
		}
		windows = append(windows, w)
	}
	step("controller "+rel.Release+" -> this tree", -1, func() error {
		ctl.stop()
		ctl, err = startIn(ctx, h0, curController, log, ctlArgs...)
		if err != nil {
			return err
		}
		return waitHealthy(ctx, h0, "https://"+listen, caFile, ctl.exited)
	})
	for i, n := range ns {
		step(fmt.Sprintf("node n%d %s -> this tree", i+1, rel.Release), i, func() error {
			n.p.stop()
			if n.p, err = startIn(ctx, n.h, curDaemon, log, n.args...); err != nil {
				return err
			}
			return waitMesh(ctx, ms, 30*time.Second)
		})
	}
	time.Sleep(settle)
	end := time.Now() // the last probe is sent before it
	stopProbes()
	wg.Wait()
	for k := range windows {
		windows[k].to = end
		if k+1 < len(windows) {
			windows[k].to = windows[k+1].from
		}
	}
	for _, p := range probes {
		res.Sent++
		if !p.ok {
			res.Lost++
		}
	}
	for k, w := range windows {
		involved := func(p probe) bool { return w.node < 0 || p.from == w.node || p.to == w.node }
		gap, lost, by, dead := interruption(probes, involved, w.from, w.to)
		res.Steps[k].Interruption, res.Steps[k].Lost, res.Steps[k].LostBy, res.Steps[k].DeadBefore = gap, lost, by, dead
	}
	return res, nil
}

// probe is one probe of the pair from -> to, sent at sent.
type probe struct {
	from, to int
	sent     time.Time
	ok       bool
}

// probePair sends a probe from host h to dst every probeEvery until ctx is
// done, and returns each with whether its echo came back within
// probeTimeout.
func probePair(ctx context.Context, h *testbed.Host, dst netip.AddrPort, from, to int) []probe {
	c, err := h.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return nil
	}
	defer c.Close()
	var mu sync.Mutex
	var out []probe
	answered := map[uint64]bool{}
	go func() {
		buf := make([]byte, 64)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n >= 8 {
				mu.Lock()
				answered[binary.BigEndian.Uint64(buf)] = true
				mu.Unlock()
			}
		}
	}()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	var seq uint64
	var sent []time.Time
	for {
		select {
		case <-ctx.Done():
			time.Sleep(probeTimeout)
			mu.Lock()
			defer mu.Unlock()
			for i, s := range sent {
				out = append(out, probe{from: from, to: to, sent: s, ok: answered[uint64(i)]})
			}
			return out
		case <-t.C:
		}
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, seq)
		c.WriteTo(b, net.UDPAddrFromAddrPort(dst)) // a failed send is a lost probe
		sent = append(sent, time.Now())
		seq++
	}
}

// echo answers every datagram on c with itself until ctx is done.
func echo(ctx context.Context, c net.PacketConn) {
	go func() { <-ctx.Done(); c.Close() }()
	buf := make([]byte, 64)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.WriteTo(buf[:n], addr)
	}
}

// healthyFor is how recently before a step a pair must have had a probe
// answered for the step to be held to it.
const healthyFor = 500 * time.Millisecond

// interruption returns, over the probes that involved sends in [from,
// to), the longest time between two answered probes of one pair beyond
// the probe interval, and how many were lost; pairs with no answered
// probe in the healthyFor before from are left out, and named.
func interruption(probes []probe, involved func(probe) bool, from, to time.Time) (time.Duration, int, map[string]int, []string) {
	type key struct{ from, to int }
	name := func(k key) string { return fmt.Sprintf("n%d->n%d", k.from+1, k.to+1) }
	seen, healthy := map[key]bool{}, map[key]bool{}
	for _, p := range probes {
		if involved(p) {
			k := key{p.from, p.to}
			seen[k] = true
			if p.ok && !p.sent.Before(from.Add(-healthyFor)) && p.sent.Before(from) {
				healthy[k] = true
			}
		}
	}
	var dead []string
	for k := range seen {
		if !healthy[k] {
			dead = append(dead, name(k))
		}
	}
	slices.Sort(dead)
	byPair := map[key][]probe{}
	lost := 0
	lostBy := map[string]int{}
	for _, p := range probes {
		if !involved(p) || !healthy[key{p.from, p.to}] || p.sent.Before(from) || !p.sent.Before(to) {
			continue
		}
		byPair[key{p.from, p.to}] = append(byPair[key{p.from, p.to}], p)
		if !p.ok {
			lost++
			lostBy[name(key{p.from, p.to})]++
		}
	}
	var longest time.Duration
	for _, ps := range byPair {
		slices.SortFunc(ps, func(a, b probe) int { return a.sent.Compare(b.sent) })
		last := from
		for _, p := range ps {
			if !p.ok {
				continue
			}
			if gap := p.sent.Sub(last) - probeEvery; gap > longest {
				longest = gap
			}
			last = p.sent
		}
		if gap := to.Sub(last) - probeEvery; gap > longest {
			longest = gap
		}
	}
	return max(longest, 0), lost, lostBy, dead
}
