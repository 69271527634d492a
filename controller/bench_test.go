package controller_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
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
	"github.com/rustynet/rustynet/internal/proc"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store/etcd/etcdtest"
)

// register registers a node with fresh keys as a node of the current
// capability version does: a challenge, then the registration with its
// machine proof.
func register(hc *http.Client, base, key string) (int, []byte, error) {
	return registerContext(context.Background(), hc, base, key)
}

// registerContext is register with a context for its two requests.
func registerContext(ctx context.Context, hc *http.Client, base, key string) (int, []byte, error) {
	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](),
		MachineKey: controllertest.Key[api.MachinePublic](), Hostname: "bench"}
	if err := controllertest.Prove(ctx, hc, base, &req); err != nil {
		return 0, nil, err
	}
	b, _ := json.Marshal(req)
	return postContext(ctx, hc, base+api.PathRegister, b, "")
}

func post(hc *http.Client, url string, body []byte, cred string) (int, []byte, error) {
	return postContext(context.Background(), hc, url, body, cred)
}

func postContext(ctx context.Context, hc *http.Client, url string, body []byte, cred string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
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
// node of capability 3 registers): HTTPS, JSON, the group committer and the
// store, with the controller in its own process. store=bolt is one
// controller on an fsynced bbolt file; store=etcd3 is 3 replicas over a
// 3-member cluster of etcd processes (fsync on, etcd's default), each
// registration going to the next replica in turn. The clients run on the
// same cores, so the controllers' own CPU time per registration is
// reported too (etcd's is not counted in it): cores divided by it bounds
// what the controllers alone could take.
//
// conn=new is a fleet of new nodes: each registration opens its own TLS
// connection and carries its challenge and its registration on it, as a
// node's client (node/control, one keep-alive connection) does, then
// closes it. conn=per-request opens a connection for each of the two
// requests, and the simulated node keeps its own TLS session cache, as a
// node's client does: its challenge's connection is a full handshake (a
// new node holds no session), its registration's may resume that session;
// the share of handshakes that resumed is reported. conn=reused: a few
// connections carry them all. The mutations per store commit (the group
// committer's batches) are reported, and the benchmark process's own CPU
// time per registration (the clients, mostly their TLS) as
// client-cpu-ms/op.
func BenchmarkRegister(b *testing.B) {
	b.Logf("environment: %s", machine.Describe())
	bin := controllertest.Build(b, b.TempDir(), "../cmd/rustynet-controller")
	for _, st := range stores {
		for _, mode := range []string{"new", "per-request", "reused"} {
			b.Run("store="+st+"/conn="+mode, func(b *testing.B) {
				d := deploy(b, bin, st)
				ak, err := controller.NewAdminClient(d.procs[0].DataDir).CreateAuthKey(context.Background(), api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600})
				if err != nil {
					b.Fatal(err)
				}
				hc := controllertest.NewClient(b, filepath.Join(d.procs[0].DataDir, "tls", "ca.pem"))
				base := hc.Transport.(*http.Transport)
				base.DisableKeepAlives = mode == "per-request"
				// client is the HTTP client of one simulated node:
				// with conn=new and conn=per-request its own, with its
				// own session cache.
				client := func() (*http.Client, func()) {
					if mode == "reused" {
						return hc, func() {}
					}
					tr := base.Clone()
					tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					return &http.Client{Transport: tr}, tr.CloseIdleConnections
				}
				var handshakes, resumed atomic.Int64
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
						if err == nil {
							handshakes.Add(1)
							if cs.DidResume {
								resumed.Add(1)
							}
						}
					},
				})
				b.SetParallelism(8)
				const batch = "rustynet_controller_store_commit_batch_size"
				mutations0, commits0 := d.scrape(b, batch+"_sum"), d.scrape(b, batch+"_count")
				cpu0 := d.cpu(b)
				self0, err := proc.SelfCPU()
				if err != nil {
					b.Fatal(err)
				}
				var next atomic.Int64
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						node, done := client()
						status, body, err := registerContext(ctx, node, d.url(int(next.Add(1))), ak.Key)
						done()
						if err != nil || status != 200 {
							b.Errorf("register: %d %s %v", status, body, err)
							return
						}
					}
				})
				elapsed := time.Since(start)
				b.StopTimer()
				self1, err := proc.SelfCPU()
				if err != nil {
					b.Fatal(err)
				}
				perReg := (d.cpu(b) - cpu0).Seconds() / float64(b.N)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
				b.ReportMetric(perReg*1e3, "controller-cpu-ms/op")
				b.ReportMetric((self1-self0).Seconds()/float64(b.N)*1e3, "client-cpu-ms/op")
				b.ReportMetric(float64(runtime.NumCPU())/perReg, "controller-bound-registrations/s")
				if commits := d.scrape(b, batch+"_count") - commits0; commits > 0 {
					b.ReportMetric((d.scrape(b, batch+"_sum")-mutations0)/commits, "mutations/commit")
				}
				if n := handshakes.Load(); n > 0 && mode != "reused" {
					b.ReportMetric(float64(n)/float64(b.N), "handshakes/op")
					b.ReportMetric(float64(resumed.Load())/float64(n), "resumed/handshake")
				}
			})
		}
	}
}

// stores are the deployments the controller benchmarks compare.
var stores = []string{"bolt", "etcd3"}

// deployment is the controller under measurement: one process on bbolt,
// or 3 replica processes over a 3-member etcd cluster.
type deployment struct {
	procs []*controllertest.Process
}

// deploy starts the deployment named store; extra are serve flags for
// every controller process.
func deploy(b *testing.B, bin, store string, extra ...string) *deployment {
	b.Helper()
	switch store {
	case "bolt":
		return &deployment{procs: []*controllertest.Process{controllertest.StartProcess(b, bin, b.TempDir(), extra...)}}
	case "etcd3":
		etcdBin, err := etcdtest.Build(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		cluster := etcdtest.StartProcesses(b, etcdBin, 3, etcdtest.ProcessOptions{})
		d := &deployment{}
		for i := range 3 {
			dir := b.TempDir()
			if i > 0 {
				controllertest.CopyCA(b, d.procs[0].DataDir, dir)
			}
			d.procs = append(d.procs, controllertest.StartReplicaProcess(b, bin, dir, strings.Join(cluster.Endpoints(), ","), extra...))
		}
		return d
	}
	b.Fatalf("no deployment %q", store)
	return nil
}

// url is the API of the controller process i serves from (round robin).
func (d *deployment) url(i int) string { return d.procs[i%len(d.procs)].URL }

// memory sums the controller processes' RSS and peaks.
func (d *deployment) memory(b *testing.B) (rss, peak int64) {
	for _, p := range d.procs {
		r, pk, err := p.Memory()
		if err != nil {
			b.Fatal(err)
		}
		rss, peak = rss+r, peak+pk
	}
	return rss, peak
}

// cpu sums the controller processes' CPU time.
func (d *deployment) cpu(b *testing.B) time.Duration {
	var sum time.Duration
	for _, p := range d.procs {
		c, err := p.CPUTime()
		if err != nil {
			b.Fatal(err)
		}
		sum += c
	}
	return sum
}

// scrape sums one unlabelled sample over the controller processes.
func (d *deployment) scrape(b *testing.B, name string) float64 {
	var sum float64
	for _, p := range d.procs {
		sum += scrape(b, p.MetricsURL, name)
	}
	return sum
}

// BenchmarkFanout measures how long one change takes to reach every
// waiting node. The controllers run as their own processes so that their
// memory can be read; N nodes register, each holds a netmap long-poll open
// on its own HTTP/1.1 TLS connection, and then one node reports a new
// endpoint, which every other node may see. Each iteration is one such
// change; the latency of a node is from just before the change is sent to
// the moment its response is read. Reported: p50, p99 and max over all
// nodes and iterations, and the controllers' RSS and Go heap per node.
// With store=etcd3 (see BenchmarkRegister) node i registers and polls on
// replica i mod 3, and the change is made through the first replica: two
// thirds of the nodes hear of it through etcd's watch. rss-MiB and
// rss-KiB/node sum the replicas; replica-rss-KiB/node is per replica.
func BenchmarkFanout(b *testing.B) {
	b.Logf("environment: %s", machine.Describe())
	bin := controllertest.Build(b, b.TempDir(), "../cmd/rustynet-controller")
	for _, st := range stores {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", st, n), func(b *testing.B) { benchFanout(b, bin, st, n) })
		}
	}
}

func benchFanout(b *testing.B, bin, st string, n int) {
	// Every simulated node connects from 127.0.0.1.
	d := deploy(b, bin, st, "--max-conns-per-ip", "0")
	p := d.procs[0]
	rssStart, _ := d.memory(b)
	caFile := filepath.Join(p.DataDir, "tls", "ca.pem")
	hc := controllertest.NewClient(b, caFile)
	// One connection per polling node: the controllers run with no
	// per-address cap, and NewClient's own cap (half the default one)
	// would hold all but 128 polls per replica back.
	hc.Transport.(*http.Transport).MaxConnsPerHost = n + 16
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
				status, body, err := register(hc, d.url(i), ak.Key)
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
	rssRegistered, _ := d.memory(b)
	heapRegistered := d.scrape(b, "go_memstats_heap_inuse_bytes")

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
	// The polls' connections are opened 64 at a time: 10,000 TLS
	// handshakes at once outlast the controller's handshake timeout on 2
	// cores (a fleet's nodes back off and retry; these would fail).
	slots := make(chan struct{}, 64)
	for i := 1; i < n; i++ {
		pollers.Go(func() {
			since := rev
			slots <- struct{}{}
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			first := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { release() }})
			for iter := 0; ctx.Err() == nil; iter++ {
				pctx := ctx
				if iter == 0 {
					pctx = first
				}
				m, err := longPoll(pctx, hc, d.url(i), creds[i], since)
				if err != nil {
					if ctx.Err() == nil {
						b.Errorf("poll: %v", err)
					}
					return
				}
				if m.Full || len(m.PeersChanged) != 1 {
					b.Errorf("node %d (since %d) got revision %d full=%v self=%v changed=%d removed=%d, want a delta with one peer", i, since, m.Revision, m.Full, m.Self != nil, len(m.PeersChanged), len(m.PeersRemoved))
				}
				since = m.Revision
				results <- result{iter, time.Now()}
			}
		})
	}
	waitPolls(b, d, n-1)
	rssPolling, peakPolling := d.memory(b)
	heapPolling := d.scrape(b, "go_memstats_heap_inuse_bytes")

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
		waitPolls(b, d, n-1)
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
	b.ReportMetric(float64(rssPolling-rssStart)/float64(n)/1024/float64(len(d.procs)), "replica-rss-KiB/node")
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

// waitPolls waits until the controllers hold want long-polls open.
func waitPolls(b *testing.B, d *deployment, want int) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got := int(d.scrape(b, "rustynet_controller_netmap_polls_open"))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d long-polls open after 5 minutes, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
