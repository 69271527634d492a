package matrix

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/etcdproc"
	"github.com/rustynet/rustynet/internal/ports"
	"github.com/rustynet/rustynet/internal/promtext"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
)

// Env is what running the matrix needs.
type Env struct {
	// ControllerBin and DaemonBin are the built rustynet-controller and
	// rustynetd.
	ControllerBin, DaemonBin string
	// EtcdBin is the etcd server (etcdproc.Build), for the cells on
	// store=etcd3.
	EtcdBin string
	// Work is a scratch directory.
	Work string
	Log  io.Writer
	// Progress, if set, is told how much of the matrix is done (0 to 1).
	Progress func(float64)
}

func (env Env) mesh() testbed.MeshConfig {
	return testbed.MeshConfig{ControllerBin: env.ControllerBin, DaemonBin: env.DaemonBin, Work: env.Work, Log: env.Log}
}

// Result is what one cell measured.
type Result struct {
	Cell         string                 `json:"cell"`
	Measurements []evidence.Measurement `json:"measurements"`
	Error        string                 `json:"error,omitempty"`
	// Baseline and Paired are set by RunPaired: the baseline's values,
	// and each measurement's per-round means on either side.
	Baseline []evidence.Measurement `json:"baseline,omitempty"`
	Paired   []Paired               `json:"paired,omitempty"`
}

// Run measures every cell, one after the other. A cell that cannot be
// measured records its error and the run goes on.
func Run(ctx context.Context, env Env, cells []Cell) []Result {
	var out []Result
	for i, c := range cells {
		out = append(out, runOne(ctx, env, c))
		if env.Progress != nil {
			env.Progress(float64(i+1) / float64(len(cells)))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

// runOne measures one cell with env's binaries.
func runOne(ctx context.Context, env Env, c Cell) Result {
	fmt.Fprintf(env.Log, "== %s (%d repetitions)\n", c.Name(), c.Repetitions)
	start := time.Now()
	ms, err := runCell(ctx, env, c)
	r := Result{Cell: c.Name(), Measurements: ms}
	if err != nil {
		r.Error = err.Error()
		fmt.Fprintf(env.Log, "   error: %v\n", err)
	}
	for _, m := range ms {
		fmt.Fprintf(env.Log, "   %s: %v %s\n", m.Name, roundAll(m.Values), m.Unit)
	}
	fmt.Fprintf(env.Log, "   (%v)\n", time.Since(start).Round(time.Millisecond))
	return r
}

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x*1000) / 1000
	}
	return out
}

func runCell(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	switch c.Kind {
	case "throughput":
		return throughput(ctx, env, c)
	case "handshake":
		return handshake(ctx, env, c)
	case "reconnect":
		return reconnect(ctx, env, c)
	case "route-apply":
		return routeApply(ctx, env, c)
	case "netmap-propagation":
		return propagation(ctx, env, c)
	}
	return nil, fmt.Errorf("kind %q has no runner", c.Kind)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func throughput(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	r, err := newRig(ctx, env, c)
	if err != nil {
		return nil, err
	}
	defer r.close()
	ms, err := r.measure(ctx, c.Repetitions)
	return append(ms, r.peaks("after the cell")...), err
}

// rig is a throughput cell's mesh, set up and ready to measure.
type rig struct {
	c    Cell
	m    *testbed.Mesh
	a, b *testbed.MeshNode
}

func newRig(ctx context.Context, env Env, c Cell) (*rig, error) {
	m, err := testbed.StartMesh(ctx, env.mesh(), c.Params["backend"], atoi(c.Params["peers"]), atoi(c.Params["mtu"]))
	if err != nil {
		return nil, err
	}
	if err := m.WaitPeers(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return &rig{c: c, m: m, a: m.Nodes()[0], b: m.Nodes()[1]}, nil
}

func (r *rig) close() { r.m.Close() }

// measure runs reps repetitions of the cell's traffic.
func (r *rig) measure(ctx context.Context, reps int) ([]evidence.Measurement, error) {
	c := r.c
	c.Repetitions = reps
	switch c.Params["traffic"] {
	case "tcp-bulk":
		return tcpBulk(ctx, r.m, r.a, r.b, c)
	case "udp-small":
		return udpSmall(ctx, r.m, r.a, r.b, c)
	case "request-response":
		return requestResponse(ctx, r.a, r.b, c)
	}
	return nil, fmt.Errorf("traffic %q has no runner", c.Params["traffic"])
}

// peaks reads every node's peak RSS.
func (r *rig) peaks(when string) []evidence.Measurement {
	var ms []evidence.Measurement
	for i, nd := range r.m.Nodes() {
		if _, peak, err := nd.Process().Memory(); err == nil {
			ms = append(ms, evidence.Measurement{Name: fmt.Sprintf("rss_peak_node%d", i+1), Unit: "MiB",
				Method: "VmHWM of the rustynetd process " + when, Values: []float64{float64(peak) / (1 << 20)}})
		}
	}
	return ms
}

// tcpBulk alternates iperf3 runs over the raw path and through the tunnel.
func tcpBulk(ctx context.Context, m *testbed.Mesh, a, b *testbed.MeshNode, c Cell) ([]evidence.Measurement, error) {
	var raw, tun, ratio, cpuPerGB []float64
	for range c.Repetitions {
		r, err := testbed.Iperf3(ctx, b.Host(), a.Host(), b.Host().Addr, c.Duration)
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		c0 := m.CPU()
		t, err := testbed.Iperf3(ctx, b.Host(), a.Host(), b.Addr(), c.Duration)
		if err != nil {
			return nil, fmt.Errorf("tunnel: %w", err)
		}
		cpu := m.CPU() - c0
		raw = append(raw, r.GbitPerSecond())
		tun = append(tun, t.GbitPerSecond())
		ratio = append(ratio, t.BitsPerSecond/r.BitsPerSecond)
		cpuPerGB = append(cpuPerGB, cpu.Seconds()/(float64(t.Bytes)/1e9))
	}
	method := fmt.Sprintf("iperf3 TCP, %v per run, raw veth and tunnel alternating in the same run", c.Duration)
	return []evidence.Measurement{
		{Name: "raw_throughput", Unit: "Gbit/s", Method: method, Values: raw},
		{Name: "tunnel_throughput", Unit: "Gbit/s", Method: method, Values: tun},
		{Name: "tunnel_to_raw", Unit: "ratio", Method: method, Values: ratio},
		{Name: "cpu_per_gb", Unit: "s/GB", Method: "CPU time of every rustynetd during the tunnel run, per GB carried", Values: cpuPerGB},
	}, nil
}

// udpSmall sends 64-byte datagrams as fast as one sender can for the
// cell's duration, over the raw path and through the tunnel, and counts
// what arrives.
func udpSmall(ctx context.Context, m *testbed.Mesh, a, b *testbed.MeshNode, c Cell) ([]evidence.Measurement, error) {
	var rawPPS, tunPPS, loss []float64
	for range c.Repetitions {
		r, _, err := blast(ctx, a.Host(), b.Host(), b.Host().Addr, c.Duration)
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		t, lost, err := blast(ctx, a.Host(), b.Host(), b.Addr(), c.Duration)
		if err != nil {
			return nil, fmt.Errorf("tunnel: %w", err)
		}
		rawPPS, tunPPS, loss = append(rawPPS, r), append(tunPPS, t), append(loss, lost)
	}
	method := fmt.Sprintf("one sender of 64-byte UDP datagrams as fast as it can for %v (more than the path carries), packets received per second", c.Duration)
	return []evidence.Measurement{
		{Name: "raw_pps", Unit: "packets/s", Method: method, Values: rawPPS},
		{Name: "tunnel_pps", Unit: "packets/s", Method: method, Values: tunPPS},
		{Name: "tunnel_loss", Unit: "%", Method: method + ", share sent but not received: the overload the sender makes, shed by the path, not a fault", Values: loss},
	}, nil
}

func blast(ctx context.Context, from, to *testbed.Host, dst netip.Addr, d time.Duration) (pps, lossPct float64, err error) {
	pc, err := to.ListenPacket("udp", netip.AddrPortFrom(dst, 0).String())
	if err != nil {
		return 0, 0, err
	}
	defer pc.Close()
	target := pc.LocalAddr().String()
	var got int64
	var first, last time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			pc.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			now := time.Now()
			if got == 0 {
				first = now
			}
			last = now
			got++
		}
	}()
	c, err := from.DialContext(ctx, "udp", target)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	var sent int64
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		if _, err := c.Write(msg); err == nil {
			sent++
		}
	}
	<-done
	if got < 2 || !last.After(first) {
		return 0, 100, fmt.Errorf("%d of %d datagrams arrived", got, sent)
	}
	return float64(got) / last.Sub(first).Seconds(), 100 * float64(sent-got) / float64(sent), nil
}

// requestResponse measures round trips of 64-byte messages over one TCP
// connection through the tunnel and over the raw path.
func requestResponse(ctx context.Context, a, b *testbed.MeshNode, c Cell) ([]evidence.Measurement, error) {
	const rounds = 2000
	var out []evidence.Measurement
	for _, path := range []struct {
		name string
		dst  netip.Addr
	}{{"raw", b.Host().Addr}, {"tunnel", b.Addr()}} {
		var p50, p99 []float64
		for range c.Repetitions {
			lat, err := pingPong(ctx, a.Host(), b.Host(), path.dst, rounds)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path.name, err)
			}
			rtt := make([]float64, len(lat))
			for i, d := range lat {
				rtt[i] = ms(d)
			}
			p50 = append(p50, stats.Quantile(rtt, 0.50))
			p99 = append(p99, stats.Quantile(rtt, 0.99))
		}
		method := fmt.Sprintf("%d round trips of 64 bytes on one TCP connection, percentile (nearest rank) per repetition", rounds)
		out = append(out,
			evidence.Measurement{Name: path.name + "_rtt_p50", Unit: "ms", Method: method, Values: p50},
			evidence.Measurement{Name: path.name + "_rtt_p99", Unit: "ms", Method: method, Values: p99})
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pingPong(ctx context.Context, from, to *testbed.Host, dst netip.Addr, rounds int) ([]time.Duration, error) {
	ln, err := to.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := from.DialContext(dctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 64)
	lat := make([]time.Duration, 0, rounds)
	for i := range rounds {
		binary.BigEndian.PutUint32(buf, uint32(i))
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// handshake measures the first ping to a peer, which waits for the
// session to be set up, against steady pings afterwards; each repetition
// builds a new pair of nodes.
func handshake(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	var first, steady []float64
	for range c.Repetitions {
		m, err := testbed.StartMesh(ctx, env.mesh(), c.Params["backend"], 2, 1420)
		if err != nil {
			return nil, err
		}
		err = func() error {
			defer m.Close()
			if err := m.WaitPeers(ctx); err != nil {
				return err
			}
			cl := localapi.NewClient(m.Nodes()[0].Dir())
			peer := m.Nodes()[1].Addr().String()
			r, err := cl.Ping(ctx, peer, 10*time.Second)
			if err != nil {
				return fmt.Errorf("first ping: %w", err)
			}
			first = append(first, ms(r.RTT))
			var rtts []float64
			for range 10 {
				r, err := cl.Ping(ctx, peer, 5*time.Second)
				if err != nil {
					return err
				}
				rtts = append(rtts, ms(r.RTT))
			}
			steady = append(steady, stats.Median(rtts))
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	return []evidence.Measurement{
		{Name: "first_ping", Unit: "ms", Method: "ICMP echo through the tunnel to a peer with no session yet (includes the handshake), a fresh pair per repetition", Values: first},
		{Name: "steady_ping", Unit: "ms", Method: "median of 10 ICMP echoes after the first", Values: steady},
	}, nil
}

// reconnect restarts the controller and times each node back to running.
func reconnect(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	m, err := testbed.StartMesh(ctx, env.mesh(), c.Params["backend"], 3, 1420)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var lat []float64
	state := func(nd *testbed.MeshNode) string {
		st, err := localapi.NewClient(nd.Dir()).Status(ctx)
		if err != nil {
			return ""
		}
		return st.State
	}
	for range c.Repetitions {
		m.Controller().Stop(10 * time.Second)
		deadline := time.Now().Add(30 * time.Second)
		for _, nd := range m.Nodes() {
			for state(nd) != localapi.StateOffline {
				if time.Now().After(deadline) {
					return nil, errors.New("nodes did not notice the controller stopping within 30s")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if err := m.StartController(ctx); err != nil {
			return nil, err
		}
		t0 := time.Now()
		pending := slices.Clone(m.Nodes())
		for len(pending) > 0 {
			for i := 0; i < len(pending); i++ {
				if state(pending[i]) == localapi.StateRunning {
					lat = append(lat, ms(time.Since(t0)))
					pending = slices.Delete(pending, i, i+1)
					i--
				}
			}
			if time.Since(t0) > time.Minute {
				return nil, errors.New("nodes did not reconnect within a minute")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	method := fmt.Sprintf("from the restarted controller serving to each of 3 nodes reporting running, polled every 5 ms, %d restarts", c.Repetitions)
	return []evidence.Measurement{
		{Name: "reconnect", Unit: "ms", Method: method, Values: lat},
		{Name: "reconnect_p50", Unit: "ms", Method: method + ", median", Values: []float64{stats.Quantile(lat, 0.50)}},
		{Name: "reconnect_p99", Unit: "ms", Method: method + ", 99th percentile (nearest rank)", Values: []float64{stats.Quantile(lat, 0.99)}},
	}, nil
}

// propagation registers nodes simulated by long-poll clients against the
// controllers of the cell's store on loopback (store=bolt: one controller;
// store=etcd3: 3 replicas over a 3-member etcd cluster, node i using
// replica i mod 3), changes one node through the first controller, and
// times the change reaching each.
func propagation(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	n := atoi(c.Params["nodes"])
	dir, err := os.MkdirTemp(env.Work, "propagation-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cs, err := startControllers(ctx, env, c.Param("store"), dir)
	if err != nil {
		return nil, err
	}
	defer cs.stop()
	base := cs.bases[0]
	url := func(i int) string { return cs.bases[i%len(cs.bases)] }
	out, err := exec.CommandContext(ctx, env.ControllerBin, "authkey", "create", "--data-dir", cs.dirs[0], "--reusable").Output()
	if err != nil {
		return nil, err
	}
	key := string(bytes.TrimSpace(out))
	pem, err := os.ReadFile(filepath.Join(cs.dirs[0], "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: n + 16}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	rss0, err := cs.memory()
	if err != nil {
		return nil, err
	}
	creds, err := registerMany(ctx, hc, url, key, n)
	if err != nil {
		return nil, err
	}
	rssReg, err := cs.memory()
	if err != nil {
		return nil, err
	}
	var first map[string]any
	if err := getJSON(ctx, hc, base+"/v1/netmap?since=0&wait=0", creds[0], &first); err != nil {
		return nil, err
	}
	rev := uint64(first["revision"].(float64))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// An arrival is a response and the endpoints it brought: only the
	// one carrying a repetition's change counts for it (a replica's poll
	// may also answer with the registrations it had not applied yet).
	type arrival struct {
		at        time.Time
		endpoints []string
	}
	arrivals := make(chan arrival, 4*n)
	var wg sync.WaitGroup
	// The polls' connections are opened dialing at a time: thousands of
	// TLS handshakes at once outlast the controller's handshake timeout
	// on 2 cores, as a fleet's reconnect storm would without its backoff.
	const dialing = 64
	slots := make(chan struct{}, dialing)
	for i := 1; i < n; i++ {
		wg.Go(func() {
			since := rev
			slots <- struct{}{}
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			first := httptrace.WithClientTrace(pctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { release() }})
			for iter := 0; pctx.Err() == nil; iter++ {
				var resp struct {
					Revision     uint64 `json:"revision"`
					PeersChanged []struct {
						Endpoints []string `json:"endpoints"`
					} `json:"peers_changed"`
				}
				rctx := pctx
				if iter == 0 {
					rctx = first
				}
				if err := getJSON(rctx, hc, fmt.Sprintf("%s/v1/netmap?since=%d&wait=60", url(i), since), creds[i], &resp); err != nil {
					return
				}
				if resp.Revision != since {
					a := arrival{at: time.Now()}
					for _, p := range resp.PeersChanged {
						a.endpoints = append(a.endpoints, p.Endpoints...)
					}
					arrivals <- a
				}
				since = resp.Revision
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	var p50, p99 []float64
	if err := cs.waitPolls(ctx, n-1); err != nil {
		return nil, err
	}
	rssPoll, err := cs.memory()
	if err != nil {
		return nil, err
	}
	for rep := range c.Repetitions {
		ep := fmt.Sprintf("192.0.2.1:%d", 20000+rep)
		body := fmt.Sprintf(`{"endpoints":[%q]}`, ep)
		t0 := time.Now()
		if err := postJSON(ctx, hc, base+"/v1/endpoints", creds[0], body); err != nil {
			return nil, err
		}
		var lat []float64
		timeout := time.After(time.Minute)
		for len(lat) < n-1 {
			select {
			case a := <-arrivals:
				if slices.Contains(a.endpoints, ep) {
					lat = append(lat, ms(a.at.Sub(t0)))
				}
			case <-timeout:
				return nil, fmt.Errorf("repetition %d: %d of %d nodes heard of the change within a minute", rep, len(lat), n-1)
			}
		}
		p50 = append(p50, stats.Quantile(lat, 0.50))
		p99 = append(p99, stats.Quantile(lat, 0.99))
		if err := cs.waitPolls(ctx, n-1); err != nil { // the polls re-arm
			return nil, err
		}
	}
	method := fmt.Sprintf("one endpoint change reaching %d long-polling clients (HTTP/1.1 over TLS, one connection each, in this process) from %s on loopback", n-1, cs.what)
	kib := func(a, b int64) float64 { return (float64(b) - float64(a)) / 1024 / float64(n) }
	return []evidence.Measurement{
		{Name: "propagation_p50", Unit: "ms", Method: method + ", median (nearest rank) per repetition", Values: p50},
		{Name: "propagation_p99", Unit: "ms", Method: method + ", 99th percentile (nearest rank) per repetition", Values: p99},
		{Name: "controller_rss", Unit: "MiB", Method: fmt.Sprintf("VmRSS of %s with %d nodes registered and %d long-polls open", cs.whose, n, n-1), Values: []float64{float64(rssPoll) / (1 << 20)}},
		{Name: "controller_kib_per_node", Unit: "KiB", Method: fmt.Sprintf("growth of %s VmRSS from start to %d nodes registered (no poll open), per node", cs.whose, n), Values: []float64{kib(rss0, rssReg)}},
		{Name: "controller_kib_per_polling_node", Unit: "KiB", Method: fmt.Sprintf("growth of %s VmRSS from start to %d nodes registered with %d long-polls open (TLS connection, handler), per node", cs.whose, n, n-1), Values: []float64{kib(rss0, rssPoll)}},
		{Name: "controller_kib_per_poll", Unit: "KiB", Method: fmt.Sprintf("growth of %s VmRSS from %d nodes registered (no poll open) to %d long-polls open, per poll: what an open long-poll costs (its TLS connection and what waits on it)", cs.whose, n, n-1), Values: []float64{perPoll(rssReg, rssPoll, n-1)}},
	}, nil
}

// perPoll is the growth of VmRSS from a to b (bytes) per poll of polls, in
// KiB.
func perPoll(a, b int64, polls int) float64 {
	if polls <= 0 {
		return 0
	}
	return (float64(b) - float64(a)) / 1024 / float64(polls)
}

// controllers are the controller processes of a propagation cell.
type controllers struct {
	what, whose string // "a controller process", "the controller's"
	dirs        []string
	bases       []string
	metrics     []string
	procs       []*daemon.Process
	etcd        *etcdproc.Cluster
	releases    []func() // ports reserved for the replicas
}

// startControllers starts the controllers of store in dir: bolt, one
// process; etcd3, a 3-member etcd cluster of env.EtcdBin and 3 replicas
// sharing the first one's CA, as the README starts them.
func startControllers(ctx context.Context, env Env, store, dir string) (*controllers, error) {
	// Every simulated node connects from 127.0.0.1: no per-address limit.
	cs := &controllers{}
	start := func(d, listen string, extra ...string) error {
		ready := filepath.Join(d, "controller.ready")
		args := append([]string{"serve", "--data-dir", d, "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--max-conns-per-ip", "0", "--ready-file", ready}, extra...)
		p, info, err := daemon.StartReady(ctx, exec.CommandContext(ctx, env.ControllerBin, args...), ready, 30*time.Second)
		if err != nil {
			return err
		}
		cs.dirs, cs.procs, cs.bases = append(cs.dirs, d), append(cs.procs, p), append(cs.bases, "https://"+info.API)
		cs.metrics = append(cs.metrics, "http://"+info.Metrics+"/metrics")
		return nil
	}
	switch store {
	case "bolt":
		cs.what, cs.whose = "a controller process", "the controller's"
		if err := start(dir, "127.0.0.1:0"); err != nil {
			return nil, err
		}
		return cs, nil
	case "etcd3":
		cs.what, cs.whose = "3 controller replicas over a 3-member etcd cluster (processes, fsync on)", "the 3 replicas' summed"
		if env.EtcdBin == "" {
			return nil, errors.New("store etcd3: no etcd binary (Env.EtcdBin)")
		}
		ec, err := etcdproc.Start(env.EtcdBin, 3, etcdproc.Options{Dir: filepath.Join(dir, "etcd")})
		if err != nil {
			return nil, err
		}
		cs.etcd = ec
		if err := ec.WaitHealthy(ctx, nil, time.Minute); err != nil {
			cs.stop()
			return nil, err
		}
		for i := range 3 {
			d := filepath.Join(dir, fmt.Sprintf("replica%d", i))
			if i > 0 {
				// The second and third replicas take the first one's CA.
				if err := copyCA(cs.dirs[0], d); err != nil {
					cs.stop()
					return nil, err
				}
			}
			port, release, err := ports.Reserve()
			if err != nil {
				cs.stop()
				return nil, err
			}
			cs.releases = append(cs.releases, release)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			if err := start(d, addr, "--store", "etcd", "--etcd-endpoints", strings.Join(ec.Endpoints(), ","), "--advertise-url", "https://"+addr); err != nil {
				cs.stop()
				return nil, err
			}
		}
		return cs, nil
	}
	return nil, fmt.Errorf("store %q has no runner", store)
}

// stop stops the controllers, then etcd.
func (cs *controllers) stop() {
	for _, p := range cs.procs {
		p.Stop(10 * time.Second)
	}
	if cs.etcd != nil {
		cs.etcd.Kill()
	}
	for _, release := range cs.releases {
		release()
	}
	cs.releases = nil
}

// waitPolls waits until the controllers hold want long-polls open between
// them (their rustynet_controller_netmap_polls_open), for up to 5 minutes.
func (cs *controllers) waitPolls(ctx context.Context, want int) error {
	const gauge = "rustynet_controller_netmap_polls_open"
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got := 0
		for _, u := range cs.metrics {
			v, err := promtext.Read(ctx, hc, u, gauge)
			if err != nil {
				return fmt.Errorf("controller metrics: %w", err)
			}
			got += int(v[gauge])
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d long-polls open after 5 minutes, want %d", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// memory sums the controllers' VmRSS.
func (cs *controllers) memory() (int64, error) {
	var sum int64
	for _, p := range cs.procs {
		rss, _, err := p.Memory()
		if err != nil {
			return 0, err
		}
		sum += rss
	}
	return sum, nil
}

// copyCA gives the controller data dir to the CA of the one in from.
func copyCA(from, to string) error {
	if err := os.MkdirAll(filepath.Join(to, "tls"), 0o700); err != nil {
		return err
	}
	for _, f := range []string{"ca.pem", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(from, "tls", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, "tls", f), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func registerMany(ctx context.Context, hc *http.Client, url func(int) string, key string, n int) ([]string, error) {
	creds := make([]string, n)
	errs := make(chan error, 16)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				nk, mk := make([]byte, 32), make([]byte, 32)
				binary.BigEndian.PutUint64(nk, uint64(j)+1)
				binary.BigEndian.PutUint64(mk, uint64(j)+1<<40)
				nk[31], mk[31] = 1, 2
				body, _ := json.Marshal(map[string]string{"auth_key": key, "node_key": b64(nk), "machine_key": b64(mk)})
				var out struct {
					Credential string `json:"credential"`
				}
				if err := doJSON(ctx, hc, http.MethodPost, url(j)+"/v1/register", "", string(body), &out); err != nil {
					errs <- err
					return
				}
				creds[j] = out.Credential
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return creds, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// doJSON sends one API request with the current capability version (the
// wire format is controller/api's; the matrix speaks it as a client would).
func doJSON(ctx context.Context, hc *http.Client, method, url, cred, body string, out any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Rustynet-Capability-Version", "2")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, raw)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func getJSON(ctx context.Context, hc *http.Client, url, cred string, out any) error {
	return doJSON(ctx, hc, http.MethodGet, url, cred, "", out)
}

func postJSON(ctx context.Context, hc *http.Client, url, cred, body string) error {
	return doJSON(ctx, hc, http.MethodPost, url, cred, body, nil)
}

// routeApply times installing N routes on a TUN in a fresh namespace with
// the node's router, from none, Repetitions times: env's rustynetd does it
// (--measure-route-apply), so that what is measured is that build's
// router, not the one this runner was built with.
func routeApply(ctx context.Context, env Env, c Cell) ([]evidence.Measurement, error) {
	n := atoi(c.Params["routes"])
	nw, err := testbed.Create(ctx, testbed.Options{Hosts: 1})
	if err != nil {
		return nil, err
	}
	defer nw.Close()
	cmd := nw.Hosts[0].Command(ctx, env.DaemonBin, "--measure-route-apply", strconv.Itoa(n), "--measure-repetitions", strconv.Itoa(c.Repetitions), "--interface", "rtm0", "--mtu", "1420")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rustynetd --measure-route-apply: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var rep struct {
		Routes  int     `json:"routes"`
		ApplyNS []int64 `json:"apply_ns"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("rustynetd --measure-route-apply printed %q: %w", out, err)
	}
	if rep.Routes != n || len(rep.ApplyNS) != c.Repetitions {
		return nil, fmt.Errorf("rustynetd --measure-route-apply reported %d repetitions of %d routes, want %d of %d", len(rep.ApplyNS), rep.Routes, c.Repetitions, n)
	}
	lat := make([]float64, len(rep.ApplyNS))
	for i, ns := range rep.ApplyNS {
		lat[i] = float64(ns) / 1e6
	}
	method := fmt.Sprintf("rustynetd --measure-route-apply of the build measured: node/router Set of %d routes from none on a TUN in a namespace (netlink), %d repetitions", n, c.Repetitions)
	return []evidence.Measurement{
		{Name: "route_apply", Unit: "ms", Method: method, Values: lat},
		{Name: "route_apply_p50", Unit: "ms", Method: method + ", median", Values: []float64{stats.Quantile(lat, 0.50)}},
		{Name: "route_apply_p99", Unit: "ms", Method: method + ", 99th percentile (nearest rank)", Values: []float64{stats.Quantile(lat, 0.99)}},
	}, nil
}
