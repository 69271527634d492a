package controller_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// Attacks on the transport, as an outsider with no credential would try
// them. Each used to hold a connection and its goroutine for minutes.

// dialTLS opens a TLS connection to the controller's own listener from
// the loopback address src ("" for any), speaking proto (ALPN).
func dialTLS(t *testing.T, c *controllertest.Controller, src, proto string) *tls.Conn {
	t.Helper()
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := tls.DialWithDialer(d, "tcp", c.APIAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{proto}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reports whether the server closes conn within d, reading
// and discarding whatever it sends first.
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestUnsentBodyIsAnswered: a request that announces a body and never
// sends it is answered at once, and the connection closed, whatever it
// asks for: the controller does not wait for a body it will not read.
func TestUnsentBodyIsAnswered(t *testing.T) {
	c := controllertest.Start(t)
	for _, tc := range []struct {
		name, method, path, cred string
		status                   int
	}{
		{"healthz", "GET", api.PathHealthz, "", http.StatusBadRequest},
		{"unknown route", "POST", "/nowhere", "", http.StatusNotFound},
		{"netmap without a credential", "GET", api.PathNetmap, "", http.StatusBadRequest},
		{"endpoints without a credential", "POST", api.PathEndpoints, "", http.StatusUnauthorized},
		{"30 MB register", "POST", api.PathRegister, "", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialTLS(t, c, "", "http/1.1")
			length := 1000
			if tc.status == http.StatusRequestEntityTooLarge {
				length = 30 << 20
			}
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\n%s: %d\r\nContent-Length: %d\r\n\r\n",
				tc.method, tc.path, api.HeaderCapabilityVersion, api.CurrentCapabilityVersion, length)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to %s %s with an unsent body: %v", tc.method, tc.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			}
			if !closedWithin(conn, 5*time.Second) {
				t.Errorf("connection still open 5s after the answer")
			}
		})
	}
}

// TestSlowClientsAreCut: headers sent halfway, a body sent halfway, an
// HTTP/2 connection that opens no stream and one that never ends its
// header block are all closed after the server's timeouts.
func TestSlowClientsAreCut(t *testing.T) {
	to := controller.Timeouts{ReadHeader: 500 * time.Millisecond, Read: time.Second, Idle: time.Second}
	c := controllertest.StartWith(t, func(cfg *controller.RunConfig) { cfg.Timeouts = to })
	a := c.Register(c.AuthKey(false), "a")
	const within = 5 * time.Second
	t.Run("half headers", func(t *testing.T) {
		conn := dialTLS(t, c, "", "http/1.1")
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n", api.PathHealthz)
		if !closedWithin(conn, within) {
			t.Errorf("connection with half-sent headers still open after %s", within)
		}
	})
	t.Run("half body", func(t *testing.T) {
		conn := dialTLS(t, c, "", "http/1.1")
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%s: 3\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{\"endp",
			api.PathEndpoints, api.HeaderCapabilityVersion, a.Credential)
		if !closedWithin(conn, within) {
			t.Errorf("connection with a half-sent body still open after %s", within)
		}
	})
	t.Run("HTTP/2 idle", func(t *testing.T) {
		conn := dialTLS(t, c, "", "h2")
		io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		conn.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) // empty SETTINGS
		if !closedWithin(conn, within) {
			t.Errorf("idle HTTP/2 connection still open after %s", within)
		}
	})
	t.Run("HTTP/2 half header block", func(t *testing.T) {
		conn := dialTLS(t, c, "", "h2")
		io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		conn.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
		// HEADERS on stream 1 without END_HEADERS: one indexed field
		// (:method GET), and never the CONTINUATION.
		conn.Write([]byte{0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82})
		if !closedWithin(conn, within) {
			t.Errorf("HTTP/2 connection with a half-sent header block still open after %s", within)
		}
	})
}

// TestConnectionsPerAddress: connections from one address past the limit
// are closed at once, and a node from another address is still served.
func TestConnectionsPerAddress(t *testing.T) {
	const limit = 8
	c := controllertest.StartWith(t, func(cfg *controller.RunConfig) {
		cfg.AllowLoopbackEndpoints = true
		cfg.Limits.MaxConnsPerIP = limit
	})
	a := c.Register(c.AuthKey(false), "a")
	var open []net.Conn
	for range 3 * limit {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		conn, err := d.Dial("tcp", c.APIAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		open = append(open, conn)
	}
	held := 0
	for _, conn := range open {
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			held++ // still open: the server waits for a TLS hello
		}
	}
	if held != limit {
		t.Errorf("%d connections from 127.0.0.2 held open, want the limit, %d", held, limit)
	}
	// Through the relay, from 127.0.0.1: served.
	if m := poll(t, c, a.Credential, 0, 0); m.Self == nil {
		t.Errorf("a node from another address got %+v, want its netmap", m)
	}
	body := metricsText(t, c)
	if !strings.Contains(body, `rustynet_controller_connections_refused_total{limit="per_ip"} 16`) {
		t.Errorf("metrics do not count 16 refused connections:\n%s", grepLines(body, "connections_"))
	}
}

// TestLongPollsPerNode: one credential may hold a few long-polls at once;
// the rest are refused 429 with Retry-After.
func TestLongPollsPerNode(t *testing.T) {
	c := controllertest.Start(t)
	a := c.Register(c.AuthKey(false), "a")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	hc := controllertest.NewClient(t, c.CAFile)
	hc.Transport.(*http.Transport).MaxConnsPerHost = 0
	const tries = 200 // through the relay, all from 127.0.0.1: under the per-address limit
	var wg sync.WaitGroup
	statuses := make(chan *http.Response, tries)
	for range tries {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s%s?since=%d&wait=3", c.URL, api.PathNetmap, rev), nil)
			req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
			req.Header.Set("Authorization", "Bearer "+a.Credential)
			resp, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp
		})
	}
	wg.Wait()
	close(statuses)
	ok, limited := 0, 0
	for resp := range statuses {
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 with Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("long-poll answered %d", resp.StatusCode)
		}
	}
	// The poll-start bucket and the open-poll cap both bound it; either
	// way, far fewer than all were served and none failed otherwise.
	if ok > controller.DefaultPollsPerNode*tries/50 || ok+limited != tries {
		t.Errorf("%d long-polls served, %d refused 429, of %d; want most refused", ok, limited, tries)
	}
}

// TestPerNodeRateLimit: a node that reports endpoints or rotates keys in a
// loop is refused 429 with Retry-After once its burst is spent; reports
// that change nothing are answered without a commit and cost nothing.
func TestPerNodeRateLimit(t *testing.T) {
	c := controllertest.Start(t)
	a := c.Register(c.AuthKey(false), "a")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	same := api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1000")}}
	for i := range 30 {
		if status, body := c.Do(http.MethodPost, api.PathEndpoints, a.Credential, same, nil); status != 200 {
			t.Fatalf("report %d of the same endpoints: %d %s", i, status, body)
		}
	}
	if got := poll(t, c, a.Credential, rev, 0).Revision; got != rev+1 {
		t.Errorf("30 identical endpoint reports moved the revision from %d to %d, want one commit", rev, got)
	}
	limited := 0
	for i := range 30 {
		req := api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("192.0.2.1:%d", 2000+i))}}
		status, body := c.Do(http.MethodPost, api.PathEndpoints, a.Credential, req, nil)
		switch status {
		case 200:
		case http.StatusTooManyRequests:
			limited++
			if !strings.Contains(string(body), api.CodeRateLimited) {
				t.Errorf("429 body %s, want code %s", body, api.CodeRateLimited)
			}
		default:
			t.Fatalf("report %d: %d %s", i, status, body)
		}
	}
	if limited < 15 {
		t.Errorf("%d of 30 changing endpoint reports refused, want all past the burst", limited)
	}
	// Key rotations share the bucket, which is spent.
	status, _ := c.Do(http.MethodPost, api.PathRotateKey, a.Credential, api.RotateKeyRequest{NodeKey: controllertest.Key[api.NodePublic]()}, nil)
	if status != http.StatusTooManyRequests {
		t.Errorf("rotate-key after the burst: %d, want 429", status)
	}
}

// TestLoopbackEndpointsRefused: by default a node may not advertise a
// loopback endpoint, and its loopback source address is not used as one.
func TestLoopbackEndpointsRefused(t *testing.T) {
	c := controllertest.StartWith(t, func(*controller.RunConfig) {})
	a := c.Register(c.AuthKey(false), "a")
	req := api.EndpointsRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5000")}, ListenPort: 5000}
	if status, body := c.Do(http.MethodPost, api.PathEndpoints, a.Credential, req, nil); status != http.StatusBadRequest || !strings.Contains(string(body), "loopback") {
		t.Errorf("report of a loopback endpoint: %d %s, want 400 naming loopback", status, body)
	}
	req.Endpoints = nil
	var self api.Node
	if status, body := c.Do(http.MethodPost, api.PathEndpoints, a.Credential, req, &self); status != 200 || len(self.Endpoints) != 0 {
		t.Errorf("report from a loopback source: %d %s, want 200 with no endpoint", status, body)
	}
}

func metricsText(t *testing.T, c *controllertest.Controller) string {
	t.Helper()
	resp, err := http.Get(c.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
