package controller_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// A long-poll with nothing to send parks its connection (no goroutine, no
// net/http buffers) and is answered by hand: these drive it over a raw
// HTTP/1.1-over-TLS connection, byte by byte as a client sends them.

// rawConn is one HTTP/1.1 connection to the controller's listener.
type rawConn struct {
	t  *testing.T
	c  io.ReadWriteCloser
	br *bufio.Reader
}

func dialRaw(t *testing.T, c *controllertest.Controller) *rawConn {
	conn := dialTLS(t, c, "", "http/1.1")
	return &rawConn{t: t, c: conn, br: bufio.NewReader(conn)}
}

func pollRequest(cred string, since uint64, wait int) string {
	return fmt.Sprintf("GET %s?since=%d&wait=%d HTTP/1.1\r\nHost: controller\r\n%s: %s\r\nAuthorization: Bearer %s\r\n\r\n",
		api.PathNetmap, since, wait, api.HeaderCapabilityVersion, api.CurrentCapabilityVersion, cred)
}

func (rc *rawConn) send(req string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, req); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response, its body read whole, within d.
func (rc *rawConn) read(d time.Duration) (*http.Response, []byte) {
	rc.t.Helper()
	type deadliner interface{ SetReadDeadline(time.Time) error }
	rc.c.(deadliner).SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("no response within %v: %v", d, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("response body: %v", err)
	}
	return resp, body
}

func mapOf(t *testing.T, resp *http.Response, body []byte) *api.MapResponse {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, h := range []string{"Content-Type", "Content-Length", api.HeaderCapabilityVersion, api.HeaderMinCapabilityVersion, "Cache-Control", "Date"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("response has no %s header: %v", h, resp.Header)
		}
	}
	var m api.MapResponse
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return &m
}

// registerPair registers nodes a and b and returns a's netmap revision.
func registerPair(t *testing.T, c *controllertest.Controller) (a, b *api.RegisterResponse, rev uint64) {
	t.Helper()
	key := c.AuthKey(true)
	a, b = c.Register(key, "a"), c.Register(key, "b")
	return a, b, poll(t, c, a.Credential, 0, 0).Revision
}

// TestParkedPollAnsweredOnChange: a parked poll is answered when a peer
// changes, with the headers the handler writes, and its connection then
// serves the next request (keep-alive), which may park again.
func TestParkedPollAnsweredOnChange(t *testing.T) {
	c := controllertest.Start(t)
	a, b, rev := registerPair(t, c)
	rc := dialRaw(t, c)
	rc.send(pollRequest(a.Credential, rev, 30))
	c.WaitPolls(1)
	if status, body := c.Do(http.MethodPost, api.PathEndpoints, b.Credential, api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:41641")}}, nil); status != http.StatusOK {
		t.Fatalf("endpoints: %d %s", status, body)
	}
	resp, body := rc.read(5 * time.Second)
	m := mapOf(t, resp, body)
	if resp.Close {
		t.Error("a parked answer closes its connection")
	}
	if m.Revision <= rev || len(m.PeersChanged) != 1 || m.PeersChanged[0].ID != b.Node.ID || !slices.Contains(m.PeersChanged[0].Endpoints, netip.MustParseAddrPort("192.0.2.7:41641")) {
		t.Fatalf("answer %s, want b's new endpoint past revision %d", body, rev)
	}
	if n, _ := strconv.Atoi(resp.Header.Get("Content-Length")); n != len(body) {
		t.Errorf("Content-Length %d for a body of %d bytes", n, len(body))
	}
	// The same connection carries the next poll, which parks again and
	// is answered again.
	rc.send(pollRequest(a.Credential, m.Revision, 30))
	c.WaitPolls(1)
	if status, body := c.Do(http.MethodPost, api.PathEndpoints, b.Credential, api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.8:41641")}}, nil); status != http.StatusOK {
		t.Fatalf("endpoints: %d %s", status, body)
	}
	resp, body = rc.read(5 * time.Second)
	if m2 := mapOf(t, resp, body); m2.Revision <= m.Revision || len(m2.PeersChanged) != 1 {
		t.Fatalf("second answer %s", body)
	}
	// And a request of another kind.
	rc.send(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: controller\r\n\r\n", api.PathHealthz))
	if resp, body := rc.read(5 * time.Second); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz on the resumed connection: %d %s", resp.StatusCode, body)
	}
	text := metricsText(t, c)
	if !strings.Contains(text, `rustynet_controller_http_requests_total{code="200",route="/v1/netmap"} 3`) { // the full one and two parked
		t.Errorf("parked answers not counted as requests:\n%s", grepLines(text, "requests_total"))
	}
	if !strings.Contains(text, "rustynet_controller_netmap_push_latency_seconds_count") || strings.Contains(text, "rustynet_controller_netmap_push_latency_seconds_count 0") {
		t.Errorf("parked pushes not timed:\n%s", grepLines(text, "push_latency"))
	}
}

// TestParkedPollTimesOut: a parked poll is answered with an empty delta at
// the end of its wait, and its connection serves the next request.
func TestParkedPollTimesOut(t *testing.T) {
	c := controllertest.Start(t)
	a, _, rev := registerPair(t, c)
	rc := dialRaw(t, c)
	start := time.Now()
	rc.send(pollRequest(a.Credential, rev, 1))
	resp, body := rc.read(10 * time.Second)
	el := time.Since(start)
	m := mapOf(t, resp, body)
	if m.Revision != rev || m.Full || len(m.PeersChanged) != 0 || m.Self != nil {
		t.Errorf("answer %s, want an empty delta at revision %d", body, rev)
	}
	if el < time.Second {
		t.Errorf("a poll of wait=1 answered after %v", el)
	}
	c.WaitPolls(0)
	rc.send(pollRequest(a.Credential, rev, 0))
	resp, body = rc.read(5 * time.Second)
	mapOf(t, resp, body)
}

// TestParkedPollAnsweredOnShutdown: stopping the controller answers a
// parked poll (an empty delta, Connection: close) and closes its
// connection.
func TestParkedPollAnsweredOnShutdown(t *testing.T) {
	c := controllertest.Start(t)
	a, _, rev := registerPair(t, c)
	rc := dialRaw(t, c)
	rc.send(pollRequest(a.Credential, rev, 100))
	c.WaitPolls(1)
	start := time.Now()
	c.Stop()
	resp, body := rc.read(5 * time.Second)
	mapOf(t, resp, body)
	if !resp.Close {
		t.Error("a poll answered at shutdown keeps its connection open")
	}
	if !closedWithin(rc.c.(net.Conn), 5*time.Second) {
		t.Error("connection open 5s after a shutdown answer")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown took %v with a parked poll", el)
	}
}

// TestParkedPollNodeRemoved: a node logged out while its poll is parked is
// answered 401, as the handler answers.
func TestParkedPollNodeRemoved(t *testing.T) {
	c := controllertest.Start(t)
	a, _, rev := registerPair(t, c)
	rc := dialRaw(t, c)
	rc.send(pollRequest(a.Credential, rev, 30))
	c.WaitPolls(1)
	if status, body := c.Do(http.MethodPost, api.PathLogout, a.Credential, nil, nil); status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", status, body)
	}
	resp, body := rc.read(5 * time.Second)
	var e api.ErrorBody
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Code != api.CodeUnauthorized {
		t.Fatalf("answer %d %s, want 401 %s", resp.StatusCode, body, api.CodeUnauthorized)
	}
}

// TestParkedPollClientGone: a client that closes its connection while
// its poll is parked costs nothing past the poll's wait: the poll is
// closed (the node goes offline) and the controller serves on.
func TestParkedPollClientGone(t *testing.T) {
	c := controllertest.Start(t)
	a, b, rev := registerPair(t, c)
	waitClosed := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			text := metricsText(t, c)
			if strings.Contains(text, "rustynet_controller_netmap_polls_open 0") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: polls still open 10s after their clients left:\n%s", what, grepLines(text, "polls_open"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Gone before the wait ends: noticed at the wait's end.
	for range 4 { // DefaultPollsPerNode
		rc := dialRaw(t, c)
		rc.send(pollRequest(a.Credential, rev, 1))
		defer rc.c.Close()
	}
	c.WaitPolls(4)
	waitClosed("at the wait's end")
	// Gone before a change: noticed writing the answer.
	rc := dialRaw(t, c)
	rc.send(pollRequest(a.Credential, rev, 30))
	c.WaitPolls(1)
	rc.c.Close()
	if status, body := c.Do(http.MethodPost, api.PathEndpoints, b.Credential, api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.9:41641")}}, nil); status != http.StatusOK {
		t.Fatalf("endpoints: %d %s", status, body)
	}
	waitClosed("at a change")
	if got := poll(t, c, a.Credential, rev, 0); got.Revision <= rev {
		t.Errorf("after the clients left: revision %d", got.Revision)
	}
}

// TestParkedPollPipelined: a request sent behind a poll before its answer
// (HTTP/1.1 pipelining) is refused: the poll is answered at once, with
// Connection: close, and the request behind it is not served.
func TestParkedPollPipelined(t *testing.T) {
	c := controllertest.Start(t)
	a, _, rev := registerPair(t, c)
	rc := dialRaw(t, c)
	rc.send(pollRequest(a.Credential, rev, 30) + fmt.Sprintf("GET %s HTTP/1.1\r\nHost: controller\r\n\r\n", api.PathHealthz))
	resp, body := rc.read(5 * time.Second)
	mapOf(t, resp, body)
	if !resp.Close {
		t.Fatal("a poll with a request pipelined behind it was answered without Connection: close")
	}
	if !closedWithin(rc.c.(net.Conn), 5*time.Second) {
		t.Error("connection still open after the refusal")
	}
	c.WaitPolls(0)
}

// TestParkedPollHostile: malformed polls and garbage on a parked
// connection never get a 5xx, and leave nothing open.
func TestParkedPollHostile(t *testing.T) {
	c := controllertest.Start(t)
	a, _, rev := registerPair(t, c)
	for _, tail := range []string{
		"\x00\x01garbage\r\n\r\n",
		"GET /v1/netmap?since=-1 HTTP/1.1\r\n\r\n",
		"POST /v1/endpoints HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
	} {
		rc := dialRaw(t, c)
		rc.send(pollRequest(a.Credential, rev, 1))
		resp, body := rc.read(10 * time.Second)
		mapOf(t, resp, body)
		rc.send(tail)
		rc.c.(net.Conn).SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(rc.br, nil); err == nil {
			if resp.StatusCode >= 500 {
				t.Errorf("%q after a parked answer: %d", tail, resp.StatusCode)
			}
			resp.Body.Close()
		}
	}
	for _, q := range []string{"since=x", "wait=-1", "wait=99999999999999999999", "since=18446744073709551616"} {
		status, body := c.Do(http.MethodGet, api.PathNetmap+"?"+q, a.Credential, nil, nil)
		if status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, status, body)
		}
	}
	c.WaitPolls(0)
}

// TestParkedPollMemory measures what a parked long-poll costs the
// controller in memory, in process: the live heap and stacks (after a GC)
// with RUSTYNET_PARK_POLLS nodes registered, then with a poll of each
// parked, clients included; the controller's share is in the heap
// profiles written to RUSTYNET_PARK_PROFILE (compare them with go tool
// pprof -base). It runs only when RUSTYNET_PARK_POLLS is set.
func TestParkedPollMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RUSTYNET_PARK_POLLS"))
	if n <= 0 {
		t.Skip("a measurement: set RUSTYNET_PARK_POLLS to the number of polls (and RUSTYNET_PARK_PROFILE to a directory for heap profiles)")
	}
	dir := os.Getenv("RUSTYNET_PARK_PROFILE")
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1 // every allocation in the profiles, not a sample
	c := controllertest.StartWith(t, func(cfg *controller.RunConfig) {
		cfg.Limits.MaxConnsPerIP = -1
		cfg.Limits.MaxConns = -1
	})
	key := c.AuthKey(true)
	creds := make([]string, n)
	var wg sync.WaitGroup
	var next int
	var mu sync.Mutex
	for range 8 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				creds[i] = c.Register(key, "n"+strconv.Itoa(i)).Credential
			}
		})
	}
	wg.Wait()
	rev := poll(t, c, creds[0], 0, 0).Revision
	snap := func(name string) (heap, stack uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if dir != "" {
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				t.Fatal(err)
			}
		}
		return ms.HeapInuse, ms.StackInuse
	}
	h0, s0 := snap("registered.pprof")
	g0 := runtime.NumGoroutine()
	conns := make([]*rawConn, n)
	for i := range n {
		conns[i] = dialRaw(t, c)
		conns[i].send(pollRequest(creds[i], rev, 60))
	}
	c.WaitPolls(n)
	h1, s1 := snap("parked.pprof")
	g1 := runtime.NumGoroutine()
	t.Logf("%d polls parked: heap in use %+.2f KiB per poll, stacks %+.2f KiB per poll, goroutines %+d in all (controller and clients, in this process; one GC'd sample)",
		n, (float64(h1)-float64(h0))/1024/float64(n), (float64(s1)-float64(s0))/1024/float64(n), g1-g0)
	for _, rc := range conns {
		rc.c.Close()
	}
}
