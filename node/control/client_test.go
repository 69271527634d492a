package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/control"
)

// replica is a stand-in for one controller replica: an HTTPS server with
// httptest's certificate (the same for every replica, so one CA file
// trusts them all) that logs every request and answers it with the
// test's handler for its path, or 200 with an empty JSON object.
type replica struct {
	srv *httptest.Server
	URL string

	mu       sync.Mutex
	log      []string // "METHOD PATH?QUERY"
	handlers map[string]http.HandlerFunc
}

func startReplica(t *testing.T, cert *tls.Certificate) *replica {
	t.Helper()
	r := &replica{handlers: map[string]http.HandlerFunc{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.EnableHTTP2 = true
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted replica's handshakes fail
	if cert != nil {
		r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	r.srv.StartTLS()
	r.URL = r.srv.URL
	t.Cleanup(r.kill)
	return r
}

// startReplicas starts n replicas and writes their CA (httptest's
// certificate) to a file.
func startReplicas(t *testing.T, n int) ([]*replica, string) {
	t.Helper()
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = startReplica(t, nil)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rs[0].srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return rs, ca
}

func (r *replica) serve(w http.ResponseWriter, req *http.Request) {
	target := req.URL.Path
	if req.URL.RawQuery != "" {
		target += "?" + req.URL.RawQuery
	}
	r.mu.Lock()
	r.log = append(r.log, req.Method+" "+target)
	h := r.handlers[req.URL.Path]
	r.mu.Unlock()
	if h != nil {
		h(w, req)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if req.URL.Path == api.PathRegisterChallenge {
		json.NewEncoder(w).Encode(api.RegisterChallenge{Challenge: "c1." + r.URL, Key: api.MachinePublic{1}})
		return
	}
	w.Write([]byte("{}\n"))
}

// handle sets the handler for path.
func (r *replica) handle(path string, h http.HandlerFunc) {
	r.mu.Lock()
	r.handlers[path] = h
	r.mu.Unlock()
}

// requests returns the requests the replica got to path (any query).
func (r *replica) requests(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		_, target, _ := strings.Cut(l, " ")
		if p, _, _ := strings.Cut(target, "?"); p == path {
			out = append(out, l)
		}
	}
	return out
}

// kill stops the replica as a crash would: its connections are cut, and
// new ones are refused.
func (r *replica) kill() {
	r.srv.CloseClientConnections()
	r.srv.Close()
}

// answer answers with status and body, as JSON.
func answer(status int, body any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}
}

// refusal is an API error body.
func refusal(code string) api.ErrorBody {
	return api.ErrorBody{Error: &api.Error{Code: code, Message: "refused by the test"}}
}

// switchLog records a client's replica switches.
type switchLog struct {
	mu  sync.Mutex
	got []string // "FROM -> TO (REASON)"
}

func (l *switchLog) record(from, to, reason string) {
	l.mu.Lock()
	l.got = append(l.got, from+" -> "+to+" ("+reason+")")
	l.mu.Unlock()
}

func (l *switchLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

func sw(from, to *replica, reason string) string {
	return from.URL + " -> " + to.URL + " (" + reason + ")"
}

func newClient(t *testing.T, ca string, rs ...*replica) (*control.Client, *switchLog) {
	t.Helper()
	var urls []string
	for _, r := range rs {
		urls = append(urls, r.URL)
	}
	var l switchLog
	c, err := control.NewReplicated(control.Config{URLs: urls, CAFile: ca, OnSwitch: l.record})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, &l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func checkCurrent(t *testing.T, c *control.Client, want *replica) {
	t.Helper()
	if got := c.Current(); got != want.URL {
		t.Errorf("Current() = %s, want %s", got, want.URL)
	}
}

func checkSwitches(t *testing.T, l *switchLog, want ...string) {
	t.Helper()
	if got := l.all(); !slices.Equal(got, want) {
		t.Errorf("switches = %q, want %q", got, want)
	}
}

func checkRequests(t *testing.T, r *replica, path string, want ...string) {
	t.Helper()
	if got := r.requests(path); !slices.Equal(got, want) {
		t.Errorf("%s got %q, want %q", r.URL, got, want)
	}
}

// TestFailoverWhenReplicaDies: a replica that dies under an open long-poll
// moves the client to the next one; the long-poll is not sent again, and
// the caller's next poll, with the revision it has, goes to the next
// replica. A replica that is down when a request is sent is skipped within
// the call.
func TestFailoverWhenReplicaDies(t *testing.T) {
	rs, ca := startReplicas(t, 3)
	a, b, cr := rs[0], rs[1], rs[2]
	c, switches := newClient(t, ca, a, b, cr)
	checkCurrent(t, c, a)
	if _, err := c.Netmap(ctxT(t), 5, 0); err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{})
	a.handle(api.PathNetmap, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	polled := make(chan error, 1)
	go func() {
		_, err := c.Netmap(ctxT(t), 5, 30*time.Second)
		polled <- err
	}()
	<-arrived
	a.kill()
	if err := <-polled; err == nil {
		t.Fatal("a long-poll cut by the replica's death succeeded")
	}
	checkCurrent(t, c, b)
	checkSwitches(t, switches, sw(a, b, control.ReasonNetwork))
	checkRequests(t, b, api.PathNetmap) // the long-poll was not sent again

	if _, err := c.Netmap(ctxT(t), 5, 0); err != nil {
		t.Fatalf("Netmap after the switch: %v", err)
	}
	checkRequests(t, b, api.PathNetmap, "GET /v1/netmap?since=5&wait=0")

	b.kill()
	if _, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{ListenPort: 1}); err != nil {
		t.Fatalf("ReportEndpoints with the current replica down and the next up: %v", err)
	}
	checkRequests(t, cr, api.PathEndpoints, "POST /v1/endpoints")
	checkCurrent(t, c, cr)
	checkSwitches(t, switches, sw(a, b, control.ReasonNetwork), sw(b, cr, control.ReasonNetwork))
}

// TestFailoverOnServerError: a 503, and a 5xx without an API error body,
// move the client to the next replica, which answers the idempotent
// request; a 5xx with an API error body is the controller's answer, which
// the client returns without moving.
func TestFailoverOnServerError(t *testing.T) {
	t.Run("503", func(t *testing.T) {
		rs, ca := startReplicas(t, 2)
		a, b := rs[0], rs[1]
		a.handle(api.PathNetmap, answer(http.StatusServiceUnavailable, refusal(api.CodeUnavailable)))
		b.handle(api.PathNetmap, answer(http.StatusOK, api.MapResponse{Revision: 9}))
		c, switches := newClient(t, ca, a, b)
		m, err := c.Netmap(ctxT(t), 7, 0)
		if err != nil || m.Revision != 9 {
			t.Fatalf("Netmap = %+v, %v; want revision 9 from the second replica", m, err)
		}
		checkCurrent(t, c, b)
		checkSwitches(t, switches, sw(a, b, control.ReasonUnavailable))
		checkRequests(t, a, api.PathNetmap, "GET /v1/netmap?since=7&wait=0")
	})
	t.Run("502-no-api-body", func(t *testing.T) {
		rs, ca := startReplicas(t, 2)
		a, b := rs[0], rs[1]
		a.handle(api.PathEndpoints, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		})
		c, switches := newClient(t, ca, a, b)
		if _, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{}); err != nil {
			t.Fatal(err)
		}
		checkCurrent(t, c, b)
		checkSwitches(t, switches, sw(a, b, control.ReasonServerError))
		checkRequests(t, b, api.PathEndpoints, "POST /v1/endpoints")
	})
	t.Run("500-api-body", func(t *testing.T) {
		rs, ca := startReplicas(t, 2)
		a, b := rs[0], rs[1]
		a.handle(api.PathEndpoints, answer(http.StatusInternalServerError, refusal(api.CodeInternal)))
		c, switches := newClient(t, ca, a, b)
		_, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{})
		if !control.IsStatus(err, http.StatusInternalServerError) {
			t.Fatalf("ReportEndpoints = %v, want the 500", err)
		}
		checkCurrent(t, c, a)
		checkSwitches(t, switches)
		checkRequests(t, b, api.PathEndpoints)
	})
}

// TestRefusalStays: a 4xx refusal with an API error body is the
// controller's answer: the client returns it and stays on the replica.
func TestRefusalStays(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{http.StatusBadRequest, api.CodeBadRequest},
		{http.StatusUnauthorized, api.CodeUnauthorized},
		{http.StatusConflict, api.CodeConflict},
		{http.StatusUpgradeRequired, api.CodeUpgradeRequired},
	} {
		t.Run(tc.code, func(t *testing.T) {
			rs, ca := startReplicas(t, 2)
			a, b := rs[0], rs[1]
			a.handle(api.PathNetmap, answer(tc.status, refusal(tc.code)))
			c, switches := newClient(t, ca, a, b)
			_, err := c.Netmap(ctxT(t), 0, 0)
			var apiErr *api.Error
			if !errors.As(err, &apiErr) || apiErr.Status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("Netmap = %v, want the %d %s refusal", err, tc.status, tc.code)
			}
			checkCurrent(t, c, a)
			checkSwitches(t, switches)
			checkRequests(t, b, api.PathNetmap)
		})
	}
}

// untrustedCert is a certificate for 127.0.0.1 that no CA of the test
// signed.
func untrustedCert(t *testing.T) *tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "not the controller"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestFailoverOnTLSFailure: a replica whose certificate the CA did not sign
// fails the TLS handshake, before any request is written, so even a key
// rotation goes on to the next replica.
func TestFailoverOnTLSFailure(t *testing.T) {
	rs, ca := startReplicas(t, 1)
	b := rs[0]
	a := startReplica(t, untrustedCert(t))
	c, switches := newClient(t, ca, a, b)
	if _, err := c.RotateKey(ctxT(t), api.NodePublic{1}, nil); err != nil {
		t.Fatalf("RotateKey with the first replica untrusted: %v", err)
	}
	checkCurrent(t, c, b)
	checkSwitches(t, switches, sw(a, b, control.ReasonTLS))
	checkRequests(t, a, api.PathRotateKey)
	checkRequests(t, b, api.PathRotateKey, "POST /v1/rotate-key")
}

// notIdempotent are the requests that a replica that received them may
// have applied.
var notIdempotent = []struct {
	path string
	call func(context.Context, *control.Client) error
}{
	{api.PathRotateKey, func(ctx context.Context, c *control.Client) error {
		_, err := c.RotateKey(ctx, api.NodePublic{1}, nil)
		return err
	}},
	{api.PathLogout, func(ctx context.Context, c *control.Client) error { return c.Logout(ctx) }},
}

// TestNotResentOnceReceived: a key rotation or a logout that a replica
// received, but did not answer, is not sent to another replica (the first
// may have applied it); the client moves on, and the caller's next try
// goes to the next replica.
func TestNotResentOnceReceived(t *testing.T) {
	for _, tc := range notIdempotent {
		t.Run(tc.path, func(t *testing.T) {
			rs, ca := startReplicas(t, 2)
			a, b := rs[0], rs[1]
			// The answer is lost: the stream (or connection) is cut.
			a.handle(tc.path, func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
			c, switches := newClient(t, ca, a, b)
			if err := tc.call(ctxT(t), c); err == nil {
				t.Fatal("a request whose answer was lost succeeded")
			}
			checkRequests(t, a, tc.path, "POST "+tc.path)
			checkRequests(t, b, tc.path)
			checkCurrent(t, c, b)
			checkSwitches(t, switches, sw(a, b, control.ReasonNetwork))
			if err := tc.call(ctxT(t), c); err != nil {
				t.Fatalf("the caller's second try: %v", err)
			}
			checkRequests(t, b, tc.path, "POST "+tc.path)
		})
	}
}

// TestUnsentGoesOn: a key rotation or a logout that could not be sent at
// all (the replica refuses the connection) goes on to the next replica at
// once.
func TestUnsentGoesOn(t *testing.T) {
	for _, tc := range notIdempotent {
		t.Run(tc.path, func(t *testing.T) {
			rs, ca := startReplicas(t, 2)
			a, b := rs[0], rs[1]
			a.kill()
			c, switches := newClient(t, ca, a, b)
			if err := tc.call(ctxT(t), c); err != nil {
				t.Fatalf("with the first replica refusing connections: %v", err)
			}
			checkRequests(t, b, tc.path, "POST "+tc.path)
			checkCurrent(t, c, b)
			checkSwitches(t, switches, sw(a, b, control.ReasonNetwork))
		})
	}
}

// TestRegisterGoesWhereChallengeCame: a registration goes to the replica
// that issued its challenge, and nowhere else: when that one is gone, the
// registration fails (the caller asks the next replica for a challenge).
func TestRegisterGoesWhereChallengeCame(t *testing.T) {
	rs, ca := startReplicas(t, 2)
	a, b := rs[0], rs[1]
	c, switches := newClient(t, ca, a, b)
	ch, err := c.Challenge(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	a.kill()
	if _, err := c.Register(ctxT(t), &api.RegisterRequest{Challenge: ch.Challenge}); err == nil {
		t.Fatal("Register with the challenge of a dead replica succeeded")
	}
	checkRequests(t, b, api.PathRegister)
	checkCurrent(t, c, b)
	checkSwitches(t, switches, sw(a, b, control.ReasonNetwork))

	// The current replica is b; a challenge from b takes the
	// registration to b, even if the client had moved meanwhile.
	ch, err = c.Challenge(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctxT(t), &api.RegisterRequest{Challenge: ch.Challenge}); err != nil {
		t.Fatalf("Register with b's challenge: %v", err)
	}
	checkRequests(t, b, api.PathRegister, "POST /v1/register")
}

// TestAnnouncedReplicas: the replicas a netmap announces are tried first,
// in their order, with those the client was started with kept as the
// fallback; unusable and repeated entries are left out, and an answer
// that announces none keeps the list.
func TestAnnouncedReplicas(t *testing.T) {
	rs, ca := startReplicas(t, 3)
	a, b, cr := rs[0], rs[1], rs[2]
	c, switches := newClient(t, ca, a, cr)
	announce := []string{a.URL, b.URL, "http://plain.example:80", b.URL + "/", "https://x.example:99999"}
	a.handle(api.PathNetmap, answer(http.StatusOK, api.MapResponse{Revision: 3, Controllers: announce}))
	if _, err := c.Netmap(ctxT(t), 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Announced(), []string{a.URL, b.URL}; !slices.Equal(got, want) {
		t.Errorf("Announced() = %q, want %q", got, want)
	}
	if got, want := c.Replicas(), []string{a.URL, b.URL, cr.URL}; !slices.Equal(got, want) {
		t.Errorf("Replicas() = %q, want %q (announced, then the started ones)", got, want)
	}
	a.handle(api.PathNetmap, answer(http.StatusOK, api.MapResponse{Revision: 4}))
	if _, err := c.Netmap(ctxT(t), 3, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Replicas(), []string{a.URL, b.URL, cr.URL}; !slices.Equal(got, want) {
		t.Errorf("after an answer that announces none, Replicas() = %q, want %q", got, want)
	}

	a.kill()
	if _, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{}); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, b, api.PathEndpoints, "POST /v1/endpoints") // the announced replica, not started with
	b.kill()
	if _, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{}); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, cr, api.PathEndpoints, "POST /v1/endpoints") // the fallback
	checkSwitches(t, switches, sw(a, b, control.ReasonNetwork), sw(b, cr, control.ReasonNetwork))
}

// TestFallbackWhenAnnouncedFail: when every announced replica fails, an
// idempotent request reaches a replica the client was started with,
// within the one call.
func TestFallbackWhenAnnouncedFail(t *testing.T) {
	rs, ca := startReplicas(t, 3)
	a, b, cr := rs[0], rs[1], rs[2]
	c, _ := newClient(t, ca, a, b)
	a.handle(api.PathNetmap, answer(http.StatusOK, api.MapResponse{Revision: 3, Controllers: []string{a.URL, cr.URL}}))
	if _, err := c.Netmap(ctxT(t), 0, 0); err != nil {
		t.Fatal(err)
	}
	a.kill()
	cr.kill()
	m, err := c.Netmap(ctxT(t), 3, 0)
	if err != nil {
		t.Fatalf("Netmap with every announced replica down: %v", err)
	}
	checkRequests(t, b, api.PathNetmap, "GET /v1/netmap?since=3&wait=0")
	checkCurrent(t, c, b)
	_ = m
}

// TestRateLimitedHoldBack: a 429 with Retry-After holds that request back,
// whichever replica it would go to, and does not move the client.
func TestRateLimitedHoldBack(t *testing.T) {
	rs, ca := startReplicas(t, 2)
	a, b := rs[0], rs[1]
	a.handle(api.PathEndpoints, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		answer(http.StatusTooManyRequests, refusal(api.CodeRateLimited))(w, r)
	})
	c, switches := newClient(t, ca, a, b)
	_, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{})
	wait, ok := control.RetryAfter(err)
	if !ok || wait < 50*time.Second || wait > 60*time.Second {
		t.Fatalf("ReportEndpoints answered 429 Retry-After: 60 = %v (retry after %v, %v), want a rate-limit error of about 60s", err, wait, ok)
	}
	_, err = c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{})
	var held *control.RateLimitedError
	if !errors.As(err, &held) || !held.NotSent {
		t.Errorf("ReportEndpoints right after the 429 = %v, want it held back, not sent", err)
	}
	if got := c.RetryIn(api.PathEndpoints); got <= 0 {
		t.Errorf("RetryIn(%s) = %v, want the rest of the 60s", api.PathEndpoints, got)
	}
	checkRequests(t, a, api.PathEndpoints, "POST /v1/endpoints")
	checkRequests(t, b, api.PathEndpoints)
	checkCurrent(t, c, a)
	checkSwitches(t, switches)
	// Other requests are not held back.
	if _, err := c.Netmap(ctxT(t), 0, 0); err != nil {
		t.Errorf("Netmap after another path's 429: %v", err)
	}
}

// TestOneController: a client of one controller (New) reports its failures
// and stays on it.
func TestOneController(t *testing.T) {
	rs, ca := startReplicas(t, 1)
	a := rs[0]
	c, err := control.New(a.URL+"/", ca)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Netmap(ctxT(t), 0, 0); err != nil {
		t.Fatal(err)
	}
	a.kill()
	if _, err := c.Netmap(ctxT(t), 0, 0); err == nil {
		t.Fatal("Netmap from a dead controller succeeded")
	}
	checkCurrent(t, c, a)
	if got := c.Replicas(); !slices.Equal(got, []string{a.URL}) {
		t.Errorf("Replicas() = %q, want [%s]", got, a.URL)
	}
}

// TestNewRefusesBadURLs: a client is not made with a list that has a bad
// or repeated URL, or none.
func TestNewRefusesBadURLs(t *testing.T) {
	_, ca := startReplicas(t, 1)
	for _, urls := range [][]string{nil, {"http://a:1"}, {"https://a:1", "https://A:1/"}, {"https://a:1/v1"}} {
		if _, err := control.NewReplicated(control.Config{URLs: urls, CAFile: ca}); err == nil {
			t.Errorf("NewReplicated(%q) succeeded, want an error", urls)
		}
	}
}

// freezer is a TCP proxy in front of a replica that can go silent, as a
// host that is lost does: it stops passing bytes either way and closes
// nothing.
type freezer struct {
	ln     net.Listener
	to     string
	frozen chan struct{}
	once   sync.Once
}

func startFreezer(t *testing.T, to string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, to: to, frozen: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.pass(t, c)
		}
	}()
	return f
}

func (f *freezer) pass(t *testing.T, c net.Conn) {
	up, err := net.Dial("tcp", f.to)
	if err != nil {
		c.Close()
		return
	}
	copy := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-f.frozen:
				return // swallow it, and everything after
			default:
			}
			if err != nil {
				dst.Close()
				return
			}
			dst.Write(buf[:n])
		}
	}
	go copy(up, c)
	go copy(c, up)
	t.Cleanup(func() { c.Close(); up.Close() })
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

// TestSilentReplicaLeft: a replica that goes silent mid long-poll (no
// answer, no reset) is found by the connection's health check, and the
// long-poll fails long before its wait ends, so the node moves on.
func TestSilentReplicaLeft(t *testing.T) {
	rs, ca := startReplicas(t, 2)
	a, b := rs[0], rs[1]
	arrived := make(chan struct{}, 1)
	a.handle(api.PathNetmap, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	f := startFreezer(t, strings.TrimPrefix(a.URL, "https://"))
	var l switchLog
	c, err := control.NewReplicated(control.Config{URLs: []string{"https://" + f.ln.Addr().String(), b.URL}, CAFile: ca, OnSwitch: l.record,
		PingAfter: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	polled := make(chan error, 1)
	go func() {
		_, err := c.Netmap(ctxT(t), 5, time.Duration(api.MaxWait))
		polled <- err
	}()
	<-arrived
	f.freeze()
	select {
	case err := <-polled:
		if err == nil {
			t.Fatal("a long-poll on a replica gone silent succeeded")
		}
	case <-time.After(api.MaxWait / 2):
		t.Fatalf("a long-poll on a replica gone silent was still waiting after %v: the health check did not find it", api.MaxWait/2)
	}
	if c.Current() != b.URL {
		t.Errorf("current replica %s after the silent one, want %s", c.Current(), b.URL)
	}
}

// TestDeprecationHeard: the Deprecation and Sunset of the controller's last
// answer are what the client reports, a refusal's included; an answer
// without them clears them; an unreadable Deprecation still says the
// version is deprecated.
func TestDeprecationHeard(t *testing.T) {
	rs, ca := startReplicas(t, 1)
	a := rs[0]
	headers := func(dep, sunset string, h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if dep != "" {
				w.Header().Set(api.HeaderDeprecation, dep)
			}
			if sunset != "" {
				w.Header().Set(api.HeaderSunset, sunset)
			}
			h(w, r)
		}
	}
	c, _ := newClient(t, ca, a)
	if _, ok := c.Deprecation(); ok {
		t.Fatal("deprecated before any answer")
	}
	a.handle(api.PathNetmap, headers("@1796342400", "Thu, 02 Dec 2027 00:00:00 GMT", answer(http.StatusOK, api.MapResponse{Revision: 1})))
	if _, err := c.Netmap(ctxT(t), 0, 0); err != nil {
		t.Fatal(err)
	}
	d, ok := c.Deprecation()
	if !ok || !d.Since.Equal(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)) || !d.Sunset.Equal(time.Date(2027, 12, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("after an answer with both headers: %+v, %v", d, ok)
	}
	a.handle(api.PathEndpoints, headers("true", "", answer(http.StatusBadRequest, refusal(api.CodeBadRequest))))
	if _, err := c.ReportEndpoints(ctxT(t), &api.EndpointsRequest{}); err == nil {
		t.Fatal("the refusal was not returned")
	}
	if d, ok := c.Deprecation(); !ok || !d.Since.IsZero() || !d.Sunset.IsZero() {
		t.Errorf("after a refusal with an unreadable Deprecation and no Sunset: %+v, %v; want deprecated, no dates", d, ok)
	}
	a.handle(api.PathNetmap, answer(http.StatusOK, api.MapResponse{Revision: 2}))
	if _, err := c.Netmap(ctxT(t), 1, 0); err != nil {
		t.Fatal(err)
	}
	if d, ok := c.Deprecation(); ok {
		t.Errorf("after an answer without the headers: %+v, still deprecated", d)
	}
}

// TestSessionResumed: a node's connection after its first (here after its
// idle connections were closed) resumes the TLS session of the first.
func TestSessionResumed(t *testing.T) {
	rs, ca := startReplicas(t, 1)
	a := rs[0]
	var mu sync.Mutex
	var resumed []bool
	a.handle(api.PathRegisterChallenge, func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		resumed = append(resumed, req.TLS.DidResume)
		mu.Unlock()
		answer(http.StatusOK, api.RegisterChallenge{Challenge: "c1.x", Key: api.MachinePublic{1}})(w, req)
	})
	c, err := control.New(a.URL, ca)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		if _, err := c.Challenge(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(resumed, []bool{false, true}) {
		t.Errorf("connections resumed: %v, want [false true]", resumed)
	}
}
