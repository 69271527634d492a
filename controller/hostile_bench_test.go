package controller_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/machine"
)

// hostile is one way an outsider, with no credential, holds a connection.
type hostile struct {
	name  string
	proto string // ALPN; "" for a bare TCP connection
	send  func(c net.Conn)
}

var hostiles = []hostile{
	{"tcp-silent", "", func(net.Conn) {}},
	{"tls-silent", "http/1.1", func(net.Conn) {}},
	{"http1-unsent-body", "http/1.1", func(c net.Conn) {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", api.PathHealthz)
	}},
	{"http1-half-headers", "http/1.1", func(c net.Conn) {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n", api.PathNetmap)
	}},
	{"http2-silent", "h2", func(c net.Conn) {
		io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	}},
	{"http2-half-header-block", "h2", func(c net.Conn) {
		io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
		c.Write([]byte{0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82})
	}},
}

// BenchmarkHostileConnections tries 5,000 hostile connections (six
// kinds, from ten loopback addresses, 500 each, at most 500 being opened
// at once) against a controller in its own process with its production
// limits and timeouts, while 100 nodes on 127.0.0.1 hold netmap long-polls.
// Each hostile connection is held until the controller closes it, or 40 s.
// In the middle of the attack one node reports a new endpoint, and every
// other node must hear of it. Reported per iteration: connections tried,
// refused at accept (over the per-address limit), still held by the
// attacker at the end, the controller's goroutines and RSS before and at
// their peak (sampled every 100 ms), and the nodes that heard the change
// with the p99 of the time it took.
func BenchmarkHostileConnections(b *testing.B) {
	b.Logf("environment: %s", machine.Describe())
	bin := controllertest.Build(b, b.TempDir(), "../cmd/rustynet-controller")
	for range b.N {
		hostileRun(b, bin)
	}
}

func hostileRun(b *testing.B, bin string) {
	const (
		nodes     = 100
		addresses = 10
		perAddr   = 500
		inFlight  = 500
		hold      = 40 * time.Second
	)
	p := controllertest.StartProcess(b, bin, b.TempDir())
	hc := controllertest.NewClient(b, filepath.Join(p.DataDir, "tls", "ca.pem"))
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = nodes + 16
	ak, err := controller.NewAdminClient(p.DataDir).CreateAuthKey(context.Background(), api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600})
	if err != nil {
		b.Fatal(err)
	}
	creds := make([]string, nodes)
	for i := range creds {
		status, body, err := register(hc, p.URL, ak.Key)
		if err != nil || status != 200 {
			b.Fatalf("register: %d %s %v", status, body, err)
		}
		var rr api.RegisterResponse
		json.Unmarshal(body, &rr)
		creds[i] = rr.Credential
	}
	rev := fetchRevision(b, hc, p.URL, creds[0])

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	arrivals := make(chan time.Time, nodes)
	var pollErrs atomic.Int64
	var pollers sync.WaitGroup
	for i := 1; i < nodes; i++ {
		pollers.Go(func() {
			since := rev
			for ctx.Err() == nil {
				m, err := longPoll(ctx, hc, p.URL, creds[i], since)
				if err != nil {
					if ctx.Err() == nil {
						pollErrs.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				if len(m.PeersChanged) > 0 {
					arrivals <- time.Now()
				}
				since = m.Revision
			}
		})
	}
	waitPolls(b, &deployment{procs: []*controllertest.Process{p}}, nodes-1)
	g0 := scrape(b, p.MetricsURL, "go_goroutines")
	rss0, _, _ := p.Memory()

	// Sample goroutines and RSS until the attack ends.
	var peakG float64
	var peakRSS int64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
			if g, err := controllertest.Scrape(p.MetricsURL, "go_goroutines"); err == nil {
				peakG = max(peakG, g)
			}
			if rss, _, err := p.Memory(); err == nil {
				peakRSS = max(peakRSS, rss)
			}
		}
	}()

	pem, err := os.ReadFile(filepath.Join(p.DataDir, "tls", "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	addr := p.URL[len("https://"):]
	var tried, refused, heldAtEnd atomic.Int64
	sem := make(chan struct{}, inFlight)
	var attack sync.WaitGroup
	attackEnd := time.Now().Add(hold)
	for a := range addresses {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + a)})
		for i := range perAddr {
			h := hostiles[(a*perAddr+i)%len(hostiles)]
			sem <- struct{}{}
			attack.Go(func() {
				// The slot bounds connections being opened, not held.
				release := sync.OnceFunc(func() { <-sem })
				defer release()
				tried.Add(1)
				d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					refused.Add(1)
					return
				}
				defer conn.Close()
				if h.proto != "" {
					tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{h.proto}})
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					if err := tc.Handshake(); err != nil {
						refused.Add(1) // closed on accept
						return
					}
					tc.SetDeadline(time.Time{})
					conn = tc
				} else {
					// A closed-on-accept connection reads EOF at once.
					conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, err := conn.Read(make([]byte, 1)); !isTimeout(err) {
						refused.Add(1)
						return
					}
				}
				release()
				h.send(conn)
				conn.SetReadDeadline(attackEnd)
				io.Copy(io.Discard, conn)
				if time.Now().After(attackEnd) {
					heldAtEnd.Add(1)
				}
			})
		}
	}

	// Mid-attack: one node reports a new endpoint; every other must hear.
	time.Sleep(5 * time.Second)
	body, _ := json.Marshal(api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4242")}})
	t0 := time.Now()
	if status, raw, err := post(hc, p.URL+api.PathEndpoints, body, creds[0]); err != nil || status != 200 {
		b.Errorf("endpoint report during the attack: %d %s %v", status, raw, err)
	}
	var lat []float64
	timeout := time.After(30 * time.Second)
collect:
	for len(lat) < nodes-1 {
		select {
		case at := <-arrivals:
			lat = append(lat, float64(at.Sub(t0).Microseconds())/1000)
		case <-timeout:
			break collect
		}
	}
	attack.Wait()
	close(stopSampling)
	<-sampleDone
	cancel()
	hc.Transport.(*http.Transport).CloseIdleConnections()
	pollers.Wait()

	slices.Sort(lat)
	p99 := 0.0
	if len(lat) > 0 {
		p99 = lat[(len(lat)*99+99)/100-1]
	}
	refusedMetric, _ := controllertest.Scrape(p.MetricsURL, `rustynet_controller_connections_refused_total{limit="per_ip"}`)
	b.ReportMetric(float64(tried.Load()), "hostile-tried")
	b.ReportMetric(refusedMetric, "hostile-refused-at-accept")
	b.ReportMetric(float64(heldAtEnd.Load()), "hostile-held-40s")
	b.ReportMetric(g0, "goroutines-before")
	b.ReportMetric(peakG, "goroutines-peak")
	b.ReportMetric(mib(rss0), "rss-before-MiB")
	b.ReportMetric(mib(peakRSS), "rss-peak-MiB")
	b.ReportMetric(float64(len(lat)), "nodes-heard-change")
	b.ReportMetric(p99, "change-p99-ms")
	b.ReportMetric(float64(pollErrs.Load()), "node-poll-errors")
	b.Logf("%d hostile connections tried (%d refused at accept by the per-address limit, %d seen refused by the attacker, %d still held after 40 s); "+
		"controller goroutines %.0f before, peak %.0f; RSS %.1f MiB before, peak %.1f MiB; %d of %d nodes heard the change (p99 %.1f ms); %d node poll errors",
		tried.Load(), int64(refusedMetric), refused.Load(), heldAtEnd.Load(), g0, peakG, mib(rss0), mib(peakRSS), len(lat), nodes-1, p99, pollErrs.Load())
	if len(lat) != nodes-1 {
		b.Errorf("%d of %d nodes heard of the change during the attack", len(lat), nodes-1)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
