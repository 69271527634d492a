package node_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/machine"

	"github.com/rustynet/rustynet/internal/proc"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

// stats returns the mean and the sample standard deviation.
func stats(xs []float64) (mean, sd float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)-1))
}

// BenchmarkMeshThroughput measures TCP throughput between two nodes on the
// namespace testbed with iperf3 (3 s per run), over the raw veth path and
// through the tunnel, alternating in the same run, one pair of runs per
// iteration. Reported: both means, their ratio, the CPU time both
// rustynetd processes spent per GB carried through the tunnel, and each
// daemon's RSS.
func BenchmarkMeshThroughput(b *testing.B) {
	require.Root(b)
	require.Command(b, "iperf3")
	buildBinaries(b)
	b.Logf("environment: %s", machine.Describe())
	for _, name := range backends().Names() {
		b.Run("backend="+name, func(b *testing.B) {
			m := newKernelMesh(b, name, 3)
			key := m.AuthKey()
			n1 := m.NewNode("alpha", key).(*kernelNode)
			n2 := m.NewNode("bravo", key).(*kernelNode)
			if err := transfer(b, n1, n2, 64<<10); err != nil {
				b.Fatal(err)
			}
			h1, h2 := m.net.Hosts[1], m.net.Hosts[2]
			ctx := context.Background()
			var raw, tunnel []float64
			var tunnelBytes int64
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				r, err := testbed.Iperf3(ctx, h2, h1, h2.Addr, 3*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				raw = append(raw, r.GbitPerSecond())
				c0 := n1.cpu(b) + n2.cpu(b)
				r, err = testbed.Iperf3(ctx, h2, h1, n2.Addr(), 3*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				cpu += n1.cpu(b) + n2.cpu(b) - c0
				tunnel = append(tunnel, r.GbitPerSecond())
				tunnelBytes += r.Bytes
			}
			b.StopTimer()
			rm, rsd := stats(raw)
			tm, tsd := stats(tunnel)
			gb := float64(tunnelBytes) / 1e9
			b.ReportMetric(rm, "raw-Gbit/s")
			b.ReportMetric(tm, "tunnel-Gbit/s")
			b.ReportMetric(tm/rm, "tunnel/raw")
			b.ReportMetric(cpu.Seconds()/gb, "cpu-s/GB")
			rss1, _, _ := proc.Memory(n1.pid())
			rss2, _, _ := proc.Memory(n2.pid())
			b.ReportMetric(float64(max(rss1, rss2))/(1<<20), "max-rss-MiB")
			b.Logf("backend %s, %d runs of 3s each way: raw %.2f ± %.2f Gbit/s, tunnel %.2f ± %.2f Gbit/s (ratio %.3f); "+
				"rustynetd CPU %.2f s for %.2f GB = %.2f s/GB (both daemons); RSS alpha %.1f MiB, bravo %.1f MiB",
				name, b.N, rm, rsd, tm, tsd, tm/rm, cpu.Seconds(), gb, cpu.Seconds()/gb, float64(rss1)/(1<<20), float64(rss2)/(1<<20))
		})
	}
}

// BenchmarkReconnect measures how long nodes take to reach the controller
// again after it restarts: per iteration the controller is stopped, the
// nodes are seen offline, the controller is started, and each node's
// status is polled every 5 ms until it reports running. The time is from
// the moment the restarted controller serves. Reported: p50 and p99 over
// nodes and iterations.
func BenchmarkReconnect(b *testing.B) {
	require.Root(b)
	buildBinaries(b)
	b.Logf("environment: %s", machine.Describe())
	m := newKernelMesh(b, "wireguard", 4)
	key := m.AuthKey()
	nodes := []*kernelNode{m.NewNode("alpha", key).(*kernelNode), m.NewNode("bravo", key).(*kernelNode), m.NewNode("charlie", key).(*kernelNode)}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		m.ctl.Stop()
		for _, n := range nodes {
			eventually(b, 30*time.Second, n.name+" offline", func() error { return n.wantState("offline") })
		}
		b.StartTimer()
		m.ctl.Start()
		t0 := time.Now()
		pending := slices.Clone(nodes)
		for len(pending) > 0 && time.Since(t0) < 60*time.Second {
			for i := 0; i < len(pending); i++ {
				if pending[i].wantState("running") == nil {
					lat = append(lat, time.Since(t0))
					pending = slices.Delete(pending, i, i+1)
					i--
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(pending) > 0 {
			b.Fatalf("%d nodes did not reconnect within 60s", len(pending))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.Logf("reconnect after a controller restart, %d nodes x %d restarts: p50 %.0f ms, p99 %.0f ms, max %.0f ms", len(nodes), b.N, p(0.5), p(0.99), p(1))
}

func (n *kernelNode) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *kernelNode) cpu(tb testing.TB) time.Duration {
	d, err := proc.CPUTime(n.pid())
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func (n *kernelNode) wantState(state string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := n.Status(ctx)
	if err != nil {
		return err
	}
	if st.State != state {
		return fmt.Errorf("%s is %s", n.name, st.State)
	}
	return nil
}
