package pathbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/machine"
	"github.com/rustynet/rustynet/internal/proc"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
)

// pprofAddr is where every daemon of the benchmark serves its profiles,
// inside its own namespace.
const pprofAddr = "127.0.0.1:6060"

// refPort is the reference tunnel's UDP port; refNet its addresses.
const refPort = 51820

var refNet = netip.MustParsePrefix("10.213.0.0/24")

// path is one way between two hosts that iperf3 measures (or, for the
// naive path, its naiveLoop).
type path struct {
	name           string
	server, client *testbed.Host
	target         netip.Addr
	naive          *naiveLoop // quic-go datagrams instead of iperf3
	// daemons are the processes that carry the path (none for raw), by
	// the side they run on ("sender", "receiver"), with their hosts.
	daemons  []end
	profiled bool // its daemons serve net/http/pprof on pprofAddr
	gbits    []float64
	cpuPerG  []float64 // both daemons' CPU seconds per GB carried
}

type end struct {
	side string
	host *testbed.Host
	pid  func() int
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a whole number of at least 1", name, v)
	}
	return n
}

// BenchmarkPaths measures iperf3 TCP throughput (one stream, client to
// server, each run a 1 s warm-up iperf3 omits and RUSTYNET_PATHBENCH_SECONDS
// measured) through the raw veth path, the reference wireguard-go,
// rustynetd's wireguard backend without and with a one-way ACL, its quic
// backend, and a baseline rustynetd's when one is given, and the goodput
// of plain quic-go datagrams over the raw path's veth (naive: the same
// warm-up and measured window; naiveLoop), one run of each per round, the
// order rotated from round to round. Each path runs between two hosts of
// a testbed network of its own (the meshes add a controller host; naive
// shares raw's hosts); all are up for the whole run, so every path sees
// the same machine. It reports, over the rounds, the median, min and max
// of each path's Gbit/s and of the ratios (each taken within a round), and
// the daemons' CPU seconds per GB. The package comment lists the settings.
func BenchmarkPaths(b *testing.B) {
	require.Root(b)
	require.Command(b, "iperf3")
	require.Command(b, "wg")
	require.Command(b, "ip")
	rounds := envInt(b, "RUSTYNET_PATHBENCH_ROUNDS", 5)
	secs := envInt(b, "RUSTYNET_PATHBENCH_SECONDS", 2)
	profDir := os.Getenv("RUSTYNET_PATHBENCH_PROFILE_DIR")
	profSecs := envInt(b, "RUSTYNET_PATHBENCH_PROFILE_SECONDS", 5)
	b.Logf("environment: %s", machine.Describe())

	work := b.TempDir()
	ctx := b.Context()
	bin := filepath.Join(work, "bin")
	if err := testbed.BuildDaemons(bin); err != nil {
		b.Fatal(err)
	}
	wd, _ := os.Getwd()
	version, err := WireGuardVersion(wd)
	if err != nil {
		b.Fatal(err)
	}
	ref, dep, err := BuildReference(work, version)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("reference: upstream %s (go version -m), unpatched", dep)

	// raw and ref share one network: the reference tunnel runs over the
	// veth path that raw measures.
	n, err := testbed.Create(ctx, testbed.Options{Hosts: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	h0, h1 := n.Hosts[0], n.Hosts[1]
	raw := &path{name: "raw", server: h1, client: h0, target: h1.Addr}
	refEnds := startReference(b, ctx, ref, work, h0, h1)
	refPath := &path{name: "ref", server: h1, client: h0, target: refNet.Addr().Next().Next(), daemons: refEnds, profiled: true}
	loop, err := newNaiveLoop(h1, h0)
	if err != nil {
		b.Fatal(err)
	}
	naive := &path{name: "naive", server: h1, client: h0, target: h1.Addr, naive: loop}

	meshPath := func(daemonBin, backend string, oneWay bool) *path {
		var args []string
		if help, _ := exec.Command(daemonBin, "--help").Output(); bytes.Contains(help, []byte("--debug-pprof-listen")) {
			args = []string{"--debug-pprof-listen", pprofAddr}
		}
		m, err := testbed.NewMesh(ctx, testbed.MeshConfig{
			ControllerBin: filepath.Join(bin, "rustynet-controller"), DaemonBin: daemonBin,
			Work: work, Log: io.Discard, NodeArgs: args,
		}, backend, 2, 1420)
		if err != nil {
			b.Fatalf("mesh on %s: %v", backend, err)
		}
		b.Cleanup(m.Close)
		a, c := m.Nodes()[0], m.Nodes()[1]
		if oneWay {
			if err := restrict(ctx, m, a, c); err != nil {
				b.Fatal(err)
			}
		}
		return &path{server: c.Host(), client: a.Host(), target: c.Addr(), profiled: args != nil, daemons: []end{
			{"sender", a.Host(), a.Process().Pid}, {"receiver", c.Host(), c.Process().Pid},
		}}
	}
	daemonBin := filepath.Join(bin, "rustynetd")
	ours := meshPath(daemonBin, "wireguard", false)
	ours.name = "ours"
	acl := meshPath(daemonBin, "wireguard", true)
	acl.name = "acl"
	quic := meshPath(daemonBin, "quic", false)
	quic.name = "quic"
	paths := []*path{raw, refPath, ours, acl, quic, naive}
	ratios := [][2]*path{{ours, refPath}, {refPath, raw}, {ours, raw}, {acl, ours}, {quic, raw}, {quic, ours},
		{quic, naive}, {naive, raw}}
	if base := os.Getenv("RUSTYNET_PATHBENCH_BASE_DAEMON"); base != "" {
		// A baseline rustynetd (another build: an earlier commit's), on
		// the wireguard backend with and without the one-way ACL.
		baseOurs := meshPath(base, "wireguard", false)
		baseOurs.name = "base"
		baseACL := meshPath(base, "wireguard", true)
		baseACL.name = "base-acl"
		paths = append(paths, baseOurs, baseACL)
		ratios = append(ratios, [2]*path{ours, baseOurs}, [2]*path{acl, baseACL}, [2]*path{baseOurs, refPath})
		b.Logf("baseline rustynetd: %s", base)
	}

	// Handshakes and first connections before anything is measured.
	for _, p := range paths {
		var err error
		if p.naive != nil {
			_, err = p.naive.run(ctx, 0, time.Second)
		} else {
			_, err = testbed.Iperf3(ctx, p.server, p.client, p.target, time.Second)
		}
		if err != nil {
			b.Fatalf("%s: warm-up: %v", p.name, err)
		}
	}
	dur := time.Duration(secs) * time.Second
	b.ResetTimer()
	for r := range rounds {
		for i := range paths {
			p := paths[(r+i)%len(paths)]
			if p.naive != nil {
				res, err := p.naive.run(ctx, time.Second, dur)
				if err != nil {
					b.Fatalf("round %d, %s: %v", r+1, p.name, err)
				}
				p.gbits = append(p.gbits, res.GbitPerSecond())
				b.Logf("round %d %-8s %6.3f Gbit/s, %.1f%% of %d datagrams lost (%d in the receiver's socket buffer)",
					r+1, p.name, res.GbitPerSecond(), res.LostPercent(), res.Sent, res.RcvbufErrors)
				continue
			}
			cpu0 := p.cpu(b)
			res, err := testbed.Iperf3(ctx, p.server, p.client, p.target, dur, "-O", "1")
			if err != nil {
				b.Fatalf("round %d, %s: %v", r+1, p.name, err)
			}
			p.gbits = append(p.gbits, res.GbitPerSecond())
			if len(p.daemons) > 0 {
				// CPU over the whole run (warm-up included) per GB the
				// receiver got over the measured part, scaled to the whole.
				whole := float64(res.Bytes) * float64(secs+1) / float64(secs)
				p.cpuPerG = append(p.cpuPerG, (p.cpu(b)-cpu0).Seconds()/(whole/1e9))
			}
			b.Logf("round %d %-8s %6.3f Gbit/s, %d retransmits", r+1, p.name, res.GbitPerSecond(), res.Retransmits)
		}
	}
	b.StopTimer()

	spread := func(xs []float64) (med, lo, hi float64) {
		return stats.Median(xs), slices.Min(xs), slices.Max(xs)
	}
	for _, p := range paths {
		med, lo, hi := spread(p.gbits)
		b.ReportMetric(med, p.name+"-Gbit/s")
		b.ReportMetric(lo, p.name+"-min-Gbit/s")
		b.ReportMetric(hi, p.name+"-max-Gbit/s")
		line := fmt.Sprintf("%-8s median %.3f Gbit/s (min %.3f, max %.3f, %d runs)", p.name, med, lo, hi, len(p.gbits))
		if len(p.cpuPerG) > 0 {
			c, _, _ := spread(p.cpuPerG)
			b.ReportMetric(c, p.name+"-cpu-s/GB")
			line += fmt.Sprintf(", both daemons' CPU %.2f s/GB (median)", c)
		}
		b.Log(line)
	}
	for _, q := range ratios {
		ratio := make([]float64, rounds)
		for r := range rounds {
			ratio[r] = q[0].gbits[r] / q[1].gbits[r]
		}
		med, lo, hi := spread(ratio)
		unit := q[0].name + "/" + q[1].name
		b.ReportMetric(med, unit)
		b.ReportMetric(lo, unit+"-min")
		b.ReportMetric(hi, unit+"-max")
		b.Logf("%-13s median %.3f (min %.3f, max %.3f, %d rounds)", unit, med, lo, hi, rounds)
	}
	b.ReportMetric(float64(rounds), "rounds")
	b.ReportMetric(0, "ns/op")

	if profDir != "" {
		for _, p := range paths {
			if !p.profiled {
				continue
			}
			if err := p.profile(ctx, profDir, time.Duration(profSecs)*time.Second); err != nil {
				b.Fatalf("profile %s: %v", p.name, err)
			}
			b.Logf("profiles of %s written to %s", p.name, profDir)
		}
	}
}

// restrict sets a one-way policy on m: sender may open connections to
// receiver, not the other way. The receiver is then a restricted peer on
// the sender, whose filter (node/filter) records every flow the sender
// opens and checks every packet that comes back against them. It waits
// until the sender's netmap says so and the receiver still has the sender
// as a peer.
func restrict(ctx context.Context, m *testbed.Mesh, sender, receiver *testbed.MeshNode) error {
	status := func(nd *testbed.MeshNode) (*localapi.Status, error) {
		return localapi.NewClient(nd.Dir()).Status(ctx)
	}
	ss, err := status(sender)
	if err != nil {
		return err
	}
	rs, err := status(receiver)
	if err != nil {
		return err
	}
	policy := fmt.Sprintf("acls:\n  - action: accept\n    src: [\"id:%s\"]\n    dst: [\"id:%s\"]\n", ss.Self.ID, rs.Self.ID)
	if err := m.SetPolicy(ctx, policy); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss, err1 := status(sender)
		rs, err2 := status(receiver)
		if err1 == nil && err2 == nil && len(ss.Peers) == 1 && len(rs.Peers) == 1 &&
			ss.Peers[0].AllowOut && !ss.Peers[0].AllowIn && !rs.Peers[0].AllowOut && rs.Peers[0].AllowIn &&
			len(ss.DataplanePeers) == 1 && len(rs.DataplanePeers) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the one-way policy is not in force after 30s: %v %v", err1, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpu sums the CPU time of the path's daemons.
func (p *path) cpu(b *testing.B) time.Duration {
	var d time.Duration
	for _, e := range p.daemons {
		c, err := proc.CPUTime(e.pid())
		if err != nil {
			b.Fatal(err)
		}
		d += c
	}
	return d
}

// profile runs iperf3 through the path for window plus 2 s and takes a CPU
// profile of window from every daemon of the path meanwhile, written to
// dir as NAME-SIDE.pprof with `go tool pprof -top` beside it
// (NAME-SIDE.top.txt).
func (p *path) profile(ctx context.Context, dir string, window time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var res *testbed.IperfResult
	var iperfErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		res, iperfErr = testbed.Iperf3(ctx, p.server, p.client, p.target, window+2*time.Second)
	})
	time.Sleep(time.Second)
	errs := make([]error, len(p.daemons))
	for i, e := range p.daemons {
		wg.Go(func() {
			errs[i] = fetchProfile(ctx, e.host, window, filepath.Join(dir, p.name+"-"+e.side+".pprof"))
		})
	}
	wg.Wait()
	if iperfErr != nil {
		return iperfErr
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	note := fmt.Sprintf("%s: iperf3 TCP %s -> %s, %.3f Gbit/s over %v while profiled for %v\n",
		p.name, p.client.Name, p.server.Name, res.GbitPerSecond(), res.Duration.Round(time.Millisecond), window)
	for _, e := range p.daemons {
		f := filepath.Join(dir, p.name+"-"+e.side+".pprof")
		out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", f).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof -top %s: %w\n%s", f, err, out)
		}
		if err := os.WriteFile(strings.TrimSuffix(f, ".pprof")+".top.txt", append([]byte(note), out...), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fetchProfile takes a CPU profile of window from the daemon serving
// net/http/pprof on pprofAddr in h's namespace, into file.
func fetchProfile(ctx context.Context, h *testbed.Host, window time.Duration, file string) error {
	hc := &http.Client{Timeout: window + 30*time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialContext(ctx, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, int(window.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", h.Name, resp.Status, bytes.TrimSpace(body))
	}
	return os.WriteFile(file, body, 0o644)
}

// startReference runs the reference daemon in h0 and h1, each with a
// tunnel interface configured with `wg` and `ip` (keys from `wg genkey`,
// refNet's .1 and .2, MTU 1420, each the other's peer at its veth address),
// and stops them when the benchmark ends. It returns their ends, h0 the
// sender.
func startReference(b *testing.B, ctx context.Context, bin, work string, h0, h1 *testbed.Host) []end {
	hosts := []*testbed.Host{h0, h1}
	var keys, pubs [2]string
	for i := range hosts {
		priv, err := exec.CommandContext(ctx, "wg", "genkey").Output()
		if err != nil {
			b.Fatalf("wg genkey: %v", err)
		}
		keys[i] = filepath.Join(work, fmt.Sprintf("ref%d.key", i))
		if err := os.WriteFile(keys[i], priv, 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "wg", "pubkey")
		cmd.Stdin = bytes.NewReader(priv)
		pub, err := cmd.Output()
		if err != nil {
			b.Fatalf("wg pubkey: %v", err)
		}
		pubs[i] = strings.TrimSpace(string(pub))
	}
	addr := []netip.Addr{refNet.Addr().Next(), refNet.Addr().Next().Next()}
	var ends []end
	for i, h := range hosts {
		// The UAPI socket's directory is one for every namespace: the
		// names must differ.
		iface := fmt.Sprintf("wgr%d-%s", i, h.Name[5:11])
		cmd := h.Command(ctx, bin, iface)
		cmd.Env = append(os.Environ(), "REFWG_PPROF_LISTEN="+pprofAddr)
		p, _, err := daemon.Start(ctx, cmd, regexp.MustCompile(`refwg: .* up`), 30*time.Second)
		if err != nil {
			b.Fatalf("reference daemon in %s: %v", h.Name, err)
		}
		b.Cleanup(func() { p.Stop(10 * time.Second) })
		other := hosts[1-i]
		for _, args := range [][]string{
			{"wg", "set", iface, "private-key", keys[i], "listen-port", strconv.Itoa(refPort),
				"peer", pubs[1-i], "allowed-ips", netip.PrefixFrom(addr[1-i], 32).String(),
				"endpoint", netip.AddrPortFrom(other.Addr, refPort).String()},
			{"ip", "address", "add", netip.PrefixFrom(addr[i], refNet.Bits()).String(), "dev", iface},
			{"ip", "link", "set", iface, "mtu", "1420", "up"},
		} {
			if out, err := h.Command(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%s: %s: %v: %s", h.Name, strings.Join(args, " "), err, out)
			}
		}
		side := "sender"
		if i == 1 {
			side = "receiver"
		}
		ends = append(ends, end{side, h, p.Pid})
	}
	return ends
}
