package controller_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/machine"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// register registers a node with fresh keys as a node of the current
// capability version does: a challenge, then the registration with its
// machine proof.
func register(hc *http.Client, base, key string) (int, []byte, error) {
	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](),
		MachineKey: controllertest.Key[api.MachinePublic](), Hostname: "bench"}
	if err := controllertest.Prove(context.Background(), hc, base, &req); err != nil {
		return 0, nil, err
	}
	b, _ := json.Marshal(req)
	return post(hc, base+api.PathRegister, b, "")
}

func post(hc *http.Client, url string, body []byte, cred string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// BenchmarkRegister measures registrations per second through the whole
// stack (a challenge, then the registration with its machine proof, as a
// node of capability 3 registers): HTTPS, JSON, the group committer and an
// fsynced bbolt store on disk, with the controller in its own process. The clients run on the same
// cores, so the controller's own CPU time per registration is reported too:
// cores divided by it bounds what the controller alone could take. With
// conn=new each registration opens its own TLS connection, as a fleet of
// nodes does; with conn=reused a few connections carry them all.
func BenchmarkRegister(b *testing.B) {
	b.Logf("environment: %s", machine.Describe())
	bin := controllertest.Build(b, b.TempDir(), "../cmd/rustynet-controller")
	for _, mode := range []string{"new", "reused"} {
		b.Run("conn="+mode, func(b *testing.B) {
			p := controllertest.StartProcess(b, bin, b.TempDir())
			ak, err := controller.NewAdminClient(p.DataDir).CreateAuthKey(context.Background(), api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600})
			if err != nil {
				b.Fatal(err)
			}
			hc := controllertest.NewClient(b, filepath.Join(p.DataDir, "tls", "ca.pem"))
			hc.Transport.(*http.Transport).DisableKeepAlives = mode == "new"
			b.SetParallelism(8)
			cpu0, _ := p.CPUTime()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					status, body, err := register(hc, p.URL, ak.Key)
					if err != nil || status != 200 {
						b.Errorf("register: %d %s %v", status, body, err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			cpu1, _ := p.CPUTime()
			perReg := (cpu1 - cpu0).Seconds() / float64(b.N)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
			b.ReportMetric(perReg*1e3, "controller-cpu-ms/op")
			b.ReportMetric(float64(runtime.NumCPU())/perReg, "controller-bound-registrations/s")
		})
	}
}

// BenchmarkFanout measures how long one change takes to reach every
// waiting node. The controller runs as its own process so that its memory
// can be read; N nodes register, each holds a netmap long-poll open on its
// own HTTP/1.1 TLS connection, and then one node reports a new endpoint,
// which every other node may see. Each iteration is one such change; the
// latency of a node is from just before the change is sent to the moment
// its response is read. Reported: p50, p99 and max over all nodes and
// iterations, and the controller's RSS and Go heap per node.
func BenchmarkFanout(b *testing.B) {
	b.Logf("environment: %s", machine.Describe())
	bin := controllertest.Build(b, b.TempDir(), "../cmd/rustynet-controller")
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchFanout(b, bin, n) })
	}
}

func benchFanout(b *testing.B, bin string, n int) {
	// Every simulated node connects from 127.0.0.1.
	p := controllertest.StartProcess(b, bin, b.TempDir(), "--max-conns-per-ip", "0")
	rssStart, _, _ := p.Memory()
	caFile := filepath.Join(p.DataDir, "tls", "ca.pem")
	hc := controllertest.NewClient(b, caFile)
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = n + 16
	hc.Transport.(*http.Transport).MaxIdleConns = n + 16

	ak, err := controller.NewAdminClient(p.DataDir).CreateAuthKey(context.Background(), api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600})
	if err != nil {
		b.Fatal(err)
	}

	// Register n nodes with 16 workers.
	creds := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	regStart := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				status, body, err := register(hc, p.URL, ak.Key)
				if err != nil || status != 200 {
					b.Errorf("register: %d %s %v", status, body, err)
					return
				}
				var rr api.RegisterResponse
				json.Unmarshal(body, &rr)
				creds[i] = rr.Credential
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.Logf("registered %d nodes in %v (%.0f/s)", n, time.Since(regStart).Round(time.Millisecond), float64(n)/time.Since(regStart).Seconds())
	rssRegistered, _, _ := p.Memory()
	heapRegistered := scrape(b, p.MetricsURL, "go_memstats_heap_inuse_bytes")

	// The current revision, from one full netmap.
	rev := fetchRevision(b, hc, p.URL, creds[0])

	type result struct {
		iter int
		at   time.Time
	}
	results := make(chan result, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pollers sync.WaitGroup
	for i := 1; i < n; i++ {
		pollers.Go(func() {
			since := rev
			for iter := 0; ctx.Err() == nil; iter++ {
				m, err := longPoll(ctx, hc, p.URL, creds[i], since)
				if err != nil {
					if ctx.Err() == nil {
						b.Errorf("poll: %v", err)
					}
					return
				}
				if m.Full || len(m.PeersChanged) != 1 {
					b.Errorf("node %d got full=%v changed=%d, want a delta with one peer", i, m.Full, len(m.PeersChanged))
				}
				since = m.Revision
				results <- result{iter, time.Now()}
			}
		})
	}
	waitPolls(b, p.MetricsURL, n-1)
	rssPolling, peakPolling, _ := p.Memory()
	heapPolling := scrape(b, p.MetricsURL, "go_memstats_heap_inuse_bytes")

	var lat []time.Duration
	b.ResetTimer()
	for iter := range b.N {
		ep := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(10000+iter))
		body, _ := json.Marshal(api.EndpointsRequest{Endpoints: []netip.AddrPort{ep}})
		t0 := time.Now()
		status, raw, err := post(hc, p.URL+api.PathEndpoints, body, creds[0])
		if err != nil || status != 200 {
			b.Fatalf("endpoints: %d %s %v", status, raw, err)
		}
		for range n - 1 {
			select {
			case r := <-results:
				if r.iter != iter {
					b.Fatalf("a node answered for iteration %d during %d", r.iter, iter)
				}
				lat = append(lat, r.at.Sub(t0))
			case <-time.After(60 * time.Second):
				b.Fatalf("iteration %d: only %d of %d nodes heard of the change within 60s", iter, len(lat)-iter*(n-1), n-1)
			}
		}
		b.StopTimer()
		waitPolls(b, p.MetricsURL, n-1)
		b.StartTimer()
	}
	b.StopTimer()
	cancel()
	hc.Transport.(*http.Transport).CloseIdleConnections()
	pollers.Wait()

	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(float64(rssPolling)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(rssPolling-rssStart)/float64(n)/1024, "rss-KiB/node")
	b.ReportMetric((heapPolling-heapRegistered)/float64(n)/1024, "poll-heap-KiB/node")
	b.Logf("n=%d iterations=%d latencies=%d: p50 %.1fms p99 %.1fms max %.1fms", n, b.N, len(lat), q(0.5), q(0.99), q(1))
	b.Logf("controller RSS: start %.1f MiB, %d nodes registered %.1f MiB (%.2f KiB/node; Go heap in use %.1f MiB), %d long-polls open %.1f MiB (peak %.1f MiB; heap %.1f MiB, %.2f KiB/poll)",
		mib(rssStart), n, mib(rssRegistered), float64(rssRegistered-rssStart)/float64(n)/1024, heapRegistered/(1<<20),
		n-1, mib(rssPolling), mib(peakPolling), heapPolling/(1<<20), (heapPolling-heapRegistered)/float64(n-1)/1024)
}

func mib(v int64) float64 { return float64(v) / (1 << 20) }

func fetchRevision(b *testing.B, hc *http.Client, url, cred string) uint64 {
	m, err := longPoll(context.Background(), hc, url, cred, 0)
	if err != nil {
		b.Fatal(err)
	}
	return m.Revision
}

func longPoll(ctx context.Context, hc *http.Client, url, cred string, since uint64) (*api.MapResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s%s?since=%d&wait=120", url, api.PathNetmap, since), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("netmap: %d %s", resp.StatusCode, raw)
	}
	var m api.MapResponse
	return &m, json.NewDecoder(resp.Body).Decode(&m)
}

// scrape reads one unlabelled sample from a Prometheus endpoint.
func scrape(b *testing.B, url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatalf("%s: no sample %s", url, name)
	return 0
}

// waitPolls waits until the controller holds want long-polls open.
func waitPolls(b *testing.B, metricsURL string, want int) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got := int(scrape(b, metricsURL, "rustynet_controller_netmap_polls_open"))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d long-polls open after 5 minutes, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
